"""The IDX readers: real files verify, broken ones fail with a message that says what to do."""

from __future__ import annotations

import gzip
import shutil
import struct
import sys

import ml_collections
import numpy as np
import pytest

from conftest import write_idx_gz
from playbook.data import DataError, mnist
from playbook.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_gz
from playbook.data.paths import verified_file
from playbook.data.splits import Split, split_off_validation


def test_read_idx_gz_round_trips_images(tmp_path):
  images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
  path = write_idx_gz(tmp_path / "x.gz", images, IMAGES_MAGIC)
  np.testing.assert_array_equal(
      read_idx_gz(path, magic=IMAGES_MAGIC, shape_tail=(28, 28), source="s"), images)


def test_read_idx_gz_refuses_labels_file_in_images_place(tmp_path):
  path = write_idx_gz(tmp_path / "y.gz", np.zeros(5, np.uint8), LABELS_MAGIC)
  with pytest.raises(DataError, match=r"is a labels file, where an images file belongs"):
    read_idx_gz(path, magic=IMAGES_MAGIC, shape_tail=(28, 28), source="s")


def test_read_idx_gz_refuses_short_payload(tmp_path):
  header = struct.pack(">II", LABELS_MAGIC, 5)  # The header promises 5 labels...
  (tmp_path / "short.gz").write_bytes(gzip.compress(header + bytes(3)))  # ...3 are there.
  with pytest.raises(DataError, match="holds 3 values, its header promises 5"):
    read_idx_gz(tmp_path / "short.gz", magic=LABELS_MAGIC, shape_tail=(), source="s")


def test_read_idx_gz_refuses_non_gzip(tmp_path):
  (tmp_path / "junk.gz").write_bytes(b"not a gzip stream at all")
  with pytest.raises(DataError, match="junk.gz is not a readable gzip file"):
    read_idx_gz(tmp_path / "junk.gz", magic=LABELS_MAGIC, shape_tail=(), source="s")


def test_verified_file_names_missing_file_and_source(tmp_path):
  with pytest.raises(DataError, match=r"Missing data file .*nope\.gz\. Put the original file "
                     r"there; get it from X"):
    verified_file(tmp_path / "nope.gz", size=1, sha256="0", source="get it from X")


def test_verified_file_reports_truncation(tmp_path):
  (tmp_path / "f").write_bytes(b"abc")
  with pytest.raises(DataError, match="is truncated: 3 bytes, expected 10"):
    verified_file(tmp_path / "f", size=10, sha256="0", source="s")


def test_verified_file_reports_corruption(tmp_path):
  (tmp_path / "f").write_bytes(b"abc")
  with pytest.raises(DataError, match="is corrupt: sha256 ba7816bf"):
    verified_file(tmp_path / "f", size=3, sha256="0" * 64, source="s")


def _data_cfg(root, name="mnist"):
  return ml_collections.ConfigDict(dict(name=name, source="files", dir=str(root), val_size=5000,
                                        split_seed=0))


def test_load_without_data_dir_says_how_to_set_it(monkeypatch, tmp_path):
  monkeypatch.delenv("PLAYBOOK_DATA_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # An empty cache, whatever this user has.
  with pytest.raises(DataError, match="Set PLAYBOOK_DATA_DIR=/path/to/data"):
    mnist.load(_data_cfg(""))


def test_load_corrupted_copy_of_real_file_fails_and_names_it(real_data_dir, tmp_path):
  copy = tmp_path / "mnist"
  shutil.copytree(real_data_dir / "mnist", copy)
  target = copy / "t10k-labels-idx1-ubyte.gz"
  target.chmod(0o644)
  data = bytearray(target.read_bytes())
  data[100] ^= 0xFF  # One flipped byte: same size, and the gzip stream no longer decodes.
  target.write_bytes(bytes(data))
  with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is not a readable gzip file.*"
                     r"storage\.googleapis\.com/cvdf-datasets/mnist"):
    mnist.load(_data_cfg(tmp_path))


@pytest.mark.parametrize("name,train_counts0", [("mnist", 5923), ("fashion_mnist", 6000)])
def test_real_files_verify_and_have_published_statistics(real_data_dir, name, train_counts0):
  cfg = _data_cfg(real_data_dir, name)
  train = mnist.read_idx_split(name, real_data_dir, split="train")
  assert train.x.shape == (60000, 28, 28, 1) and train.x.dtype == np.uint8
  assert np.sum(train.y == 0) == train_counts0
  data = mnist.load(cfg)
  assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
  if name == "mnist":  # SOURCE.md: mean 33.31842145, std 78.56748998 on 0..255.
    assert train.x.mean() == pytest.approx(33.31842145, abs=1e-6)


def test_validation_split_is_disjoint_deterministic_and_complete():
  full = Split(x=np.arange(100)[:, None], y=np.arange(100, dtype=np.int32))
  train, val = split_off_validation(full, 20, seed=3)
  train2, val2 = split_off_validation(full, 20, seed=3)
  np.testing.assert_array_equal(val.y, val2.y)
  assert len(val) == 20 and len(train) == 80
  assert sorted(np.concatenate([train.y, val.y]).tolist()) == list(range(100))
  _, val_other = split_off_validation(full, 20, seed=4)
  assert not np.array_equal(val.y, val_other.y)


class FakeTfds:
  """Stands in for tensorflow_datasets: offline (raises) or serving a tiny split."""

  def __init__(self, online: bool):
    self.online = online

  def load(self, name, split, batch_size):
    if not self.online:
      raise ConnectionError("no network")
    return {"image": np.full((3, 28, 28, 1), 7, np.uint8), "label": np.array([1, 2, 3])}

  def as_numpy(self, tree):
    return tree


def test_tfds_source_reads_splits(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds(online=True))
  split = mnist.read_tfds_split("mnist", "test")
  assert split.x.shape == (3, 28, 28, 1) and split.y.dtype == np.int32


def test_tfds_source_offline_says_where_to_put_the_files(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds(online=False))
  with pytest.raises(DataError, match=r"TFDS could not provide mnist/train \(ConnectionError.*"
                     r"PLAYBOOK_DATA_DIR/mnist/ and use --config.data.source=files"):
    mnist.read_tfds_split("mnist", "train")


def test_recompressed_originals_are_accepted_by_their_content(real_data_dir, tmp_path):
  """The same IDX content in another gzip container (level 1, not the original's) is the data:
  accepted by its content checksum, and read to the same arrays."""
  import gzip
  copy = tmp_path / "mnist"
  shutil.copytree(real_data_dir / "mnist", copy)
  target = copy / "t10k-images-idx3-ubyte.gz"
  raw = gzip.decompress(target.read_bytes())
  target.chmod(0o644)
  target.write_bytes(gzip.compress(raw, compresslevel=1))
  assert target.stat().st_size != (real_data_dir / "mnist" / target.name).stat().st_size
  ours = mnist.read_idx_split("mnist", tmp_path, split="t10k")
  original = mnist.read_idx_split("mnist", real_data_dir, split="t10k")
  np.testing.assert_array_equal(ours.x, original.x)
