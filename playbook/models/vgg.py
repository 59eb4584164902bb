"""VGG16 and VGG19: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (configurations D and E of Table 1).

Five blocks of 3x3 convolutions (stride 1, SAME, ReLU), each followed by a 2x2 max pool; then,
with the top, two 4096-wide fully connected layers and the classifier. Layer names are Keras's
(``block1_conv1`` ... ``block5_pool``, ``fc1``, ``fc2``, ``predictions``), so the Keras weights
import by name and the named activations are the ones style-transfer papers refer to.

``apply(variables, images, outputs=("block1_conv1", "block4_conv2"))`` returns a dict of those
activations (post-ReLU for convolutions) and stops after the deepest one: nothing past it is
computed. ``outputs=None`` returns the final output: the conv base (optionally pooled to a vector)
or, with the top, the logits (no softmax).

The ImageNet weights are the original Caffe ones: images go in as ``preprocess(rgb_0_255)``.

``conv_impl="winograd"`` computes the 3x3 convolutions (and their input gradients) by Winograd
F(2x2 / 4x4, 3x3) (``winograd.py``): the same parameters and, up to float32 rounding, the same
activations; for style transfer's CPU speed. The default ``"xla"`` is ``nn.Conv``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from playbook.models import precision, winograd

# Convolutions per block: configuration D (VGG16) and E (VGG19).
BLOCK_DEPTHS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
TOP_LAYERS = ("fc1", "fc2", "predictions")

# Caffe preprocessing: BGR channel order, ImageNet mean subtracted, no scaling (0..255).
MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(rgb_0_255: jnp.ndarray) -> jnp.ndarray:
  """RGB in 0..255 (NHWC) -> the BGR, mean-subtracted input the ImageNet weights expect."""
  # jnp.flip, not [..., ::-1]: with an exported model's symbolic batch size, indexing becomes a
  # gather that TFLite cannot hold (the same numbers).
  return jnp.flip(jnp.asarray(rgb_0_255, jnp.float32), -1) - jnp.asarray(MEAN_BGR, jnp.float32)


def deprocess(bgr_centered: jnp.ndarray) -> jnp.ndarray:
  """The exact inverse of ``preprocess``: back to RGB in 0..255 (not clipped)."""
  return (bgr_centered + jnp.asarray(MEAN_BGR, jnp.float32))[..., ::-1]


def conv_layer_names(depth: int) -> list[str]:
  """['block1_conv1', 'block1_conv2', 'block2_conv1', ...]: the weighted conv layers, in order."""
  return [f"block{b + 1}_conv{i + 1}" for b, n in enumerate(_block_depths(depth)) for i in range(n)]


def layer_names(depth: int, include_top: bool = False) -> list[str]:
  """Every layer whose activation ``outputs=`` can ask for, in order (pools included)."""
  names = []
  for b, n in enumerate(_block_depths(depth)):
    names += [f"block{b + 1}_conv{i + 1}" for i in range(n)] + [f"block{b + 1}_pool"]
  return names + (list(TOP_LAYERS) if include_top else [])


def _block_depths(depth: int) -> tuple[int, ...]:
  if depth not in BLOCK_DEPTHS:
    raise ValueError(f"VGG depth must be one of {sorted(BLOCK_DEPTHS)}, got {depth}.")
  return BLOCK_DEPTHS[depth]


class VGG(nn.Module):
  depth: int = 16
  include_top: bool = False
  num_classes: int = 1000
  # Without the top: None (feature map), "avg", "max" or "avgmax" (both, concatenated).
  pooling: str | None = None
  conv_impl: str = "xla"  # "xla" (nn.Conv) or "winograd" (winograd.Conv, same parameters).
  # Compute dtype (precision.py): the parameters stay float32; the activations ``outputs=``
  # returns are in this dtype, the final output (features or logits) in float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, outputs: Sequence[str] | None = None, train: bool = False):
    del train  # VGG has no dropout or BatchNorm here; accepted so every backbone is called alike.
    if self.pooling not in (None, "avg", "max", "avgmax"):
      raise ValueError(f"pooling must be None, 'avg', 'max' or 'avgmax', got {self.pooling!r}.")
    if self.conv_impl not in ("xla", "winograd"):
      raise ValueError(f"conv_impl must be 'xla' or 'winograd', got {self.conv_impl!r}.")
    wanted = self._check_outputs(outputs)
    found = {}

    def keep(name, value) -> bool:
      """Records ``value`` if asked for; True once everything asked for is there."""
      if wanted is not None and name in wanted:
        found[name] = value
      return wanted is not None and len(found) == len(wanted)

    for b, (convs, width) in enumerate(zip(_block_depths(self.depth), BLOCK_WIDTHS)):
      for i in range(convs):
        name = f"block{b + 1}_conv{i + 1}"
        x = nn.relu(self._conv(width, name)(x))
        if keep(name, x):
          return found
      x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))  # Keywords: jax2onnx needs them.
      if keep(f"block{b + 1}_pool", x):
        return found

    if self.include_top:
      x = x.reshape(x.shape[0], -1)  # Row-major NHWC flatten, as Keras's Flatten.
      dtype = precision.narrowed(self.dtype)
      dot = precision.dot_general(dtype)
      x = nn.relu(nn.Dense(4096, dtype=dtype, dot_general=dot, name="fc1")(x))
      if keep("fc1", x):
        return found
      x = nn.relu(nn.Dense(4096, dtype=dtype, dot_general=dot, name="fc2")(x))
      if keep("fc2", x):
        return found
      x = nn.Dense(self.num_classes, dtype=dtype, dot_general=dot, name="predictions")(x)
      if keep("predictions", x):
        return found
    elif self.pooling == "avg":
      x = x.mean(axis=(1, 2))
    elif self.pooling == "max":
      x = x.max(axis=(1, 2))
    elif self.pooling == "avgmax":
      x = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    return precision.to_float32(x, self.dtype)

  def _conv(self, width: int, name: str) -> nn.Module:
    dtype = precision.narrowed(self.dtype)
    if self.conv_impl == "winograd":
      return winograd.Conv(width, dtype=dtype, name=name)
    return nn.Conv(width, (3, 3), padding="SAME", dtype=dtype, name=name)

  def _check_outputs(self, outputs) -> set[str] | None:
    if outputs is None:
      return None
    if isinstance(outputs, str):
      outputs = (outputs,)
    known = layer_names(self.depth, self.include_top)
    unknown = [o for o in outputs if o not in known]
    if unknown or not outputs:
      raise ValueError(f"Unknown VGG{self.depth} layer(s) {unknown or outputs} in outputs=; "
                       f"choose from {known}.")
    return set(outputs)
