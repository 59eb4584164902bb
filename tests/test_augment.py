"""On-device augmentation: translation moves content, flips mirror, both follow the rng."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from playbook.data import augment


def test_random_translate_moves_a_pixel_by_at_most_max_shift():
  image = np.zeros((64, 9, 9, 1), np.float32)
  image[:, 4, 4, 0] = 1.0
  moved = np.asarray(augment.random_translate(jax.random.PRNGKey(0), jnp.asarray(image), 2))
  assert moved.shape == image.shape
  assert np.all(moved.sum(axis=(1, 2, 3)) == 1.0)  # A 2-px shift keeps a centre pixel inside.
  rows, cols = np.nonzero(moved[..., 0])[1:]
  assert set(rows.tolist()) <= set(range(2, 7)) and set(cols.tolist()) <= set(range(2, 7))
  assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # Offsets differ per example.


def test_random_flip_mirrors_about_half_the_batch():
  images = jnp.tile(jnp.arange(5.0)[None, None, :, None], (200, 1, 1, 1))
  flipped = np.asarray(augment.random_flip_lr(jax.random.PRNGKey(1), images))
  mirrored = np.all(flipped[:, 0, :, 0] == np.arange(5.0)[::-1], axis=1)
  unchanged = np.all(flipped[:, 0, :, 0] == np.arange(5.0), axis=1)
  assert np.all(mirrored | unchanged) and 70 < mirrored.sum() < 130


def test_augmenter_is_a_pure_function_of_its_rng():
  augment_fn = augment.image_augmenter(max_shift=1, flip_lr=True)
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(2), (8, 6, 6, 1)), "label": jnp.arange(8)}
  a = augment_fn(jax.random.PRNGKey(3), batch)
  b = augment_fn(jax.random.PRNGKey(3), batch)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], batch["label"])
  assert augment.image_augmenter(max_shift=0, flip_lr=False) is None
