"""Export: every format agrees with the JAX model it came from, on real data, and bad input fails
with a message naming what is missing.

One tiny MLP run on real MNIST (trained once per session through the classify task) is exported
to every format; its exports are checked against the run's own test figure. Eval-mode BatchNorm
and the recurrent one-step adapter are checked on small hand-built models, without data files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from playbook.data.splits import ImageDataset, Split
from playbook.export import TensorSpec, adapters, onnx, parity, pipeline, report
from playbook.export.exportable import ExportError, Exportable
from playbook import tasks
from playbook.run.rundir import RunDirError, restore_best
from playbook.train.checkpoint import Checkpoints

ALL_QUANTIZE = ("none", "dynamic", "int8")
FLOAT32 = ("saved_model", "tflite_float32", "onnx")


@pytest.fixture(scope="module")
def mlp_run(real_data_dir, tmp_path_factory):
  """A 1-epoch (32 steps) 784-64-10 MNIST run, exported to every format: (workdir, results, report)."""
  from experiments import mnist_mlp
  config = mnist_mlp.get_config("quick")
  config.model.hidden = (64,)
  config.train.num_epochs = 1
  config.optim.warmup_epochs = 0.0
  config.optim.learning_rate = 3e-3
  config.progress = False
  workdir = tmp_path_factory.mktemp("mnist_mlp")
  results = tasks.get(config.task).train(config, workdir)
  exported = pipeline.export_run(workdir, tasks.exportable(workdir), formats=pipeline.FORMATS,
                                 quantize=ALL_QUANTIZE, log=lambda *_: None)
  return workdir, results, exported


def test_jax_reference_is_the_runs_own_test_figure(mlp_run):
  _, results, exported = mlp_run
  assert exported["num_test"] == 10000
  assert exported["jax_accuracy"] == pytest.approx(results["test_accuracy"]["mean"], abs=1e-6)
  assert exported["jax_accuracy"] > 0.8
  # JAX's own float32 rounding, measured against the same model in float64: small, not zero.
  assert 0 < exported["jax_max_abs_error_vs_float64"] < 1e-4


@pytest.mark.parametrize("key", FLOAT32)
def test_float32_exports_match_jax_logits_and_accuracy(mlp_run, key):
  entry = mlp_run[2]["formats"][key]
  assert entry["max_abs_error"] <= 1e-5
  assert entry["max_abs_error_vs_float64"] < 1e-4
  assert entry["top1_agreement"] == 1.0
  # The bar: identical to 0.01 % (one test image in 10,000 may flip on a near-tie).
  assert abs(entry["accuracy"] - entry["jax_accuracy"]) <= 1e-4 + 1e-9
  assert entry["passes"]


@pytest.mark.parametrize("key", ["tflite_dynamic", "tflite_int8"])
def test_int8_exports_are_smaller_and_within_one_point(mlp_run, key):
  formats = mlp_run[2]["formats"]
  entry = formats[key]
  assert abs(entry["accuracy_delta_points"]) <= 1.0 and entry["passes"]
  assert 0 < entry["max_abs_error"]  # Really quantised...
  assert entry["size_bytes"] < 0.4 * formats["tflite_float32"]["size_bytes"]  # ...to 8 bits.


def test_report_json_lists_every_file(mlp_run):
  workdir, _, exported = mlp_run
  stored = json.loads((workdir / "export" / "report.json").read_text())
  assert stored == json.loads(json.dumps(exported))
  assert sorted(stored["formats"]) == sorted(["saved_model", *pipeline.TFLITE_KEY.values(), "onnx"])
  for key, entry in stored["formats"].items():
    assert (workdir / "export" / entry["file"]).exists()
    assert entry["size_bytes"] > 784 * 64 * (1 if key in ("tflite_dynamic", "tflite_int8") else 4)
  assert stored["inputs"] == {"images": {"shape": ["batch", 28, 28, 1], "dtype": "float32"}}


@pytest.mark.parametrize("key", pipeline.TFLITE_KEY.values())
def test_tflite_exports_have_a_fixed_batch_and_no_runtime_broadcasts(mlp_run, key):
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_path=str(mlp_run[0] / "export" / pipeline.FILES[key]))
  assert interpreter.get_input_details()[0]["shape_signature"].tolist() == [1, 28, 28, 1]
  ops = {op["op_name"] for op in interpreter._get_ops_details()}
  # A polymorphic batch leaves the bias adds as BROADCAST_TO + ADD of whole activations.
  assert "FULLY_CONNECTED" in ops and not ops & {"BROADCAST_TO", "SHAPE"}


def readme_clients() -> dict[str, str]:
  """The client code blocks of docs/export.md (<!-- client: NAME --> then a python block)."""
  text = (ROOT / "docs" / "export.md").read_text()
  return dict(re.findall(r"<!-- client: (\w+) -->\n```python\n(.*?)```", text, re.S))


@pytest.mark.parametrize("client", ["saved_model", "tflite", "onnx"])
def test_readme_client_runs_on_the_export_without_playbook(mlp_run, tmp_path, client):
  workdir, _, exported = mlp_run
  code = readme_clients()[client]
  (tmp_path / "runs").mkdir()
  (tmp_path / "runs" / "mnist_mlp").symlink_to(workdir)
  # -I: isolated, so neither the repository nor PYTHONPATH is importable: no playbook.
  out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  predicted = json.loads(out.stdout.strip().splitlines()[-1])
  exportable = tasks.exportable(workdir)
  images = exportable.parity_inputs[0][:8]
  expected = parity.jax_predict(exportable)(images)[0].argmax(-1).tolist()
  agree = np.mean(np.array(predicted) == expected)
  assert agree >= (7 / 8 if client == "tflite" else 1.0)  # The docs' TFLite one is int8.


def test_workdir_without_run_or_checkpoint_is_refused(tmp_path):
  with pytest.raises(RunDirError, match="not a run directory .no config.json"):
    tasks.exportable(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"task": "classify", "study": "mnist_mlp"}))
  with pytest.raises(RunDirError, match=r"No best checkpoint in .*checkpoints/best"):
    tasks.exportable(tmp_path)
  with pytest.raises(RunDirError, match=r"No best checkpoint in .*checkpoints/best"):
    restore_best(tmp_path, {"params": {}})


def test_task_without_exporter_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"task": "stylize", "study": "style"}))
  with pytest.raises(RunDirError, match="task 'stylize', which has nothing to export"):
    tasks.exportable(tmp_path)


def test_run_made_before_tasks_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"study": "mnist_mlp"}))
  with pytest.raises(RunDirError, match="made before configs named their task"):
    tasks.exportable(tmp_path)


def test_cli_refuses_unknown_format_before_any_work(tmp_path):
  out = subprocess.run([sys.executable, "-m", "launch.export", f"--workdir={tmp_path}",
                        "--formats=onnx,pdf"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode != 0
  assert "unknown format ['pdf']; known: saved_model,tflite,onnx" in out.stderr
  assert not (tmp_path / "export").exists()


def test_cli_names_the_missing_checkpoint(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"task": "classify", "study": "mnist_mlp"}))
  out = subprocess.run([sys.executable, "-m", "launch.export", f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 1
  assert "No best checkpoint in" in out.stderr


def test_onnx_refuses_a_model_it_cannot_hold(tmp_path):
  batched_qr = lambda x: (jnp.linalg.qr(x.reshape(-1, 4, 4))[0].reshape(-1, 16),)
  exportable = Exportable(name="batched_qr", fn=batched_qr, inputs=(TensorSpec("x", (None, 16)),),
                          outputs=("q",), parity_inputs=(np.ones((2, 16), np.float32),),
                          accuracy=lambda predict: 0.0, num_test=0)
  with pytest.raises(ExportError, match="ONNX cannot hold batched_qr: NotImplementedError"):
    onnx.export(exportable, tmp_path / "model.onnx")
  assert not list(tmp_path.iterdir())


class ConvBN(nn.Module):
  """A small conv + BatchNorm + dropout classifier, the shape of the CIFAR CNNs."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.0)(x))
    x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nn.Dropout(0.5, deterministic=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(10)(x)


def test_batchnorm_exports_in_eval_mode(tmp_path):
  rng = np.random.default_rng(0)
  images = lambda n: rng.integers(0, 256, (n, 12, 12, 1)).astype(np.uint8)
  labels = lambda n: rng.integers(0, 10, n).astype(np.int32)
  data = ImageDataset(train=Split(images(64), labels(64)), val=Split(images(8), labels(8)),
                      test=Split(images(32), labels(32)), class_names=list("0123456789"))
  preprocess = lambda x: x.astype(jnp.float32) / 255.0
  model = ConvBN()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12, 12, 1)), train=False)
  # Running statistics from one train-mode pass (momentum 0: exactly that batch's), far from the
  # initial mean 0 / var 1, so eval mode and batch statistics give different logits.
  _, updates = model.apply(variables, preprocess(data.train.x), train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.PRNGKey(1)})
  variables = {**variables, **updates}
  exportable = adapters.classifier_exportable(name="conv_bn", model=model, variables=variables,
                                              preprocess=preprocess, data=data, parity_batch=16,
                                              num_calibration=16)
  x = exportable.parity_inputs[0]
  eval_logits = model.apply(variables, preprocess(x), train=False)
  np.testing.assert_allclose(exportable.fn(x)[0], eval_logits, rtol=0, atol=1e-6)
  batch_stat_logits = model.apply(variables, preprocess(x), train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.PRNGKey(2)})[0]
  assert np.abs(np.asarray(batch_stat_logits - eval_logits)).max() > 1e-2

  exported = pipeline.export_exportable(exportable, tmp_path, quantize=("none",),
                                        log=lambda *_: None)
  for key in FLOAT32:
    assert exported["formats"][key]["max_abs_error"] <= 1e-5, key
    assert exported["formats"][key]["accuracy"] == exported["jax_accuracy"], key


