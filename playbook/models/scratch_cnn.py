"""A convolutional network in ``jax.numpy`` alone, its backward pass derived and coded by hand.

conv 3x3 -> ReLU -> max-pool 2x2 -> conv 3x3 -> ReLU -> max-pool 2x2 -> dense -> softmax, with no
automatic differentiation (no ``grad``, no ``vjp``) and no Flax. Every layer is a pair of pure
functions: ``*_forward`` returns its output and a cache of what the backward pass needs,
``*_backward`` turns the upstream gradient and that cache into the gradients of the layer's input
and parameters. ``docs/conv_backprop.md`` derives every formula here; ``docs/backprop.md`` does the
dense layer and the loss, which come from ``scratch.py``.

Layout: activations NHWC (batch, height, width, channels), convolution weights HWIO
(kernel height, kernel width, input channels, output channels), dense weights (n_in, n_out).

  x        (B, H, W, C)          a layer's input
  w, b     (kh, kw, C, O), (O,)  a convolution's weights and biases
  cols     (B*Ho*Wo, kh*kw*C)    im2col: one row per output position, the window it sees
  y        (B, Ho, Wo, O)        a convolution's output, y = cols @ w.reshape(kh*kw*C, O) + b
  dy, dx   like y, like x        dJ/dy and dJ/dx: upstream and downstream gradients
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from playbook.models import precision
from playbook.models.precision import dot
from playbook.models.scratch import (INIT_VARIANCE, l2_penalty, one_hot, relu, relu_derivative,
                                     softmax_cross_entropy)

Params = list[dict[str, jax.Array]]  # One {"w", "b"} per layer: the convolutions, then dense.

PADDINGS = ("SAME", "VALID")


def _static(cls):
  """A frozen dataclass that is a pytree: array fields are leaves, the rest static metadata."""
  cls = dataclasses.dataclass(frozen=True)(cls)
  meta = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static")]
  data = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("static")]
  return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


_meta = functools.partial(dataclasses.field, metadata={"static": True})


# --- Convolution ----------------------------------------------------------------------------------


def conv_geometry(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
  """(output size, padding before, padding after) along one spatial axis.

  VALID: no padding, every window inside the input, out = floor((size - kernel) / stride) + 1.
  SAME: out = ceil(size / stride), zeros added so the last window fits; the odd one of an odd
  total goes after (XLA's and TensorFlow's convention).
  """
  if padding == "VALID":
    if size < kernel:
      raise ValueError(f"VALID convolution of size {size} with a kernel of {kernel}.")
    return (size - kernel) // stride + 1, 0, 0
  if padding == "SAME":
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2
  raise ValueError(f"Unknown padding {padding!r}; known: {', '.join(PADDINGS)}.")


@_static
class ConvCache:
  """What ``conv2d_backward`` needs from ``conv2d_forward``."""
  cols: jax.Array                                 # (B*Ho*Wo, kh*kw*C), the forward's im2col.
  w: jax.Array                                    # (kh, kw, C, O).
  x_shape: tuple[int, int, int, int] = _meta()    # (B, H, W, C).
  stride: int = _meta()
  pads: tuple[tuple[int, int], tuple[int, int]] = _meta()  # (before, after) for H, then W.


def im2col(xp: jax.Array, kh: int, kw: int, ho: int, wo: int, stride: int) -> jax.Array:
  """(B, Hp, Wp, C) padded input -> (B, Ho, Wo, kh*kw*C): for each kernel offset (i, j) the
  strided view xp[:, i + s*p, j + s*q, :], stacked in the order of w.reshape(kh*kw*C, O)."""
  batch, _, _, channels = xp.shape
  span_h, span_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
  views = [lax.slice(xp, (0, i, j, 0), (batch, i + span_h, j + span_w, channels),
                     (1, stride, stride, 1))
           for i in range(kh) for j in range(kw)]
  return jnp.stack(views, axis=3).reshape(batch, ho, wo, kh * kw * channels)


def col2im(dcols: jax.Array, padded_shape: tuple[int, ...], kh: int, kw: int,
           stride: int) -> jax.Array:
  """The transpose of ``im2col``: (B, Ho, Wo, kh*kw*C) -> (B, Hp, Wp, C). Each offset's slab is
  put back where ``im2col`` read it (zeros between samples for a stride, ``lax.pad``'s interior
  padding) and the overlapping slabs are summed: a scatter-add written as dense pads."""
  batch, ho, wo, _ = dcols.shape
  _, hp, wp, channels = padded_shape
  span_h, span_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
  dcols = dcols.reshape(batch, ho, wo, kh * kw, channels)
  zero = jnp.zeros((), dcols.dtype)
  dxp = None
  for i in range(kh):
    for j in range(kw):
      slab = lax.pad(dcols[:, :, :, i * kw + j, :], zero,
                     ((0, 0, 0), (i, hp - i - span_h, stride - 1),
                      (j, wp - j - span_w, stride - 1), (0, 0, 0)))
      dxp = slab if dxp is None else dxp + slab
  return dxp


def conv2d_forward(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int = 1,
                   padding: str = "SAME", dtype=jnp.float32) -> tuple[jax.Array, ConvCache]:
  """y[n, p, q, o] = sum_{i, j, c} xp[n, s*p + i, s*q + j, c] w[i, j, c, o] + b[o]: a
  correlation of the zero-padded input xp with the kernel, as one matmul over im2col rows
  (``precision.dot``: bfloat16 operands summed in float32 when ``dtype`` is bfloat16)."""
  batch, height, width, channels = x.shape
  kh, kw, _, out_channels = w.shape
  ho, top, bottom = conv_geometry(height, kh, stride, padding)
  wo, left, right = conv_geometry(width, kw, stride, padding)
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  cols = im2col(xp, kh, kw, ho, wo, stride).reshape(batch * ho * wo, kh * kw * channels)
  y = dot(cols, w.reshape(kh * kw * channels, out_channels), dtype) + b
  return (y.reshape(batch, ho, wo, out_channels),
          ConvCache(cols, w, x.shape, stride, ((top, bottom), (left, right))))


def conv2d_backward(dy: jax.Array, cache: ConvCache,
                    dtype=jnp.float32) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(dJ/dx, dJ/dw, dJ/db) from dJ/dy.

  dw = cols^T dy (the correlation of the input with dy), db = dy summed over batch and positions,
  dx = col2im(dy w^T) (equivalently the full convolution of the stride-dilated dy with the
  flipped kernel), cropped back from the padded input to x.
  """
  batch, height, width, channels = cache.x_shape
  kh, kw, _, out_channels = cache.w.shape
  _, ho, wo, _ = dy.shape
  (top, bottom), (left, right) = cache.pads
  dy_rows = dy.reshape(batch * ho * wo, out_channels)
  w_mat = cache.w.reshape(kh * kw * channels, out_channels)
  dw = dot(cache.cols.T, dy_rows, dtype).reshape(cache.w.shape)
  db = jnp.sum(dy_rows, axis=0)
  dcols = dot(dy_rows, w_mat.T, dtype).reshape(batch, ho, wo, kh * kw * channels)
  padded = (batch, height + top + bottom, width + left + right, channels)
  dxp = col2im(dcols, padded, kh, kw, cache.stride)
  return dxp[:, top:top + height, left:left + width, :], dw, db


