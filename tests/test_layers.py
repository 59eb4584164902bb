"""The shared Dropout layer and the trainer's gradient norm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from playbook.models.layers import Dropout
from playbook.train.steps import global_norm


def _apply(rate, x, seed=0, deterministic=False):
  layer = Dropout(rate, deterministic=deterministic)
  return layer.apply({}, x, rngs={"dropout": jax.random.key(seed)})


def test_dropout_drops_the_rate_and_keeps_the_mean():
  x = jnp.ones((1000, 1000))
  y = np.asarray(_apply(0.2, x))
  assert abs(np.mean(y == 0) - 0.2) < 0.002           # 1e6 draws: std of the rate is 4e-4.
  assert abs(y.mean() - 1.0) < 0.005                  # inverted dropout is unbiased.
  np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - round(0.2 * 2**16) / 2**16), rtol=1e-6)


def test_dropout_is_a_function_of_its_key_and_off_in_eval():
  x = jnp.arange(64.0).reshape(8, 8)
  np.testing.assert_array_equal(_apply(0.5, x, seed=3), _apply(0.5, x, seed=3))
  assert not np.array_equal(_apply(0.5, x, seed=3), _apply(0.5, x, seed=4))
  np.testing.assert_array_equal(_apply(0.5, x, deterministic=True), x)


def test_dropout_rejects_a_rate_of_one():
  with pytest.raises(ValueError, match="rate"):
    _apply(1.0, jnp.ones(4))


def test_global_norm_equals_optax():
  tree = {"a": jnp.arange(12.0).reshape(3, 4) - 5, "b": {"c": jnp.array([3.0, -4.0])}}
  np.testing.assert_allclose(global_norm(tree), optax.tree.norm(tree), rtol=1e-6)
