"""Winograd convolution F(m x m, 3 x 3) in ``jax.numpy``: 3x3, stride 1, SAME, NHWC / HWIO.

Why: style transfer runs VGG16's 3x3 convolutions forward and back to the input every step, and
on this 2-core CPU XLA's convolutions reach about 70 GFLOP/s there, below oneDNN's. Winograd's
minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016)
does the same convolution with fewer multiplies, as batched matmuls that XLA runs near its
matmul rate.

The maths, for output tiles of m x m (tile size t = m + 2 of input):

* split the input, padded by 1 (plus whatever rounds H, W up to multiples of m), into t x t tiles
  d at stride m (they overlap by 2). Each output tile is ``Y = A^T [(G g G^T) * (B^T d B)] A``,
  ``*`` elementwise, per (input channel, output channel) pair, summed over input channels;
* so with ``U = G g G^T`` (t, t, C_in, C_out) and ``V = B^T d B`` (t, t, tiles, C_in), the sum
  over channels at each of the t*t tile positions is one matmul: ``M[ij] = V[ij] @ U[ij]``,
  (tiles, C_in) @ (C_in, C_out), t*t of them batched. Multiplies per output: t*t / m*m per
  channel pair instead of 9: 2.25x fewer for F(2x2) (t = 4), 4x fewer for F(4x4) (t = 6);
* the transforms ``B^T d B`` and ``A^T M A`` are separable and have small constant entries: they
  are written as sums of slices (rows, then columns), which XLA fuses into elementwise passes;
  ``G g G^T`` is one (t*t, 9) @ (9, C_in*C_out) matmul per call (no caching across calls).

The gradient to the input of a stride-1 SAME 3x3 convolution is the same convolution of the
output gradient with the kernel rotated 180 degrees and its in/out channels swapped
(``fast_conv.py`` does the same for im2col), so the backward pass is Winograd too. The kernel's
gradient goes through XLA's own convolution gradient: style transfer never asks for it (frozen
VGG), and under ``jit`` it is then dead code and removed.

F(4x4) uses Lavin & Gray's interpolation points 0, +-1, +-2 (larger constants than F(2x2), so
float32 rounding grows: tests bound both against ``lax.conv_general_dilated``). ``Conv`` picks m
per layer (``choose_tile``) and keeps XLA's convolution for few input channels.

Speed depends on memory reuse: the transformed tiles are 2.25x (F4) to 4x (F2) the activations,
and XLA's CPU runtime takes its buffers from glibc malloc afresh on each call, which maps new
pages for large ones (~3 us per 4 KB page here). ``benchmarks/winograd_probe.py`` measures both,
with and without ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from playbook.models import precision
from playbook.models.fast_conv import xla_conv

# (B^T, G, A^T) for output tile m: B^T (t, t), G (t, 3), A^T (m, t), t = m + 2.
MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64)),
}


def _combine(arrays, coefficients):
  """sum_k coefficients[k] * arrays[k], skipping zeros (constant taps: XLA fuses the sum)."""
  out = None
  for c, a in zip(coefficients, arrays):
    if c == 0:
      continue
    term = a if c == 1 else -a if c == -1 else a * np.float32(c)
    out = term if out is None else out + term
  return out


def input_transform(x: jax.Array, m: int) -> jax.Array:
  """``B^T d B`` for every t x t input tile: (t*t, N*th*tw, C), th, tw = ceil(H/m), ceil(W/m)."""
  bt = MATRICES[m][0]
  t = m + 2
  n, h, w, c = x.shape
  th, tw = -(-h // m), -(-w // m)
  # 1 of SAME padding on top/left, then up to m*(th+1) rows so that a reshape splits row r into
  # (r // m, r % m): tile a's row k is then block a + k // m, offset k % m, a unit-stride slice
  # (t <= 2m). Only rows up to m*th + 1 are read, so the padding's zeros are SAME's.
  xp = jnp.pad(x, ((0, 0), (1, m * (th + 1) - 1 - h), (1, m * (tw + 1) - 1 - w), (0, 0)))
  blocks = xp.reshape(n, th + 1, m, tw + 1, m, c)
  rows = [blocks[:, k // m:k // m + th, k % m] for k in range(t)]  # (N, th, tw+1, m, C) each.
  rows = [_combine(rows, bt[i]) for i in range(t)]
  tiles = []
  for r in rows:
    cols = [r[:, :, k // m:k // m + tw, k % m] for k in range(t)]  # (N, th, tw, C) each.
    tiles += [_combine(cols, bt[j]) for j in range(t)]
  return jnp.stack(tiles).reshape(t * t, n * th * tw, c)


def kernel_transform(kernel: jax.Array, m: int, rotate: bool = False) -> jax.Array:
  """``G g G^T`` per channel pair: (t*t, C_in, C_out), as one (t*t, 9) @ (9, C_in*C_out) matmul
  (an einsum over the 3x3 axes ran 5-30x slower on XLA's CPU backend). ``rotate``: of the kernel
  rotated 180 degrees, by permuting the constant's columns rather than the weights."""
  g = MATRICES[m][1]
  t = m + 2
  gg = np.einsum("ia,jb->ijab", g, g)
  if rotate:
    gg = gg[:, :, ::-1, ::-1]
  gg = gg.reshape(t * t, 9).astype(np.float32)
  kernel = kernel.astype(jnp.promote_types(kernel.dtype, jnp.float32))  # float32 at least.
  u = jnp.matmul(gg, kernel.reshape(9, -1), precision=lax.Precision.HIGHEST)
  return u.reshape(t * t, *kernel.shape[2:])


def output_transform(mm: jax.Array, m: int, n: int, th: int, tw: int) -> jax.Array:
  """``A^T M A`` per tile, tiles assembled: (t*t, N*th*tw, K) -> (N, m*th, m*tw, K)."""
  at = MATRICES[m][2]
  t = m + 2
  k = mm.shape[-1]
  mm = mm.reshape(t, t, n, th, tw, k)
  rows = [_combine([mm[i] for i in range(t)], at[a]) for a in range(m)]  # (t, N, th, tw, K).
  ys = [jnp.stack([_combine([r[j] for j in range(t)], at[b]) for b in range(m)], axis=3)
        for r in rows]                                                    # (N, th, tw, m, K).
  return jnp.stack(ys, axis=2).reshape(n, th * m, tw * m, k)


def winograd_conv(x: jax.Array, kernel: jax.Array, m: int = 2, *,
                  transposed: bool = False) -> jax.Array:
  """The forward pass alone (no custom gradient): 3x3 stride-1 SAME, NHWC / HWIO.

  ``transposed=True`` convolves with the kernel rotated 180 degrees and its channels swapped
  (the input gradient's kernel), without moving the weights: the rotation is in the transform's
  constants and the swap in the matmul's contraction.

  In a narrower dtype than float32 (mixed precision), the multiplies run in ``x``'s dtype and the
  result comes back in it; the kernel transform and the transforms with constants other than
  +-1 (F(4x4)'s) run in float32, where their rounding is not amplified."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f"Winograd here is for 3x3 kernels, got {kernel.shape[:2]}.")
  if m not in MATRICES:
    raise ValueError(f"tile m must be one of {sorted(MATRICES)}, got {m}.")
  n, h, w, _ = x.shape
  v = input_transform(x, m).astype(x.dtype)  # Casts: no-ops in float32.
  u = kernel_transform(kernel.astype(x.dtype), m, rotate=transposed).astype(x.dtype)
  # The multiplies: (t*t, tiles, C_in) @ (t*t, C_in, C_out), or @ its transpose.
  mm = jnp.einsum("tpc,tkc->tpk" if transposed else "tpc,tck->tpk", v, u)
  th, tw = -(-h // m), -(-w // m)
  return output_transform(mm, m, n, th, tw)[:, :h, :w].astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3(x: jax.Array, kernel: jax.Array, m: int = 2) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, (1, 1), "SAME")`` by Winograd F(m x m, 3 x 3), with
  the input gradient by Winograd too and the kernel gradient by XLA."""
  return winograd_conv(x, kernel, m)


def _conv3x3_fwd(x, kernel, m):
  return winograd_conv(x, kernel, m), (x, kernel)


def _conv3x3_bwd(m, residuals, g):
  x, kernel = residuals
  dx = winograd_conv(g, kernel, m, transposed=True)
  # Unused in style transfer (frozen kernel): jit removes it as dead code.
  _, kernel_vjp = jax.vjp(lambda k: xla_conv(x, k), kernel)
  (dk,) = kernel_vjp(g)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


# Below this many input channels XLA's own convolution is kept: a 3-channel image gives the
# matmuls nothing to amortise the transforms over (3-5x slower than XLA, winograd_probe).
MIN_CHANNELS = 16


def choose_tile(height: int, width: int, c_in: int) -> int:
  """m of F(m x m, 3 x 3) for a layer: 0 (XLA's convolution), 2 or 4.

  F(4x4) multiplies least but its transformed kernel is 36 / 16 = 2.25x F(2x2)'s; once a layer
  has fewer 4x4 tiles than input channels, reading those weights costs more than the multiplies
  saved (VGG16's 24x32 and 12x16 layers at a 192x256 input, ``benchmarks/winograd_probe.py``).
  """
  if c_in < MIN_CHANNELS:
    return 0
  return 4 if -(-height // 4) * -(-width // 4) >= c_in else 2


class Conv(nn.Module):
  """``nn.Conv(features, (3, 3), padding="SAME")`` by Winograd F(m x m, 3 x 3): the same
  parameters (``kernel`` HWIO, ``bias``), so checkpoints and Keras weights load unchanged.

  ``tile``: m (2 or 4), or 0 to pick per input shape with :func:`choose_tile` (which keeps XLA's
  convolution for inputs of fewer than ``MIN_CHANNELS`` channels)."""
  features: int
  tile: int = 0
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32  # Compute dtype (precision.py): input, kernel and bias cast to it.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = precision.cast(x, self.dtype)
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    kernel = kernel.astype(x.dtype)
    m = self.tile or choose_tile(x.shape[1], x.shape[2], x.shape[-1])
    y = conv3x3(x, kernel, m) if m else xla_conv(x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y
