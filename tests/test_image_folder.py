"""Host image decoding, the bounded-prefetch batches and the checksummed image-folder reader."""

from __future__ import annotations

import numpy as np
import pytest

from image_folders import make_cats_dogs
from playbook.data.image_folder import image_folder_split
from playbook.data.images import image_batches, read_rgb, resize_center_crop, resize_whole
from playbook.data.paths import DataError


def test_folder_lists_classes_in_order_with_labels(tmp_path):
  make_cats_dogs(tmp_path)
  split = image_folder_split("train", tmp_path)
  assert split.class_names == ["cats", "dogs"]
  assert [p.name for p in split.paths[:3]] == ["cat.1.jpg", "cat.2.jpg", "cat.10.jpg"]
  np.testing.assert_array_equal(split.labels, [0, 0, 0, 1, 1, 1])


def test_changed_or_extra_file_is_refused(tmp_path):
  folder = make_cats_dogs(tmp_path)
  (folder / "train" / "dogs" / "dog.2.jpg").write_bytes(b"changed")
  with pytest.raises(DataError, match="dog.2.jpg is corrupt"):
    image_folder_split("train", tmp_path)
  (folder / "train" / "dogs" / "dog.99.jpg").write_bytes(b"")
  with pytest.raises(DataError, match="unexpected.*dog.99.jpg"):
    image_folder_split("train", tmp_path)


def test_unreadable_image_names_the_file(tmp_path):
  (tmp_path / "x.jpg").write_bytes(b"not an image")
  with pytest.raises(DataError, match="x.jpg cannot be decoded"):
    read_rgb(tmp_path / "x.jpg")


def test_resize_center_crop_keeps_the_middle():
  rgb = np.zeros((40, 80, 3), np.uint8)
  rgb[:, 30:50] = 255  # A bright band in the middle survives the crop of the sides.
  out = resize_center_crop(rgb, 20)
  assert out.shape == (20, 20, 3) and out[:, 10].min() > 200 and out[:, 0].max() < 50


def test_batches_keep_order_and_size(tmp_path):
  folder = make_cats_dogs(tmp_path)
  split = image_folder_split("train", tmp_path)
  batches = list(image_batches(split.paths, 8, batch_size=4, prefetch=1))
  assert [b.shape for b in batches] == [(4, 8, 8, 3), (2, 8, 8, 3)]
  np.testing.assert_array_equal(batches[1][0], resize_center_crop(read_rgb(split.paths[4]), 8))


def test_real_cats_and_dogs_split_sizes(real_cats_dogs_dir):
  split = image_folder_split("validation", real_cats_dogs_dir.parent)
  assert len(split) == 1000 and np.bincount(split.labels).tolist() == [500, 500]


def test_squash_resize_keeps_the_whole_image():
  rgb = np.zeros((40, 80, 3), np.uint8)
  rgb[:, :8] = 255  # A bright band at the far left: cropped away by centre crop, kept here.
  out = resize_whole(rgb, 20)
  assert out.shape == (20, 20, 3) and out[:, 0].min() > 200
  assert resize_center_crop(rgb, 20)[:, 0].max() < 50