def test_checkpoint_restore_picks_the_seed_and_model_state(tmp_path):
  model = ConvBN()
  one = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12, 12, 1)), train=False)
  seeds = jax.tree.map(lambda a: jnp.stack([a, a + 1.0, a + 2.0]), one)
  saved = {"step": jnp.zeros((3,), jnp.int32), "params": seeds["params"],
           "model_state": {"batch_stats": seeds["batch_stats"]}, "opt_state": {},
           "rng": jnp.zeros((3, 2), jnp.uint32)}
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save("best", 7, saved, {"epoch": 7, "val": 0.5})
  checkpoints.close()
  variables, meta = restore_best(tmp_path, jax.eval_shape(lambda: one), num_seeds=3, seed_index=2)
  assert meta == {"epoch": 7, "val": 0.5}
  expected = jax.tree.map(lambda a: a + 2.0, one)
  jax.tree.map(np.testing.assert_array_equal, variables, expected)
  with pytest.raises(RunDirError, match="seed_index=3, but the run trained 3 seed"):
    restore_best(tmp_path, jax.eval_shape(lambda: one), num_seeds=3, seed_index=3)


class TinyLSTMCell(nn.Module):
  """A stand-in for the character LSTM's cell: embed, gates, new (h, c), logits."""
  vocab: int = 12
  hidden: int = 16

  @nn.compact
  def __call__(self, token, h, c):
    gates = nn.Dense(4 * self.hidden)(jnp.concatenate([nn.Embed(self.vocab, 8)(token), h], -1))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return nn.Dense(self.vocab)(h), h, c


