"""Image augmentation on the device: jitted, driven by the step's rng, batched over examples."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_translate(rng: jax.Array, images: jax.Array, max_shift: int,
                     pad_mode: str = "constant") -> jax.Array:
  """Shifts each NHWC image by up to ``max_shift`` pixels in x and y: a random crop of the image
  padded by ``max_shift`` with zeros (``pad_mode='constant'``) or its mirror (``'reflect'``, as
  airbench does for CIFAR-10).

  Implemented as pad + per-example dynamic slice, which XLA turns into one gather.
  """
  if max_shift == 0:
    return images
  if pad_mode not in ("constant", "reflect"):
    raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}.")
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)),
                   mode=pad_mode)
  offsets = jax.random.randint(rng, (n, 2), 0, 2 * max_shift + 1)
  crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def random_flip_lr(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each NHWC image left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def image_augmenter(*, max_shift: int = 0, flip_lr: bool = False, pad_mode: str = "constant"):
  """An ``augment_fn(rng, batch) -> batch`` for the trainer, or None when nothing is on."""
  if max_shift == 0 and not flip_lr:
    return None

  def augment_fn(rng, batch):
    shift_rng, flip_rng = jax.random.split(rng)
    images = random_translate(shift_rng, batch["image"], max_shift, pad_mode)
    if flip_lr:
      images = random_flip_lr(flip_rng, images)
    return dict(batch, image=images)

  return augment_fn
