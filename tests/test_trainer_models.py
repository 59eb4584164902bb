"""The trainer serves the other studies' needs: BatchNorm statistics and frozen parameters."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from playbook.train import loop, steps
from playbook.train.freeze import frozen
from playbook.train.losses import classification_loss


class BatchNormNet(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    x = nn.Dense(8, name="backbone")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.Dense(3, name="head")(nn.relu(x))


MODEL = BatchNormNet()
LOSS_FN = classification_loss(MODEL, preprocess=lambda x: x)


def init_fn(rng):
  variables = MODEL.init(rng, jnp.zeros((1, 4)), train=False)
  return variables["params"], {"batch_stats": variables["batch_stats"]}


def batch(n=32, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.normal(3.0, 2.0, (n, 4)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32)}


def test_batchnorm_statistics_update_in_training_and_are_read_in_eval():
  state = loop.init_states(init_fn, optax.adam(1e-2), seed=0, num_seeds=1)
  before = state.model_state["batch_stats"]["BatchNorm_0"]["mean"]
  state, _ = steps.make_train_step(LOSS_FN)(state, batch(), jax.random.PRNGKey(0))
  after = state.model_state["batch_stats"]["BatchNorm_0"]["mean"]
  assert np.all(before == 0) and np.all(np.abs(after) > 0)  # Running mean moved toward the data.
  eval_batch = dict(batch(seed=1), mask=jnp.ones(32))
  sums = steps.eval_step(state, eval_batch, loss_fn=LOSS_FN)
  sums_again = steps.eval_step(state, eval_batch, loss_fn=LOSS_FN)
  assert float(sums["count"]) == 32
  np.testing.assert_array_equal(sums["loss"], sums_again["loss"])  # Eval mode changes nothing.


def test_frozen_parameters_do_not_move_and_carry_no_optimizer_state():
  tx = frozen(optax.adam(1e-1), lambda name: name.startswith("head/"))
  state = loop.init_states(init_fn, tx, seed=0, num_seeds=1)
  start = state.params
  for i in range(3):
    state, _ = steps.make_train_step(LOSS_FN)(state, batch(seed=i), jax.random.PRNGKey(i))
  np.testing.assert_array_equal(state.params["backbone"]["kernel"], start["backbone"]["kernel"])
  assert not np.allclose(state.params["head"]["kernel"], start["head"]["kernel"])
  adam_leaves = sum(x.size for x in jax.tree.leaves(state.opt_state))
  head_size = sum(x.size for x in jax.tree.leaves(start["head"]))
  assert adam_leaves <= 2 * head_size + 8  # Moments for the head only (plus step counters).
