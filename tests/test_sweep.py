"""Hyperparameter sweeps in one program: every variant x seed trains in one vmapped program, each
with its own optimiser hyperparameters, and each variant is what its own run would be."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import ROOT
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
  states = jax.vmap(tx.init)({"w": jnp.ones((2, 3))})
  states = loop.with_hyperparams(states, s.hparams())
  grads = {"w": jnp.ones((2, 3))}
  updates, _ = jax.vmap(tx.update)(grads, states)
  np.testing.assert_allclose(updates["w"][:, 0], [-0.1, -0.3], rtol=1e-6)
