"""Mixed precision: ``config.precision`` as the models' compute dtype.

Parameters and optimiser state stay float32 (every module keeps flax's ``param_dtype=float32``);
with ``'bfloat16'`` the layers cast their float32 weights and inputs to bfloat16 and compute
there, while what needs the range or the accumulation stays float32: the logits a model returns
(so the loss and its softmax), BatchNorm's batch statistics and running averages (flax computes
them in float32), the LSTM's cell state, the style losses and their Gram matrices.

A module's ``dtype`` field is its compute dtype. float32, the default, is the full-precision
path, and it leaves every layer as it was: each computes in the dtype of its inputs and
parameters (float32 in training; float64 under the exports' float64 reference,
``Exportable.fn64``). Only a narrower dtype (bfloat16) casts anything.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config) -> jnp.dtype:
  """The compute dtype ``config.precision`` names (float32 when the config has no such key)."""
  name = config.get("precision", "float32")
  if name not in PRECISIONS:
    raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}.")
  return jnp.dtype(PRECISIONS[name])


def narrowed(dtype: Any) -> jnp.dtype | None:
  """The dtype a module casts to: None for the full-precision default (None or float32: the
  layers then compute in their inputs' and parameters' dtype, as flax's ``dtype=None``)."""
  if dtype is None or jnp.dtype(dtype) == jnp.float32:
    return None
  return jnp.dtype(dtype)


def cast(x, dtype: Any):
  """``x`` in the narrowed ``dtype``; unchanged on the full-precision path."""
  dtype = narrowed(dtype)
  return x if dtype is None else x.astype(dtype)


def to_float32(x, dtype: Any):
  """A model's output (logits, features) back in float32 when it was computed narrower;
  unchanged on the full-precision path (float64 stays float64)."""
  return x if narrowed(dtype) is None else x.astype(jnp.float32)
