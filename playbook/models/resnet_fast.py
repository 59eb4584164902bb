"""A fast CIFAR-10 net after airbench94 (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a
single GPU", arXiv:2404.00498; github.com/KellerJordan/cifar10-airbench).

    whiten: conv2x2 (valid), 3 -> 24 channels, kernel fixed to the data's 2x2 patch-covariance
            eigenvectors scaled by 1/sqrt(eigenvalue) (+ their negatives), bias trained; GELU
    3 x ConvGroup(width):  conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU
            widths 64, 256, 256
    head:   global max pool -> dense 10 (no bias) -> x 1/9

BatchNorm has no trained scale (as airbench: its weight is frozen at 1), a fast-moving running
average and 64x the learning rate on its biases (``optim.norm_bias_lr_scale``); the convolutions
start from airbench's identity ("dirac") initialisation. Training also uses label smoothing, a
lookahead of the weights (``optim.lookahead``) and, at test time, the mean of the logits of the
image and its mirror image (``tta_flip``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from playbook.models import precision
from playbook.models.fast_conv import Conv, max_pool_2x2


def whitening_kernel(images: np.ndarray, patch_size: int = 2, eps: float = 5e-4) -> np.ndarray:
  """A (p, p, c, 2*p*p*c) kernel that whitens the p x p patches of float NHWC ``images``.

  The eigenvectors of the patches' covariance, each divided by sqrt(eigenvalue + eps), then the
  same with the sign flipped (so a following ReLU-like GELU keeps both halves).
  """
  x = np.asarray(images, np.float64)
  n, h, w, c = x.shape
  p = patch_size
  patches = np.stack([x[:, i:h - p + 1 + i, j:w - p + 1 + j, :] for i in range(p)
                      for j in range(p)], axis=3)  # (n, h', w', p*p, c)
  patches = patches.reshape(-1, p * p * c)
  patches = patches - patches.mean(0)
  cov = patches.T @ patches / len(patches)
  eigenvalues, eigenvectors = np.linalg.eigh(cov)
  filters = eigenvectors.T[::-1] / np.sqrt(eigenvalues[::-1, None] + eps)  # (p*p*c, p*p*c)
  filters = np.concatenate([filters, -filters])                            # (2*p*p*c, p*p*c)
  return filters.reshape(-1, p, p, c).transpose(1, 2, 3, 0).astype(np.float32)  # HWIO


# PyTorch's default initialisation, U(+-1/sqrt(fan_in)), which airbench's learning rates assume:
# the weights before each BatchNorm are scale-free, so their scale sets the effective step size.
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def dirac_conv_init(key, shape, dtype=jnp.float32):
  """airbench's conv init: PyTorch's default, then the first min(in, out) filters set to the
  identity (``torch.nn.init.dirac_``), so each conv starts close to passing its input through."""
  kh, kw, cin, cout = shape
  n = min(cin, cout)
  identity = jnp.zeros((kh, kw, cin, n), dtype).at[kh // 2, kw // 2, jnp.arange(n),
                                                   jnp.arange(n)].set(1)
  return torch_default_init(key, shape, dtype).at[..., :n].set(identity)


class ConvGroup(nn.Module):
  width: int
  bn_momentum: float
  fast_conv: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    dtype = precision.narrowed(self.dtype)  # BatchNorm's statistics stay float32 (flax's own).
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                              epsilon=1e-12, use_scale=False, dtype=dtype)
    conv = lambda: Conv(self.width, use_bias=False, fast=self.fast_conv,
                        kernel_init=dirac_conv_init, dtype=dtype)
    x = conv()(x)
    x = max_pool_2x2(x, fast=self.fast_conv)
    x = nn.gelu(bn()(x))
    x = conv()(x)
    return nn.gelu(bn()(x))


class FastResNet(nn.Module):
  num_classes: int = 10
  widths: tuple[int, ...] = (64, 256, 256)
  whiten_width: int = 24        # 2 * (2*2*3): the eigenbasis and its negative.
  bn_momentum: float = 0.4      # flax convention: running = 0.4 * running + 0.6 * batch.
  logit_scale: float = 1 / 9
  tta_flip: bool = True         # Eval mode: mean logits of the image and its mirror.
  fast_conv: bool = True
  dtype: Any = jnp.float32  # Compute dtype (precision.py); the parameters stay float32.

  def features(self, x, train: bool):
    dtype = precision.narrowed(self.dtype)
    x = Conv(self.whiten_width, kernel_size=2, padding="VALID", frozen_kernel=True,
             fast=self.fast_conv, dtype=dtype, name="whiten")(x)
    x = nn.gelu(x)
    for width in self.widths:
      x = ConvGroup(width, self.bn_momentum, self.fast_conv, dtype)(x, train=train)
    x = jnp.max(x, axis=(1, 2))
    head = nn.Dense(self.num_classes, use_bias=False, kernel_init=torch_default_init,
                    dtype=dtype, dot_general=precision.dot_general(dtype), name="head")
    return precision.to_float32(head(x), dtype) * self.logit_scale

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    if train or not self.tta_flip:
      return self.features(x, train)
    # The images then their mirrors as one batch, split again after. Written as stack + reshape
    # rather than concatenate + slice, and jnp.flip rather than x[:, :, ::-1] (the same numbers),
    # so that an export keeps its batch size symbolic: jax2onnx 0.17 loses a concatenation's
    # symbolic batch size (B + B comes out as B), and with a symbolic batch, indexing becomes a
    # gather that TFLite cannot hold.
    both = self.features(jnp.stack([x, jnp.flip(x, axis=2)]).reshape(-1, *x.shape[1:]), train)
    image, mirror = both.reshape(2, -1, both.shape[-1])
    return 0.5 * (image + mirror)


def with_whitening(params, images: np.ndarray):
  """``params`` with the whitening layer's kernel set from float NHWC ``images``."""
  kernel = params["whiten"]["kernel"]
  new = whitening_kernel(images, kernel.shape[0])
  if new.shape != kernel.shape:
    raise ValueError(f"whiten_width must be 2*p*p*c = {new.shape[-1]}, got {kernel.shape[-1]}.")
  return dict(params, whiten=dict(params["whiten"], kernel=jnp.asarray(new)))
