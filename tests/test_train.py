"""The common trainer on a tiny synthetic problem: steps, eval, vmap over seeds, resume, NaN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from playbook.models.mlp import MLP
from playbook.train import NonFiniteLossError, fit, loop, steps
from playbook.train.checkpoint import Checkpoints
from playbook.train.losses import classification_loss
from playbook.run.writer import read_metrics
from toy import blobs

MODEL = MLP(hidden=(16,), num_classes=3, dropout=0.1)
LOSS_FN = classification_loss(MODEL, preprocess=lambda x: x.astype(jnp.float32))


def init_fn(rng):
  return MODEL.init(rng, jnp.zeros((1, 4)), train=False)["params"], {}


def train_cfg(**overrides):
  cfg = ml_collections.ConfigDict(dict(batch_size=16, num_epochs=3, eval_batch_size=32, patience=0,
                                       best_metric="accuracy", best_mode="max",
                                       log_every_steps=4))
  cfg.update(overrides)
  return cfg


def run_fit(workdir, *, tx=None, num_seeds=1, **cfg):
  return fit(init_fn=init_fn, loss_fn=LOSS_FN, tx=tx or optax.adam(1e-2), train_data=blobs(160),
             val_data=blobs(50, seed=1), cfg=train_cfg(**cfg), workdir=workdir, seed=0,
             num_seeds=num_seeds, progress=False)


def val_accuracies(result):
  return np.array([row["val"]["accuracy"] for row in result.history])


def test_train_step_lowers_loss_on_a_fixed_batch():
  state = loop.init_states(init_fn, optax.adam(1e-2), seed=0, num_seeds=1)
  batch = jax.tree.map(jnp.asarray, blobs(32))
  step = jax.jit(lambda s, b, r: steps.make_train_step(LOSS_FN)(s, b, r))
  state, first = step(state, batch, jax.random.PRNGKey(0))
  for i in range(30):
    state, metrics = step(state, batch, jax.random.PRNGKey(i + 1))
  assert int(state.step) == 31
  assert float(metrics["loss"]) < 0.5 * float(first["loss"])


def test_eval_counts_every_example_once_despite_padding():
  state = loop.init_states(init_fn, optax.adam(1e-2), seed=0, num_seeds=1)
  data = blobs(10)
  metrics = loop.evaluate(state, data, loss_fn=LOSS_FN, batch_size=4, num_seeds=1)  # 4+4+2(+2 pad)
  logits = MODEL.apply({"params": state.params}, data["image"], train=False)
  expected_acc = np.mean(np.argmax(logits, -1) == data["label"])
  expected_xent = optax.softmax_cross_entropy_with_integer_labels(logits, data["label"]).mean()
  assert metrics["accuracy"] == pytest.approx(expected_acc)
  assert metrics["xent"] == pytest.approx(float(expected_xent), rel=1e-5)


def test_epoch_batches_are_a_permutation_without_the_ragged_tail():
  batches = np.asarray(steps.epoch_batches(jax.random.PRNGKey(0), 10, 3))
  assert batches.shape == (3, 3)
  assert len(set(batches.ravel().tolist())) == 9 and batches.max() < 10


def test_fit_learns_and_is_deterministic(tmp_path):
  a = run_fit(tmp_path / "a")
  b = run_fit(tmp_path / "b")
  assert val_accuracies(a)[-1] > 0.8
  assert a.history == b.history
  assert a.steps_per_second > 0  # Measured over the epochs after the compiling one.


def test_vmapped_seeds_train_independently_and_seed0_matches_single_run(tmp_path):
  single = run_fit(tmp_path / "single")
  multi = run_fit(tmp_path / "multi", num_seeds=3)
  per_seed = np.array([row["val"]["xent"] for row in multi.history])  # (epochs, seeds)
  assert per_seed.shape == (3, 3)
  np.testing.assert_allclose(per_seed[:, 0], [r["val"]["xent"] for r in single.history],
                             rtol=1e-5)
  assert len({round(float(v), 6) for v in per_seed[-1]}) == 3  # Three different runs.
  assert jax.tree.leaves(multi.state.params)[0].shape[0] == 3


def test_resume_from_latest_equals_uninterrupted_run(tmp_path):
  straight = run_fit(tmp_path / "straight", num_epochs=4)
  run_fit(tmp_path / "resumed", num_epochs=2)
  resumed = run_fit(tmp_path / "resumed", num_epochs=4)
  assert resumed.history == straight.history
  steps_logged = [r["step"] for r in read_metrics(tmp_path / "resumed") if r["split"] == "val"]
  assert steps_logged == [10, 20, 30, 40]  # No duplicate rows from the first process.


def test_calls_per_epoch_is_the_fewest_equal_shares_within_the_limit():
  assert loop.calls_per_epoch(100, None) == loop.calls_per_epoch(100, 0) == 1
  assert loop.calls_per_epoch(100, 10) == 10
  assert loop.calls_per_epoch(100, 30) == 4  # 25 steps each.
  assert loop.calls_per_epoch(97, 10) == 97  # A prime: one step per call.
  assert loop.calls_per_epoch(10, 50) == 1


def test_an_epoch_split_into_calls_trains_exactly_as_one_call(tmp_path):
  whole = run_fit(tmp_path / "whole")
  split = run_fit(tmp_path / "split", steps_per_call=3)  # 10 steps per epoch: 5 calls of 2.
  assert split.history == whole.history
  np.testing.assert_array_equal(jax.tree.leaves(split.state.params)[0],
                                jax.tree.leaves(whole.state.params)[0])


def test_best_checkpoint_holds_the_best_validation_epoch(tmp_path):
  result = run_fit(tmp_path / "run", num_epochs=4)
  best_epoch = int(np.argmax(val_accuracies(result))) + 1
  assert result.best_epoch == best_epoch
  _, meta = Checkpoints(tmp_path / "run").restore("best", result.state.saveable())
  assert meta["epoch"] == best_epoch


def test_nan_loss_stops_with_a_clear_error_and_keeps_last_good_checkpoint(tmp_path):
  run_fit(tmp_path / "run", num_epochs=1, tx=optax.sgd(1e-2))
  with pytest.raises(NonFiniteLossError, match=r"Loss became nan in epoch 2 .*last good "
                     r"checkpoint \(epoch 1\) is kept"):
    run_fit(tmp_path / "run", num_epochs=3, tx=optax.sgd(1e30))
  state = loop.init_states(init_fn, optax.sgd(1e-2), seed=0, num_seeds=1)
  _, meta = Checkpoints(tmp_path / "run").restore("latest", state.saveable())
  assert meta["epoch"] == 1


def test_nan_in_the_first_epoch_says_no_checkpoint_was_saved(tmp_path):
  with pytest.raises(NonFiniteLossError, match=r"epoch 1 .*no checkpoint was saved .*re-run "
                     r"starts from the beginning"):
    run_fit(tmp_path / "run", num_epochs=2, tx=optax.sgd(1e30))
  assert not list((tmp_path / "run" / "checkpoints" / "latest").glob("[0-9]*"))
