"""Image augmentation on the device: jitted, driven by the step's rng, batched over examples."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_translate(rng: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
  """Shifts each NHWC image by up to ``max_shift`` pixels in x and y, filling with zeros.

  Implemented as pad + per-example dynamic slice (a random crop of the padded image), which XLA
  turns into one gather.
  """
  if max_shift == 0:
    return images
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(rng, (n, 2), 0, 2 * max_shift + 1)
  crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def random_flip_lr(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each NHWC image left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def image_augmenter(*, max_shift: int = 0, flip_lr: bool = False):
  """An ``augment_fn(rng, batch) -> batch`` for the trainer, or None when nothing is on."""
  if max_shift == 0 and not flip_lr:
    return None

  def augment_fn(rng, batch):
    shift_rng, flip_rng = jax.random.split(rng)
    images = random_translate(shift_rng, batch["image"], max_shift)
    if flip_lr:
      images = random_flip_lr(flip_rng, images)
    return dict(batch, image=images)

  return augment_fn
