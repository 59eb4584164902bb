"""The losses of neural style transfer (Gatys, Ecker, Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016), on named activations of a frozen backbone.

An image x is scored against a content image p and a style image a through the features F_l(.) of
a fixed network (VGG, ``playbook/models/vgg.py``):

  content  L_c = sum_l w_l mean_ij (F_l(x) - F_l(p))^2                      (Gatys eq. 1)
  style    L_s = sum_l w_l mean_cd (G_l(x) - G_l(a))^2,  G_l = F_l^T F_l / (H W C)   (eqs. 3-5)
  smooth   L_tv = mean (x[i+1,j] - x[i,j])^2 + mean (x[i,j+1] - x[i,j])^2
  total    alpha L_c + beta L_s + gamma L_tv

The means (instead of the paper's sums) and the Gram matrix divided by its number of terms follow
jcjohnson/neural-style: the weights then mean the same thing at every image size, which the
coarse-to-fine schedule needs. Per layer, Gatys' E_l = 1/(4 N^2 M^2) sum (G - A)^2 is our
mean (G - A)^2 times C^2/4. Everything here is a pure function; the backbone's parameters are an
argument and are never differentiated (only the image is optimised, ``stylize/optimize.py``).

In mixed precision (``config.precision='bfloat16'``) the backbone's activations arrive in
bfloat16; the losses take them to float32 first, so the Gram matrices (sums over every pixel)
and the squared differences are float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp


def float32(x: jax.Array) -> jax.Array:
  """``x`` in float32 if it is narrower (bfloat16 activations); as it is otherwise."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def gram_matrix(features: jax.Array) -> jax.Array:
  """(N, H, W, C) activations -> (N, C, C) channel correlations, divided by H*W*C (float32)."""
  n, h, w, c = features.shape
  flat = float32(features).reshape(n, h * w, c)
  return jnp.einsum("npc,npd->ncd", flat, flat) / (h * w * c)


def content_loss(features: Mapping[str, jax.Array], targets: Mapping[str, jax.Array],
                 layer_weights: Mapping[str, float]) -> jax.Array:
  """Weighted mean squared difference of the activations at the content layers."""
  return sum(w * jnp.mean(jnp.square(float32(features[name]) - float32(targets[name])))
             for name, w in layer_weights.items())


def style_loss(features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
               layer_weights: Mapping[str, float]) -> jax.Array:
  """Weighted mean squared difference of the Gram matrices at the style layers."""
  return sum(w * jnp.mean(jnp.square(gram_matrix(features[name]) - target_grams[name]))
             for name, w in layer_weights.items())


def total_variation_loss(image: jax.Array) -> jax.Array:
  """Mean squared difference between vertical and horizontal neighbours of (N, H, W, C) pixels."""
  dy = image[:, 1:, :, :] - image[:, :-1, :, :]
  dx = image[:, :, 1:, :] - image[:, :, :-1, :]
  return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


@dataclasses.dataclass(frozen=True, eq=False)  # Hashed by identity (jit caches on it).
class StyleObjective:
  """The weighted total loss of an image, as a function of (backbone params, image, targets).

  ``backbone`` is a module whose ``apply({'params': p}, x, outputs=names)`` returns a dict
  name -> activation (``playbook.models.vgg.VGG``); images are in the backbone's own input space
  (``vgg.preprocess``), shape (1, H, W, 3).
  """
  backbone: Any
  content_layers: Mapping[str, float]
  style_layers: Mapping[str, float]
  content_weight: float
  style_weight: float
  tv_weight: float

  def with_weights(self, weights: Mapping[str, Any] | None) -> "StyleObjective":
    """The same objective with some of its three weights replaced, e.g. by a sweep's per-image
    traced numbers ({'style_weight': w}); itself when ``weights`` is None or empty."""
    return dataclasses.replace(self, **weights) if weights else self

  @property
  def layers(self) -> tuple[str, ...]:
    return tuple(sorted(set(self.content_layers) | set(self.style_layers)))

  def features(self, params, image: jax.Array) -> dict[str, jax.Array]:
    return self.backbone.apply({"params": params}, image, outputs=self.layers)

  def targets(self, params, content_image: jax.Array, style_image: jax.Array) -> dict:
    """What the losses compare with: the content's activations and the style's Gram matrices.

    The two images may differ in size (the Gram matrices are C x C whatever the size).
    """
    content = self.backbone.apply({"params": params}, content_image,
                                  outputs=tuple(self.content_layers))
    style = self.backbone.apply({"params": params}, style_image, outputs=tuple(self.style_layers))
    return {"content": {k: content[k] for k in self.content_layers},
            "style": {k: gram_matrix(style[k]) for k in self.style_layers}}

  def parts(self, params, image: jax.Array, targets: dict) -> dict[str, jax.Array]:
    """Each weighted term and their sum ('total')."""
    feats = self.features(params, image)
    parts = {"content": self.content_weight * content_loss(feats, targets["content"],
                                                           self.content_layers),
             "style": self.style_weight * style_loss(feats, targets["style"], self.style_layers),
             "tv": self.tv_weight * total_variation_loss(image)}
    parts["total"] = parts["content"] + parts["style"] + parts["tv"]
    return parts

  def __call__(self, params, image: jax.Array, targets: dict) -> jax.Array:
    return self.parts(params, image, targets)["total"]
