"""CIFAR-10 readers: the restricted unpickler, official batches (md5), the image folder + cache."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playbook.data import cifar10
from playbook.data.paths import DataError
from playbook.data.safe_pickle import UnsafePickleError, safe_loads


class Exploit:
  """A pickle that, loaded with plain pickle.load, would run a shell command."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code_without_running_it(tmp_path):
  marker = tmp_path / "pwned"
  payload = pickle.dumps({b"data": Exploit(marker)}, protocol=4)
  with pytest.raises(UnsafePickleError, match="system"):
    safe_loads(payload)
  assert not marker.exists()


def test_crafted_batch_is_a_data_error_naming_the_file(tmp_path):
  marker = tmp_path / "pwned"
  with pytest.raises(DataError, match="data_batch_1.*not an original CIFAR batch"):
    cifar10.decode_batch("data_batch_1", pickle.dumps(Exploit(marker)))
  assert not marker.exists()


def official_batches(n=6, seed=0):
  """{member name: pickle bytes} in the official layout (dicts with bytes keys, CHW rows)."""
  rng = np.random.default_rng(seed)
  members, arrays = {}, {}
  for name in cifar10.TRAIN_BATCHES + ["test_batch"]:
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    members[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels,
                                  b"data": rows, b"filenames": [b"x.png"] * n}, protocol=4)
    arrays[name] = (images, np.asarray(labels))
  members["batches.meta"] = pickle.dumps(
      {b"label_names": [c.encode() for c in cifar10.CLASS_NAMES], b"num_vis": 3072}, protocol=4)
  return members, arrays


@pytest.fixture
def official_dir(tmp_path, monkeypatch):
  members, arrays = official_batches()
  folder = tmp_path / "cifar10" / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  for name, data in members.items():
    (folder / name).write_bytes(data)
  monkeypatch.setattr(cifar10, "BATCH_MD5",
                      {k: hashlib.md5(v).hexdigest() for k, v in members.items()})
  return tmp_path / "cifar10", arrays


def test_official_batches_round_trip(official_dir):
  folder, arrays = official_dir
  train, test = cifar10.read_official(folder)
  np.testing.assert_array_equal(train.x[:6], arrays["data_batch_1"][0])
  np.testing.assert_array_equal(train.y[6:12], arrays["data_batch_2"][1])
  np.testing.assert_array_equal(test.x, arrays["test_batch"][0])
  assert train.x.shape == (30, 32, 32, 3) and train.x.dtype == np.uint8


def test_official_batch_with_wrong_md5_is_refused(official_dir):
  folder, _ = official_dir
  path = folder / "cifar-10-batches-py" / "data_batch_3"
  data = bytearray(path.read_bytes())
  data[-20] ^= 1
  path.write_bytes(bytes(data))
  with pytest.raises(DataError, match="data_batch_3 is corrupt.*md5"):
    cifar10.read_official(folder)


def test_official_tarball_is_read_without_extracting(tmp_path, monkeypatch):
  members, arrays = official_batches(n=2)
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  (tmp_path / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
  monkeypatch.setattr(cifar10, "BATCH_MD5",
                      {k: hashlib.md5(v).hexdigest() for k, v in members.items()})
  with pytest.raises(DataError, match="cifar-10-python.tar.gz is corrupt"):
    cifar10.read_official(tmp_path)  # The published tarball md5 is not this test tarball's.
  monkeypatch.setattr(cifar10, "TARBALL_MD5", hashlib.md5(buffer.getvalue()).hexdigest())
  train, test = cifar10.read_official(tmp_path)
  np.testing.assert_array_equal(test.x, arrays["test_batch"][0])
  assert not (tmp_path / "cifar-10-batches-py").exists()


def test_missing_official_files_name_the_download(tmp_path):
  with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
    cifar10.read_official(tmp_path)


CLASSES = ["cat", "dog"]


def image_folder(root, n=3):
  """A tiny train/test/<class>/*.png folder with its images.sha256 index; returns the arrays."""
  rng = np.random.default_rng(0)
  lines, arrays = [], {}
  for split in ("train", "test"):
    for label, name in enumerate(CLASSES):
      for i in range(n):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        rel = f"{split}/{name}/{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rel)  # PNG: lossless, so the pixels compare exactly.
        lines.append(f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}")
        arrays[rel] = (image, label)
  (root / "images.sha256").write_text("\n".join(lines) + "\n")
  return arrays


def test_image_folder_is_decoded_once_and_cached(tmp_path):
  folder, cache = tmp_path / "imgs", tmp_path / "cache"
  arrays = image_folder(folder)
  train, test, _ = cifar10.read_image_folder(folder, CLASSES, cache=cache)
  assert train.x.shape == (6, 32, 32, 3) and list(test.y) == [0, 0, 0, 1, 1, 1]
  np.testing.assert_array_equal(test.x[4], arrays["test/dog/0001.png"][0])
  assert len(list(cache.glob("*.npz"))) == 1
  (folder / "train/cat/0000.png").unlink()  # The cache is used: the images are not read again.
  again, _, _ = cifar10.read_image_folder(folder, CLASSES, cache=cache)
  np.testing.assert_array_equal(again.x, train.x)


def test_corrupt_image_is_a_data_error(tmp_path):
  folder = tmp_path / "imgs"
  image_folder(folder)
  path = folder / "test/cat/0002.png"
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(DataError, match="0002.png is corrupt"):
    cifar10.read_image_folder(folder, CLASSES, cache=tmp_path / "cache")


def test_missing_image_and_index_are_data_errors(tmp_path):
  folder = tmp_path / "imgs"
  image_folder(folder)
  (folder / "train/dog/0001.png").unlink()
  with pytest.raises(DataError, match="Missing image .*0001.png"):
    cifar10.read_image_folder(folder, CLASSES, cache=tmp_path / "cache")
  (folder / "images.sha256").unlink()
  with pytest.raises(DataError, match="images.sha256"):
    cifar10.read_image_folder(folder, CLASSES, cache=tmp_path / "cache")


def test_index_of_another_copy_is_refused(tmp_path):
  folder = tmp_path / "imgs"
  image_folder(folder)
  with pytest.raises(DataError, match="another copy"):
    cifar10.read_image_folder(folder, CLASSES, cache=tmp_path / "cache",
                              expected_index_sha256=cifar10.JPEG_INDEX_SHA256)


@pytest.fixture(scope="session")
def cifar_jpeg_dir():
  """$PLAYBOOK_DATA_DIR/cifar10 (the staged JPEG copy); tests that need it skip without it."""
  root = os.environ.get("PLAYBOOK_DATA_DIR")
  if not root or not (Path(root) / "cifar10" / "images.sha256").exists():
    pytest.skip("needs the staged CIFAR-10 JPEG copy under $PLAYBOOK_DATA_DIR/cifar10")
  return Path(root) / "cifar10"


def test_staged_jpeg_copy_index_is_the_published_one(cifar_jpeg_dir):
  index, digest = cifar10.read_index(cifar_jpeg_dir, cifar10.JPEG_INDEX_SHA256)
  assert digest == cifar10.JPEG_INDEX_SHA256 and len(index) == 60000
  first = sorted(index)[:5]
  for rel in first:  # A few files against the index (the whole folder is checked on decode).
    assert hashlib.sha256((cifar_jpeg_dir / rel).read_bytes()).hexdigest() == index[rel]
