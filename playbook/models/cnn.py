"""The seed notebook's CIFAR-10 CNN: the Keras ``cifar10_cnn.py`` example network.

    conv3x3-32 (same) ReLU -> conv3x3-32 (valid) ReLU -> maxpool 2 -> dropout 0.25
    conv3x3-64 (same) ReLU -> conv3x3-64 (valid) ReLU -> maxpool 2 -> dropout 0.25
    flatten -> dense 512 ReLU -> dropout 0.5 -> dense 10

32x32 -> 32 -> 30 -> 15 -> 15 -> 13 -> 6: the classifier sees 6*6*64 = 2304 features.
``fast_conv`` switches the convolutions' weight gradient to ``fast_conv.conv2d`` and the pooling
to ``fast_conv.max_pool_2x2``'s reshape + max (same numbers, faster gradients on CPU); the
parameters are the same either way.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from playbook.models import precision
from playbook.models.dropout import Dropout
from playbook.models.fast_conv import Conv, max_pool_2x2


class SeedCNN(nn.Module):
  num_classes: int = 10
  widths: tuple[int, int] = (32, 64)
  hidden: int = 512
  conv_dropout: float = 0.25
  dropout: float = 0.5  # Or a traced scalar: one rate per model of a sweep (dropout.py).
  fast_conv: bool = True
  dtype: Any = jnp.float32  # Compute dtype (precision.py); the parameters stay float32.

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    dtype = precision.narrowed(self.dtype)
    for width in self.widths:
      x = nn.relu(Conv(width, padding="SAME", fast=self.fast_conv, dtype=dtype)(x))
      x = nn.relu(Conv(width, padding="VALID", fast=self.fast_conv, dtype=dtype)(x))
      x = max_pool_2x2(x, fast=self.fast_conv)
      x = Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden, dtype=dtype, dot_general=precision.dot_general(dtype))(x))
    x = Dropout(self.dropout, deterministic=not train)(x)
    return precision.to_float32(
        nn.Dense(self.num_classes, dtype=dtype, dot_general=precision.dot_general(dtype))(x), dtype)