# --- ReLU -----------------------------------------------------------------------------------------


def relu_forward(z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """a = max(z, 0), and a itself as the cache (its sign is the derivative's)."""
  a = relu(z)
  return a, a


def relu_backward(da: jax.Array, a: jax.Array) -> jax.Array:
  """dJ/dz = dJ/da * [a > 0] (0 at z = 0, as ``scratch.relu_derivative``)."""
  return da * relu_derivative(a)


# --- Max-pooling, 2x2 windows, stride 2 -----------------------------------------------------------


@_static
class PoolCache:
  """What ``max_pool_backward`` needs from ``max_pool_forward``: the winners, not the values."""
  argmax: jax.Array                              # (B, Ho, Wo, C) int8: the winner, 0..3.
  x_shape: tuple[int, int, int, int] = _meta()   # (B, H, W, C).
  pads: tuple[tuple[int, int], tuple[int, int]] = _meta()  # SAME: -inf rows/cols added.


def _pool_geometry(size: int, padding: str) -> tuple[int, int, int]:
  """(output size, padding before, padding after) of a 2x2 stride-2 pool: VALID drops an odd last
  row, SAME pads it (with -inf, so padding never wins)."""
  if padding == "VALID":
    return size // 2, 0, 0
  if padding == "SAME":
    return conv_geometry(size, 2, 2, "SAME")
  raise ValueError(f"Unknown padding {padding!r}; known: {', '.join(PADDINGS)}.")


def max_pool_forward(x: jax.Array, *, padding: str = "VALID") -> tuple[jax.Array, PoolCache]:
  """y[n, p, q, c] = max over the window {(2p + u, 2q + v) : u, v in {0, 1}}, and which of the
  four (index 2u + v) won: the first in that order on a tie, so ties route to one element."""
  batch, height, width, channels = x.shape
  ho, top, bottom = _pool_geometry(height, padding)
  wo, left, right = _pool_geometry(width, padding)
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-jnp.inf)
  xp = xp[:, :2 * ho, :2 * wo, :]  # VALID: the odd last row/column belongs to no window.
  windows = xp.reshape(batch, ho, 2, wo, 2, channels).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(batch, ho, wo, channels, 4)  # Index 2u + v.
  argmax = jnp.argmax(windows, axis=-1).astype(jnp.int8)  # First maximum on ties.
  y = jnp.max(windows, axis=-1)
  return y, PoolCache(argmax, x.shape, ((top, bottom), (left, right)))


