"""Mixed precision: ``config.precision`` as the models' compute dtype.

Parameters and optimiser state stay float32 (every module keeps flax's ``param_dtype=float32``);
with ``'bfloat16'`` the layers cast their float32 weights and inputs to bfloat16 and compute
there, while what needs the range or the accumulation stays float32: the sums inside every
matmul (``dot``, ``matmul``, ``dot_general``), the logits a model returns (so the loss and its
softmax), BatchNorm's batch statistics and running averages (flax computes them in float32), the
LSTM's gates and cell state, the style losses and their Gram matrices.

A module's ``dtype`` field is its compute dtype. float32, the default, is the full-precision
path, and it leaves every layer as it was: each computes in the dtype of its inputs and
parameters (float32 in training; float64 under the exports' float64 reference,
``Exportable.fn64``). Only a narrower dtype (bfloat16) casts anything.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
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


# --- Matmuls: narrow operands, float32 sums ------------------------------------------------------
# A bfloat16 matmul whose products are summed, and returned, in float32 is what accelerators'
# matrix units do, and it is also the form XLA's CPU backend runs natively on bfloat16 hardware
# (avx512_bf16: faster than float32), where a matmul with a bfloat16 result is converted to
# float32 and back (slower than float32; both measured by ``benchmarks/precision.py``). ``matmul``
# keeps every matmul of a training step in that form: the forward, and the two of its gradient,
# whose incoming gradient it rounds to bfloat16 as the forward rounds its operands.


def dot(x: jax.Array, y: jax.Array, dtype: Any) -> jax.Array:
  """``x @ y`` computed in ``dtype``: in bfloat16 both operands are rounded to it and the products
  summed in float32, which comes back (only the inputs lose precision, never the sum of a long
  row); on the full-precision path ``x @ y`` itself (float64 stays float64). Its gradient is
  autodiff's; ``matmul`` is the same product with a gradient in the same form."""
  narrow = narrowed(dtype)
  if narrow is None:
    return x @ y
  return jnp.matmul(x.astype(narrow), y.astype(narrow), preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _narrow_matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  return dot(x, w, dtype)


def _narrow_matmul_fwd(x, w, dtype):
  x_narrow, w_narrow = x.astype(dtype), w.astype(dtype)
  y = dot(x_narrow, w_narrow, dtype)
  # The narrow operands are what the gradient needs (half the memory of float32 ones); the
  # zero-size arrays only carry the inputs' dtypes, which the gradients must have.
  return y, (x_narrow, w_narrow, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _narrow_matmul_bwd(dtype, residuals, g):
  x_narrow, w_narrow, x_like, w_like = residuals
  dx = dot(g, w_narrow.T, dtype)
  dw = dot(x_narrow.reshape(-1, x_narrow.shape[-1]).T, g.reshape(-1, g.shape[-1]), dtype)
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


_narrow_matmul.defvjp(_narrow_matmul_fwd, _narrow_matmul_bwd)


def matmul(x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
  """``x @ w`` (x (..., k), w (k, n)) in the compute ``dtype``: in bfloat16 the operands, and in
  the gradient the incoming gradient, are rounded to it and every sum is float32, as is the
  result; on the full-precision path ``x @ w`` itself."""
  narrow = narrowed(dtype)
  return x @ w if narrow is None else _narrow_matmul(x, w, narrow)


def dot_general(dtype: Any):
  """For flax's ``nn.Dense(..., dot_general=...)``: its contraction (the input's last axis with
  the kernel's first) through ``matmul``; None (flax's own) on the full-precision path."""
  narrow = narrowed(dtype)
  if narrow is None:
    return None

  def dense_dot(x, w, dimension_numbers, precision=None, preferred_element_type=None):
    (contract_x, contract_w), (batch_x, batch_w) = dimension_numbers
    if (tuple(contract_x), tuple(contract_w), batch_x, batch_w) != ((x.ndim - 1,), (0,), (), ()):
      raise ValueError(f"precision.dot_general serves nn.Dense only, got {dimension_numbers}.")
    return _narrow_matmul(x, w, narrow)
  return dense_dot
