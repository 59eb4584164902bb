"""A stride-1 2-D convolution computed as matmuls: forward, input gradient and weight gradient.

Why: on this CPU, XLA's convolutions at CIFAR shapes run at 2-20 GFLOP/s in training (batch 128,
32-64 channels): the forward pass through YNNPACK at 6-19, the input gradient (a transposed
convolution, which falls back to a generic kernel) at about 2, the weight gradient 5-10x slower
than PyTorch's oneDNN (DESIGN.md). A matmul runs at about 110 GFLOP/s here. So every part is an
im2col matmul:

* forward: ``patches(x) @ kernel``, where ``patches`` stacks the k*k shifted copies of the padded
  input along the channel axis, (N*H'*W', k*k*C_in), and the HWIO kernel is reshaped to
  (k*k*C_in, C_out) in the same (row, column, channel) order;
* input gradient: the same convolution of the output gradient, padded by (k-1-lo, k-1-hi), with
  the kernel rotated 180 degrees and its in/out channels swapped;
* weight gradient: ``patches(x).T @ g`` (the forward's patches, kept as the residual).

The values are the convolution's up to float32 rounding (tests compare with XLA in value and
gradient). ``Conv`` is a drop-in for ``nn.Conv`` (NHWC, HWIO kernel, same parameter names), so
``fast=False`` gives the plain ``nn.Conv`` path and numbers.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from playbook.models import precision

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _pad_amounts(kernel_size: int, padding: str) -> tuple[int, int]:
  if padding == "SAME":
    return (kernel_size - 1) // 2, kernel_size // 2
  if padding == "VALID":
    return 0, 0
  raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}.")


def xla_conv(x, kernel, padding="SAME"):
  """XLA's own stride-1 convolution, NHWC / HWIO: what the fast paths must equal."""
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=DIMENSION_NUMBERS)


def patches(x: jax.Array, kernel_size: int, pads: tuple[int, int]) -> jax.Array:
  """(N, H', W', k*k*C): for each output position, its k x k input window, row by row, channels
  innermost (the order of an HWIO kernel reshaped to (k*k*C_in, C_out))."""
  lo, hi = pads
  xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  h_out, w_out = xp.shape[1] - kernel_size + 1, xp.shape[2] - kernel_size + 1
  return jnp.concatenate([xp[:, i:i + h_out, j:j + w_out, :] for i in range(kernel_size)
                          for j in range(kernel_size)], axis=-1)


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a @ b`` in the operands' dtype; bfloat16 ones summed in float32 (``precision.dot``: the
  form the CPU runs natively on bfloat16 hardware) and rounded back."""
  return precision.dot(a, b, a.dtype).astype(a.dtype)


def _matmul_conv(x_patches: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, kkc = x_patches.shape
  out = _matmul(x_patches.reshape(-1, kkc), kernel.reshape(kkc, kernel.shape[-1]))
  return out.reshape(n, h, w, kernel.shape[-1])


def _check_square(kernel_shape):
  if kernel_shape[0] != kernel_shape[1]:
    raise ValueError(f"square kernels only, got {kernel_shape[0]}x{kernel_shape[1]}.")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, padding: str = "SAME") -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` (NHWC/HWIO), as matmuls."""
  _check_square(kernel.shape)
  k = kernel.shape[0]
  return _matmul_conv(patches(x, k, _pad_amounts(k, padding)), kernel)


def _conv2d_fwd(x, kernel, padding):
  _check_square(kernel.shape)
  k = kernel.shape[0]
  x_patches = patches(x, k, _pad_amounts(k, padding))
  return _matmul_conv(x_patches, kernel), (x_patches, kernel)


def _conv2d_bwd(padding, residuals, g):
  x_patches, kernel = residuals
  k, _, c_in, c_out = kernel.shape
  lo, hi = _pad_amounts(k, padding)
  rotated = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # (k, k, C_out, C_in)
  dx = _matmul_conv(patches(g, k, (k - 1 - lo, k - 1 - hi)), rotated)
  dw = _matmul(x_patches.reshape(-1, k * k * c_in).T, g.reshape(-1, c_out))
  return dx.astype(x_patches.dtype), dw.reshape(kernel.shape).astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def max_pool_2x2(x: jax.Array, *, fast: bool = True) -> jax.Array:
  """2x2 max-pooling, stride 2, VALID (an odd last row/column is dropped), NHWC.

  ``fast=True`` writes it as reshape + max: the same values, and a gradient that XLA's CPU
  backend runs about 4.6x faster than ``nn.max_pool``'s select-and-scatter (152 ms against 33 ms
  on (128, 30, 30, 32), ``benchmarks/pool_gradient_probe.py``). The gradient differs only for
  ties inside a window (reshape + max splits it among them). ``fast=False`` is ``nn.max_pool``
  (what an ONNX export should see: call it with ``window_shape=`` as a keyword).
  """
  if not fast:
    return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv(nn.Module):
  """``nn.Conv`` for square stride-1 kernels (same parameters ``kernel`` HWIO and ``bias``).

  ``fast=True`` computes through :func:`conv2d` (im2col matmuls, forward and backward);
  ``fast=False`` through XLA's own convolution and its gradient, which is what ``nn.Conv`` does.
  """
  features: int
  kernel_size: int = 3
  padding: str = "SAME"
  use_bias: bool = True
  fast: bool = True
  frozen_kernel: bool = False  # No gradient to the kernel (so none is computed), e.g. a fixed
                               # whitening layer; the bias still trains.
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32  # Compute dtype (precision.py): input, kernel and bias cast to it.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    x = precision.cast(x, self.dtype)
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    kernel = kernel.astype(x.dtype)
    if self.frozen_kernel:
      kernel = jax.lax.stop_gradient(kernel)
    y = conv2d(x, kernel, self.padding) if self.fast else xla_conv(x, kernel, self.padding)
    if self.use_bias:
      y = y + precision.cast(self.param("bias", nn.initializers.zeros, (self.features,)),
                             self.dtype)
    return y
