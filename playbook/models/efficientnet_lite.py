"""EfficientNet-Lite: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, in the Lite form Google released for mobile and edge accelerators
(tensorflow/tpu, models/official/efficientnet/lite, 2020).

EfficientNet-B0's stack of mobile inverted bottlenecks (MBConv, MobileNetV2), with the Lite
changes: no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 channels) and head
(1280 channels, and the first and last stages' repeats) kept fixed when the width and depth are
scaled. Lite0..4 differ only in (width, depth, resolution, dropout) from ``VARIANTS``.

Convolutions pad like TensorFlow's SAME (lax's "SAME" is the same rule), BatchNorm uses
TensorFlow's momentum 0.99 and epsilon 1e-3, so the converted official weights
(``efficientnet-lite0-57934424.pth``) import with a name mapping only
(``playbook.weights.efficientnet``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from playbook.models import precision


class Stage(NamedTuple):
  repeats: int
  kernel: int
  stride: int
  expand: int
  filters_in: int
  filters_out: int


# EfficientNet-B0's stages (Table 1 of the paper), the Lite base.
STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
# name: (width multiplier, depth multiplier, resolution, dropout before the classifier).
VARIANTS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}
STEM, HEAD = 32, 1280
BN = dict(momentum=0.99, epsilon=1e-3)
DROP_CONNECT = 0.2

# Input normalisation documented by efficientnet-lite-pytorch (torchvision's ImageNet statistics
# on 0..1 pixels). The official TF Lite models used (x - 127) / 128 instead: "tf" selects that.
MEAN_RGB = {"imagenet": (0.485 * 255, 0.456 * 255, 0.406 * 255), "tf": (127.0, 127.0, 127.0)}
STD_RGB = {"imagenet": (0.229 * 255, 0.224 * 255, 0.225 * 255), "tf": (128.0, 128.0, 128.0)}


def preprocess(rgb_0_255: jnp.ndarray, normalization: str = "imagenet") -> jnp.ndarray:
  """RGB in 0..255 (NHWC, resized to the variant's resolution) -> the network input."""
  mean = jnp.asarray(MEAN_RGB[normalization], jnp.float32)
  return (jnp.asarray(rgb_0_255, jnp.float32) - mean) / jnp.asarray(STD_RGB[normalization])


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Scales a channel count by ``width``, rounded to a multiple of 8, never down by > 10 %."""
  scaled = filters * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stages(variant: str) -> list[Stage]:
  """The stages of a variant; the first and last keep their repeats and the stem width (Lite)."""
  width, depth, _, _ = VARIANTS[variant]
  out = []
  for i, stage in enumerate(STAGES):
    fixed = i in (0, len(STAGES) - 1)
    out.append(stage._replace(
        repeats=stage.repeats if fixed else int(math.ceil(depth * stage.repeats)),
        filters_in=STEM if i == 0 else round_filters(stage.filters_in, width),
        filters_out=round_filters(stage.filters_out, width)))
  return out


def relu6(x):
  return jnp.minimum(nn.relu(x), 6.0)


class DepthwiseConv(nn.Module):
  """A k x k depthwise convolution (TF SAME padding, no bias) as a sum of k*k shifted products.

  Same result as ``nn.Conv(c, (k, k), feature_group_count=c)`` (same kernel, shape (k, k, 1, c)),
  but XLA's grouped convolution is slow on CPU: on this project's 2-core machine the shifted sum
  ran 5-40x faster per layer (e.g. 56x56x144, 3x3: 98 ms against 678 ms for a batch of 16).
  ``grouped=True`` computes it as the grouped convolution itself: what an export should hold,
  since TFLite and ONNX have depthwise kernels, and run the k*k slices and adds slowly.
  """
  kernel_size: int
  stride: int = 1
  grouped: bool = False
  dtype: Any = jnp.float32  # Compute dtype (precision.py): input and kernel cast to it.

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    x = precision.cast(x, self.dtype)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, x.shape[-1]))
    kernel = precision.cast(kernel, self.dtype)
    if self.grouped:
      return jax.lax.conv_general_dilated(
          x, kernel, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
          feature_group_count=x.shape[-1])
    _, height, width, _ = x.shape
    out_h, out_w = -(-height // s), -(-width // s)
    pad_h, pad_w = max((out_h - 1) * s + k - height, 0), max((out_w - 1) * s + k - width, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                    (0, 0)))
    out = 0.0
    for i in range(k):
      for j in range(k):
        # lax slices, not x[:, i:...:s, j:...:s]: with an exported model's symbolic batch size,
        # strided indexing becomes a gather that TFLite cannot hold (the same numbers).
        window = jax.lax.slice_in_dim(x, i, i + (out_h - 1) * s + 1, s, axis=1)
        window = jax.lax.slice_in_dim(window, j, j + (out_w - 1) * s + 1, s, axis=2)
        out = out + window * kernel[i, j, 0]
    return out


class MBConv(nn.Module):
  """Mobile inverted bottleneck: 1x1 expand, kxk depthwise, 1x1 linear projection, residual."""
  stage: Stage
  stride: int
  filters_in: int
  drop_connect: float
  frozen_bn: bool
  grouped_depthwise: bool = False
  dtype: Any = jnp.float32  # Compute dtype (precision.py); BatchNorm's statistics float32.

  @nn.compact
  def __call__(self, inputs, train: bool):
    dtype = precision.narrowed(self.dtype)
    bn = lambda name: nn.BatchNorm(use_running_average=not train or self.frozen_bn, name=name,
                                   dtype=dtype, **BN)
    x = inputs
    hidden = self.filters_in * self.stage.expand
    if self.stage.expand != 1:
      x = relu6(bn("bn0")(nn.Conv(hidden, (1, 1), use_bias=False, dtype=dtype,
                                  name="expand_conv")(x)))
    k = self.stage.kernel
    x = DepthwiseConv(k, self.stride, self.grouped_depthwise, dtype=dtype,
                      name="depthwise_conv")(x)
    x = relu6(bn("bn1")(x))
    x = bn("bn2")(nn.Conv(self.stage.filters_out, (1, 1), use_bias=False, dtype=dtype,
                          name="project_conv")(x))
    if self.stride == 1 and self.filters_in == self.stage.filters_out:
      if train and self.drop_connect > 0:  # Stochastic depth: drop the whole residual branch.
        keep = 1.0 - self.drop_connect
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0], 1, 1, 1))
        x = x * mask / keep
      x = x + inputs
    return x


class EfficientNetLite(nn.Module):
  variant: str = "lite0"
  num_classes: int = 1000
  include_top: bool = True  # False: the pooled 1280-wide features.
  frozen_bn: bool = False   # BatchNorm always uses (and keeps) its running statistics.
  grouped_depthwise: bool = False  # Depthwise as grouped convolutions: for export (DepthwiseConv).
  # Compute dtype (precision.py): the parameters and BatchNorm's statistics stay float32, the
  # output (logits or pooled features) comes back in float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.variant not in VARIANTS:
      raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}.")
    dtype = precision.narrowed(self.dtype)
    use_running = not train or self.frozen_bn
    x = nn.Conv(STEM, (3, 3), strides=2, padding="SAME", use_bias=False, dtype=dtype,
                name="conv_stem")(x)
    x = relu6(nn.BatchNorm(use_running_average=use_running, dtype=dtype, name="bn0", **BN)(x))

    plan = stages(self.variant)
    total = sum(s.repeats for s in plan)
    index = 0
    for stage in plan:
      for r in range(stage.repeats):
        x = MBConv(stage, stride=stage.stride if r == 0 else 1,
                   filters_in=stage.filters_in if r == 0 else stage.filters_out,
                   drop_connect=DROP_CONNECT * index / total, frozen_bn=self.frozen_bn,
                   grouped_depthwise=self.grouped_depthwise, dtype=dtype,
                   name=f"blocks_{index}")(x, train)
        index += 1

    x = nn.Conv(HEAD, (1, 1), use_bias=False, dtype=dtype, name="conv_head")(x)
    x = relu6(nn.BatchNorm(use_running_average=use_running, dtype=dtype, name="bn1", **BN)(x))
    x = x.mean(axis=(1, 2))
    if not self.include_top:
      return precision.to_float32(x, dtype)
    x = nn.Dropout(VARIANTS[self.variant][3], deterministic=not train)(x)
    fc = nn.Dense(self.num_classes, dtype=dtype, dot_general=precision.dot_general(dtype),
                  name="fc")
    return precision.to_float32(fc(x), dtype)