def max_pool_backward(dy: jax.Array, cache: PoolCache) -> jax.Array:
  """dJ/dx: each window's dJ/dy goes to the element that won the forward max, 0 to the others."""
  batch, height, width, channels = cache.x_shape
  _, ho, wo, _ = dy.shape
  (top, bottom), (left, right) = cache.pads
  routed = jnp.where(cache.argmax[..., None] == jnp.arange(4, dtype=jnp.int8), dy[..., None], 0)
  dxp = routed.reshape(batch, ho, wo, channels, 2, 2).transpose(0, 1, 4, 2, 5, 3)
  dxp = dxp.reshape(batch, 2 * ho, 2 * wo, channels)
  # Back to x's extent: VALID re-appends the dropped row/column (gradient 0), SAME crops the pad.
  full_h, full_w = height + top + bottom, width + left + right
  dxp = jnp.pad(dxp, ((0, 0), (0, full_h - 2 * ho), (0, full_w - 2 * wo), (0, 0)))
  return dxp[:, top:top + height, left:left + width, :]


# --- Dense ----------------------------------------------------------------------------------------


def dense_forward(x: jax.Array, w: jax.Array, b: jax.Array,
                  dtype=jnp.float32) -> tuple[jax.Array, tuple]:
  """z = x w + b, x (B, n_in); the cache is (x, w)."""
  return dot(x, w, dtype) + b, (x, w)


