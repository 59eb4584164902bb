"""A multilayer perceptron: flatten, then Dense -> ReLU -> Dropout for each hidden layer."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from playbook.models import precision
from playbook.models.dropout import Dropout


class MLP(nn.Module):
  hidden: Sequence[int]
  num_classes: int
  dropout: float = 0.0  # Or a traced scalar: one rate per model of a sweep (dropout.py).
  dtype: Any = jnp.float32  # Compute dtype (precision.py); the parameters stay float32.

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    dtype = precision.narrowed(self.dtype)
    x = x.reshape(x.shape[0], -1)
    dense = lambda width: nn.Dense(width, dtype=dtype, dot_general=precision.dot_general(dtype))
    for width in self.hidden:
      x = nn.relu(dense(width)(x))
      x = Dropout(self.dropout, deterministic=not train)(x)
    return precision.to_float32(dense(self.num_classes)(x), dtype)
