"""A stride-1 2-D convolution whose weight gradient is computed as k*k matmuls.

Why: on CPU, XLA's convolution weight gradient is 5-10x slower than PyTorch's oneDNN (DESIGN.md:
32x32, 32->32 channels at batch 128: 490 ms). The same gradient written as one matmul per kernel
tap, ``dW[i, j] = x_shifted(i, j).reshape(-1, c_in).T @ g.reshape(-1, c_out)``, runs on XLA's
matmul path (46 ms, equal to 1e-6). The forward pass and the input gradient stay XLA's own
convolutions, which are close to oneDNN's. ``Conv`` is a drop-in for ``nn.Conv`` (NHWC, HWIO
kernel, same parameter names), so ``fast=False`` gives the plain ``nn.Conv`` numbers.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _pad_amounts(kernel_size: int, padding: str) -> tuple[int, int]:
  if padding == "SAME":
    return (kernel_size - 1) // 2, kernel_size // 2
  if padding == "VALID":
    return 0, 0
  raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}.")


def _conv(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=DIMENSION_NUMBERS)


def weight_gradient(x: jax.Array, g: jax.Array, kernel_shape, padding: str) -> jax.Array:
  """d(conv(x, W))/dW contracted with the output gradient ``g``, as one matmul per kernel tap."""
  kh, kw, c_in, c_out = kernel_shape
  if kh != kw:
    raise ValueError(f"square kernels only, got {kh}x{kw}.")
  lo, hi = _pad_amounts(kh, padding)
  xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  h_out, w_out = g.shape[1], g.shape[2]
  g2 = g.reshape(-1, c_out)
  taps = [xp[:, i:i + h_out, j:j + w_out, :].reshape(-1, c_in).T @ g2
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: jax.Array, kernel: jax.Array, padding: str = "SAME") -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` (NHWC/HWIO), fast weight gradient."""
  return _conv(x, kernel, padding)


def _conv2d_fwd(x, kernel, padding):
  return _conv(x, kernel, padding), (x, kernel)


def _conv2d_bwd(padding, residuals, g):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x_: _conv(x_, kernel, padding), x)
  (dx,) = input_vjp(g)
  return dx, weight_gradient(x, g, kernel.shape, padding).astype(kernel.dtype)


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

  ``fast=True`` differentiates through :func:`conv2d` (matmul weight gradient); ``fast=False``
  through XLA's own convolution gradient, which is what ``nn.Conv`` does.
  """
  features: int
  kernel_size: int = 3
  padding: str = "SAME"
  use_bias: bool = True
  fast: bool = True
  frozen_kernel: bool = False  # No gradient to the kernel (so none is computed), e.g. a fixed
                               # whitening layer; the bias still trains.
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    kernel = kernel.astype(x.dtype)
    if self.frozen_kernel:
      kernel = jax.lax.stop_gradient(kernel)
    y = conv2d(x, kernel, self.padding) if self.fast else _conv(x, kernel, self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y