def test_recurrent_step_exports_with_explicit_state(tmp_path):
  cell, zeros = TinyLSTMCell(), jnp.zeros((1, 16))
  variables = cell.init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32), zeros, zeros)
  tokens = np.random.default_rng(0).integers(0, 12, (4, 24))
  states = (TensorSpec("h", (None, 16)), TensorSpec("c", (None, 16)))
  exportable = adapters.step_exportable(name="tiny_lstm", step=lambda t, h, c: cell.apply(
      variables, t, h, c), state_specs=states, test_tokens=tokens, warmup=8)
  assert np.abs(exportable.parity_inputs[1]).max() > 0.01  # A warmed-up state, not zeros.
  with pytest.raises(ExportError, match="Full-int8 TFLite needs a representative data set"):
    pipeline.export_exportable(exportable, tmp_path, formats=("tflite",), quantize=("int8",))
  exported = pipeline.export_exportable(exportable, tmp_path, quantize=("none",),
                                        log=lambda *_: None)
  for key in FLOAT32:
    entry = exported["formats"][key]
    assert set(entry["max_abs_error_per_output"]) == {"logits", "h_out", "c_out"}
    assert entry["max_abs_error"] <= 1e-5, key
    assert entry["accuracy"] == exported["jax_accuracy"], key
  assert "| tflite_float32 | model_float32.tflite |" in report.table(exported)


def test_predict_cli_reads_idx_and_image_files_of_an_mnist_run(mlp_run, real_data_dir, tmp_path):
  """launch.predict on an MNIST-family workdir: the real t10k IDX file, and one of its digits
  saved as a PNG (grey, 28 x 28), give the labels the run's accuracy promises."""
  from playbook.data.idx import read_idx
  workdir = mlp_run[0]
  images = read_idx(real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
  labels = read_idx(real_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")
  Image.fromarray(images[0]).save(tmp_path / "digit.png")
  out = subprocess.run([sys.executable, "-m", "launch.predict", f"--workdir={workdir}",
                        str(real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"),
                        "--limit=200", str(tmp_path / "digit.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
  assert len(rows) == 201 and rows[0][0].endswith("t10k-images-idx3-ubyte.gz[0]")
  predicted = np.array([int(label) for _, label, _ in rows[:200]])
  assert np.mean(predicted == labels[:200]) > 0.8
  assert rows[200][1] == rows[0][1]  # The PNG of image 0 is image 0.
