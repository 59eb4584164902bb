"""Hyperparameter sweeps in one program: every variant x seed trains in one vmapped program, each
with its own optimiser, dropout and loss hyperparameters, and each variant is what its own run would be."""

from __future__ import annotations

import json
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import ROOT
from playbook.models.dropout import Dropout
from playbook.run import plots, rundir
from playbook.run.results import metric_words
from playbook.tasks import classify
from playbook.train import loop, sweep

MLP = "--config=experiments/mnist_mlp.py:quick"


def run(workdir, *flags):
  out = subprocess.run([sys.executable, "-m", "launch.main", MLP, f"--workdir={workdir}",
                        "--noprogress", "--config.tensorboard=False", *flags], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def swept(real_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sweep")
  return workdir, run(workdir, "--config.sweep.learning_rate=0.0003,0.001,0.003",
                      "--config.num_seeds=2")


def test_three_learning_rates_by_two_seeds_in_one_program(swept):
  workdir, results = swept
  assert [v["name"] for v in results["variants"]] == [
      "learning_rate=0.0003", "learning_rate=0.001", "learning_rate=0.003"]
  for variant in results["variants"]:
    assert len(variant["test_accuracy"]["per_seed"]) == 2
    assert len(variant["best_epochs"]) == 2
  accuracies = [v["test_accuracy"]["mean"] for v in results["variants"]]
  assert len(set(accuracies)) == 3  # Each model trained with its own learning rate.
  best = max(results["variants"], key=lambda v: v["val_accuracy"]["mean"])
  assert results["best_variant"] == best["name"]
  assert results["test_accuracy"] == best["test_accuracy"]
  assert (workdir / "plots" / "sweep.png").stat().st_size > 10_000


def test_a_variant_is_what_its_own_run_gives(swept, tmp_path):
  """Seed 0 of variant lr=0.003 and a plain run at lr=0.003, seed 0: the same test figure."""
  _, results = swept
  alone = run(tmp_path, "--config.optim.learning_rate=0.003")
  variant = results["variants"][2]
  assert variant["test_accuracy"]["per_seed"][0] == pytest.approx(
      alone["test_accuracy"]["mean"], abs=2e-4)  # Two images in 10,000, for rounding.


def test_the_sweep_plot_names_its_metrics_in_words():
  assert metric_words("test_accuracy") == "test accuracy"
  assert metric_words("val_accuracy") == "validation accuracy"
  assert metric_words("best_val_nats_per_char") == "best validation nats/char"


def test_a_two_value_sweep_plot_keys_line_styles_once_and_lists_combinations_under_each_panel(
    monkeypatch, tmp_path):
  figures = []
  monkeypatch.setattr(plots, "save", lambda fig, path: figures.append(fig) or path)
  variants = [{"name": f"learning_rate={lr:g},dropout={d:g}",
               "values": {"optim.learning_rate": lr, "model.dropout": d},
               "test_accuracy": {"mean": 0.9 + lr, "per_seed": [0.9 + lr]},
               "val_accuracy": {"mean": 0.91 + d, "per_seed": [0.91 + d]}}
              for lr in (0.001, 0.01) for d in (0.0, 0.2)]
  plots.sweep(variants, {"learning_rate": "optim.learning_rate", "dropout": "model.dropout"},
              tmp_path / "sweep.png", metric="test_accuracy", ylabel="accuracy", seeds=1,
              guide="val_accuracy", best=variants[1]["name"])
  fig, = figures
  assert [t.get_text() for t in fig.legends[0].get_texts()] == [
      "test accuracy (dots: seeds, line: their mean)", "validation accuracy", "best on validation"]
  assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes] == [
      ["dropout=0", "dropout=0.2"], ["learning_rate=0.001", "learning_rate=0.01"]]
  assert all(ax.get_legend().get_bbox_to_anchor().y1 < ax.bbox.y0 for ax in fig.axes)  # Below.


def test_sweep_hyperparameters_are_laid_out_variant_major():
  config = ml_collections.ConfigDict({"num_seeds": 2, "sweep": {
      "learning_rate": "0.1,0.2", "weight_decay": "0,0.5", "momentum": ""}})
  s = sweep.parse(config)
  assert s.num_models == 8 and s.names == ("learning_rate", "weight_decay")
  np.testing.assert_allclose(s.hparams()["learning_rate"], [.1, .1, .1, .1, .2, .2, .2, .2])
  np.testing.assert_allclose(s.hparams()["weight_decay"], [0, 0, .5, .5, 0, 0, .5, .5])
  np.testing.assert_array_equal(sweep.per_variant(np.arange(8), s)[3], [6, 7])


def test_injected_hyperparameters_are_data_in_each_models_state():
  optim = ml_collections.ConfigDict({"learning_rate": 0.1})
  s = sweep.Sweep(("learning_rate",), ({"learning_rate": 0.1}, {"learning_rate": 0.3}), 1)
  tx = sweep.injected(lambda o: optax.sgd(o.learning_rate), optim, s)
  state = loop.init_states(lambda rng: ({"w": jnp.ones(3)}, {}), tx, seed=0, num_seeds=2)
  state = loop.with_hyperparams(state, s.hparams())
  grads = {"w": jnp.ones((2, 3))}
  updates, _ = jax.vmap(tx.update)(grads, state.opt_state)
  np.testing.assert_allclose(updates["w"][:, 0], [-0.1, -0.3], rtol=1e-6)


def test_model_hyperparameters_are_data_in_each_models_state():
  config = ml_collections.ConfigDict({"num_seeds": 1, "model": {"dropout": 0.2},
                                      "optim": {"label_smoothing": 0.0},
                                      "sweep": {"dropout": "0.1,0.5", "label_smoothing": "0.2"}})
  s = sweep.parse(config)
  assert s.optimiser_names == () and s.model_names == ("dropout", "label_smoothing")
  init_fn = lambda rng: ({"w": jnp.ones(3)}, sweep.model_hparams(config, s))
  state = loop.init_states(init_fn, optax.sgd(0.1), seed=0, num_seeds=2)
  state = loop.with_hyperparams(state, s.hparams())
  np.testing.assert_allclose(state.model_state["hparams"]["dropout"], [0.1, 0.5])
  np.testing.assert_allclose(state.model_state["hparams"]["label_smoothing"], [0.2, 0.2])


def test_dropout_draws_flaxs_mask_and_takes_a_traced_rate():
  x = jnp.arange(1.0, 65.0).reshape(4, 16)
  rngs = {"dropout": jax.random.PRNGKey(3)}
  ours = Dropout(0.3).apply({}, x, rngs=rngs)
  np.testing.assert_array_equal(ours, nn.Dropout(0.3, deterministic=False).apply({}, x, rngs=rngs))
  traced = jax.jit(lambda rate: Dropout(rate).apply({}, x, rngs=rngs))(jnp.float32(0.3))
  np.testing.assert_allclose(traced, ours, rtol=1e-6)
  assert 0.2 < float(jnp.mean(ours == 0)) < 0.4


def test_a_dropout_and_label_smoothing_variant_is_what_its_own_run_gives(real_data_dir, tmp_path):
  results = run(tmp_path / "sweep", "--config.sweep.dropout=0,0.5",
                "--config.sweep.label_smoothing=0,0.3")
  assert [v["name"] for v in results["variants"]] == [
      "dropout=0,label_smoothing=0", "dropout=0,label_smoothing=0.3",
      "dropout=0.5,label_smoothing=0", "dropout=0.5,label_smoothing=0.3"]
  losses = [v["test_loss"]["mean"] for v in results["variants"]]
  assert len(set(losses)) == 4  # Each model trained with its own rate and smoothing.
  alone = run(tmp_path / "alone", "--config.model.dropout=0.5", "--config.optim.label_smoothing=0.3")
  assert results["variants"][3]["test_accuracy"]["mean"] == pytest.approx(
      alone["test_accuracy"]["mean"], abs=3e-4)


def test_predict_takes_the_best_variants_first_seed(swept):
  workdir, results = swept
  config = rundir.read_config(workdir)
  best = [v["name"] for v in results["variants"]].index(results["best_variant"])
  assert classify.stored_model(config, workdir, None) == (6, 2 * best)
  data = classify.load_data(config.data)
  probabilities = classify.predictor(config, workdir).predict(data.test.x)
  accuracy = np.mean(probabilities.argmax(-1) == data.test.y)
  assert accuracy == pytest.approx(
      results["variants"][best]["test_accuracy"]["per_seed"][0], abs=2e-4)
