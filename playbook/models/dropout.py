"""Dropout whose rate may be a traced number, so a sweep can train several rates in one program.

The same computation as ``flax.linen.Dropout`` (and the same auto-name, ``Dropout_<n>``, so the
same random stream and, for a Python-number rate, the same numbers): keep each unit with
probability ``1 - rate`` and scale the kept ones by ``1 / (1 - rate)``. flax's module branches on
the rate's value in Python, which a traced rate (one per model of a vmapped sweep) cannot do.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class Dropout(nn.Module):
  rate: Any                   # A number in [0, 1), or a traced scalar (a swept value).
  deterministic: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    static = isinstance(self.rate, (int, float))
    if self.deterministic or (static and self.rate == 0.0):
      return x
    keep_prob = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep_prob, shape=x.shape)
    scale = keep_prob if static else jnp.asarray(keep_prob, x.dtype)
    return jax.lax.select(mask, x / scale, jnp.zeros_like(x))