def dense_backward(dz: jax.Array, cache: tuple,
                   dtype=jnp.float32) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(dJ/dx, dJ/dw, dJ/db) = (dz w^T, x^T dz, 1^T dz), as in ``docs/backprop.md``."""
  x, w = cache
  return dot(dz, w.T, dtype), dot(x.T, dz, dtype), jnp.sum(dz, axis=0)


# --- The network ----------------------------------------------------------------------------------
# Every convolution is 3x3, stride 1, SAME, followed by ReLU and a 2x2 VALID max-pool; then the
# dense layers (ReLU between them, none after the last, whose outputs are the logits).

KERNEL = 3
CONV_STRIDE = 1
CONV_PADDING = "SAME"
POOL_PADDING = "VALID"


def init_params(rng: jax.Array, input_shape: tuple[int, int, int] = (28, 28, 1), *,
                widths: tuple[int, ...] = (32, 64), num_classes: int = 10, init: str = "he",
                hidden: tuple[int, ...] = ()) -> Params:
  """Convolutions of ``widths`` channels, dense layers of ``hidden`` units, then ``num_classes``.

  Weights ~ N(0, variance) with the variance of ``scratch.INIT_VARIANCE`` (a convolution's fan-in
  is kh*kw*C, its fan-out kh*kw*O); biases 0.
  """
  if init not in INIT_VARIANCE:
    raise ValueError(f"Unknown init {init!r}; known: {sorted(INIT_VARIANCE)}.")
  height, width, channels = input_shape
  for _ in widths:  # Each block: a size-preserving convolution, then a pool that halves.
    height = _pool_geometry(conv_geometry(height, KERNEL, CONV_STRIDE, CONV_PADDING)[0],
                            POOL_PADDING)[0]
    width = _pool_geometry(conv_geometry(width, KERNEL, CONV_STRIDE, CONV_PADDING)[0],
                           POOL_PADDING)[0]
  if height < 1 or width < 1:
    raise ValueError(f"Input {input_shape} is too small for {len(widths)} 2x2 pools.")
  keys = iter(jax.random.split(rng, len(widths) + len(hidden) + 1))
  params = []
  for out in widths:
    fan_in, fan_out = KERNEL * KERNEL * channels, KERNEL * KERNEL * out
    scale = math.sqrt(INIT_VARIANCE[init](fan_in, fan_out))
    params.append({"w": scale * jax.random.normal(next(keys), (KERNEL, KERNEL, channels, out)),
                   "b": jnp.zeros((out,))})
    channels = out
  sizes = (height * width * channels, *hidden, num_classes)
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    scale = math.sqrt(INIT_VARIANCE[init](fan_in, fan_out))
    params.append({"w": scale * jax.random.normal(next(keys), (fan_in, fan_out)),
                   "b": jnp.zeros((fan_out,))})
  return params


def forward(params: Params, x: jax.Array, dtype=jnp.float32) -> tuple[jax.Array, list[dict]]:
  """The logits (B, K) of x (B, H, W, C), and one cache per layer for ``backward``.

  In bfloat16 (``dtype``) every activation, and so every cache, is bfloat16 and every matmul
  takes bfloat16 operands; pre-activations and logits are float32 (``precision.dot``)."""
  narrow = lambda a: precision.cast(a, dtype)
  caches, h = [], narrow(x)
  dense = [l for l, layer in enumerate(params) if layer["w"].ndim == 2]
  for l, layer in enumerate(params):
    if layer["w"].ndim == 4:
      z, conv = conv2d_forward(h, layer["w"], layer["b"], stride=CONV_STRIDE,
                               padding=CONV_PADDING, dtype=dtype)
      a, act = relu_forward(narrow(z))
      h, pool = max_pool_forward(a, padding=POOL_PADDING)
      caches.append({"conv": conv, "relu": act, "pool": pool})
    else:
      z, cache = dense_forward(h.reshape(len(h), -1), layer["w"], layer["b"], dtype)
      if l == dense[-1]:
        caches.append({"dense": cache})
        return z, caches
      h, act = relu_forward(narrow(z))
      caches.append({"dense": cache, "relu": act})
  raise ValueError("The parameters end with a convolution; the last layer must be dense.")


def objective(params: Params, x: jax.Array, labels: jax.Array, *, l2: float,
              dtype=jnp.float32) -> jax.Array:
  """J = cross-entropy + (l2 / 2) sum ||w||^2: the function ``backward`` differentiates."""
  return (softmax_cross_entropy(forward(params, x, dtype)[0], labels)[0]
          + l2_penalty(params, l2))


def backward(params: Params, caches: list[dict], probs: jax.Array, labels: jax.Array, *,
             l2: float, dtype=jnp.float32) -> Params:
  """dJ/dw and dJ/db of every layer, from the caches of ``forward`` and the softmax ``probs``.
  The gradients flowing back are float32 in either precision (``scratch.backward``)."""
  batch, num_classes = probs.shape
  grad = (probs - one_hot(labels, num_classes, probs.dtype)) / batch  # dJ/dlogits, (B, K).
  grads = [None] * len(params)
  for l in range(len(params) - 1, -1, -1):
    cache, w = caches[l], params[l]["w"]
    if "relu" in cache and "dense" in cache:  # A hidden dense layer: back through its ReLU.
      grad = relu_backward(grad, cache["relu"])
    if "dense" in cache:
      grad, dw, db = dense_backward(grad, cache["dense"], dtype)
      if l > 0 and "pool" in caches[l - 1]:  # Un-flatten to the last pool's (B, Ho, Wo, C).
        grad = grad.reshape(caches[l - 1]["pool"].argmax.shape)
    else:
      grad = max_pool_backward(grad, cache["pool"])
      grad = relu_backward(grad, cache["relu"])
      grad, dw, db = conv2d_backward(grad, cache["conv"], dtype)  # Layer 0's dx is unused.
    grads[l] = {"w": dw + l2 * w, "b": db}
  return grads


def loss_and_grads(params: Params, x: jax.Array, labels: jax.Array, *, l2: float,
                   dtype=jnp.float32) -> tuple[jax.Array, dict[str, jax.Array], Params]:
  """J, batch metrics ({'xent', 'accuracy'}) and the hand-derived gradients, in one pass."""
  logits, caches = forward(params, x, dtype)
  xent, probs = softmax_cross_entropy(logits, labels)
  grads = backward(params, caches, probs, labels, l2=l2, dtype=dtype)
  accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
  return xent + l2_penalty(params, l2), {"xent": xent, "accuracy": accuracy}, grads


# --- The network as the trainer sees it -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScratchCNN:
  """The network above in the form ``playbook.tasks.scratch`` trains (as ``scratch.ScratchMLP``):
  parameters from a key and the input shape, logits, and the hand-derived loss and gradients."""
  widths: tuple[int, ...] = (32, 64)
  hidden: tuple[int, ...] = ()
  num_classes: int = 10
  init: str = "he"
  dtype: Any = jnp.float32  # The compute dtype; the parameters are float32 either way.

  def init_params(self, rng: jax.Array, input_shape: tuple[int, int, int]) -> Params:
    return init_params(rng, input_shape, widths=self.widths, num_classes=self.num_classes,
                       init=self.init, hidden=self.hidden)

  def logits(self, params: Params, x: jax.Array) -> jax.Array:
    return forward(params, x, self.dtype)[0]

  def loss_and_grads(self, params: Params, x: jax.Array, labels: jax.Array, *, l2: float):
    return loss_and_grads(params, x, labels, l2=l2, dtype=self.dtype)
