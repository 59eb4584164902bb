"""CIFAR-10 from the official python batches, from an image folder (the staged JPEG copy), or TFDS.

Four sources, chosen by ``config.data.source``:

* ``'auto'``: the copy the data root holds (the official batches, else the JPEG image folder),
  else the cache's, else the official tarball, fetched into the cache. ``describe`` says which.
* ``'official'``: ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/`` under
  ``<root>/cifar10/`` (fetched into the cache when no root has it). The tarball and every batch
  are checked against the md5s published by the CIFAR page and torchvision
  (``playbook.data.sources``), and the batches (Python 2 pickles) are read with a restricted
  unpickler (``safe_pickle``), never plain ``pickle.load``.
* ``'files'``: the image-folder layout ``{train,test}/<class>/*.jpg`` with an ``images.sha256``
  index (what the shared data root's ``cifar10/`` holds: a LOSSY JPEG q75 copy, see its
  SOURCE.md). The index itself is checked against its published sha256, every file against the
  index, and the decoded arrays are cached as an ``.npz`` keyed by the index's sha256, so the
  60,000 JPEGs are decoded once. This copy cannot be fetched: it is read where a root holds it.
* ``'tfds'``: tensorflow-datasets' ``cifar10`` (downloads when online).

Every result says which copy it came from (``ImageDataset`` + ``describe``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import ml_collections
import numpy as np

from playbook.data import fetch, sources
from playbook.data.paths import DataError, cache_root, data_root, search_roots, sha256_of
from playbook.data.safe_pickle import UnsafePickleError, safe_loads
from playbook.data.splits import ImageDataset, Split, split_off_validation

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
# Views of the registry (playbook.data.sources), the one table of checksums.
OFFICIAL_URL = sources.CIFAR10_URL
TARBALL = sources.CIFAR10.name
BATCHES = sources.CIFAR10_BATCHES
TARBALL_MD5 = sources.CIFAR10_TARBALL.md5
BATCH_MD5 = sources.CIFAR10_BATCH_MD5
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
JPEG_INDEX_SHA256 = sources.CIFAR10_JPEG_INDEX_SHA256
JPEG_DECODED_SHA256 = sources.CIFAR10_JPEG_DECODED_SHA256
COPIES = {"official": "official CIFAR-10 python batches",
          "files": "LOSSY JPEG q75 copy of CIFAR-10 (image folder)",
          "tfds": "TFDS cifar10 (official pixels)",
          "auto": "CIFAR-10: the data root's copy, else the official python batches"}


# ------------------------------------------------------------------------ official batches


def _md5(data: bytes) -> str:
  return hashlib.md5(data).hexdigest()


def check_md5(name: str, data: bytes, expected: str, where: str) -> bytes:
  actual = _md5(data)
  if actual != expected:
    raise DataError(f"{where}: {name} is corrupt (md5 {actual}, expected {expected}). Replace it "
                    f"with the original from {OFFICIAL_URL}.")
  return data


def read_official_members(folder: Path) -> dict[str, bytes]:
  """The bytes of every batch, md5-checked, from the tarball or the extracted folder."""
  tarball = folder / TARBALL
  extracted = folder / BATCHES
  if extracted.is_dir():
    members = {}
    for name, md5 in BATCH_MD5.items():
      path = extracted / name
      if not path.is_file():
        raise DataError(f"Missing {path}. Extract {OFFICIAL_URL} into {folder}.")
      members[name] = check_md5(name, path.read_bytes(), md5, str(extracted))
    return members
  if tarball.is_file():
    raw = check_md5(tarball.name, tarball.read_bytes(), TARBALL_MD5, str(folder))
    members = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
      for name, md5 in BATCH_MD5.items():
        member = tar.extractfile(f"cifar-10-batches-py/{name}")  # Read in memory, never extracted.
        members[name] = check_md5(name, member.read(), md5, str(tarball))
    return members
  raise DataError(f"Neither {tarball} nor {extracted}/ exists. Download {OFFICIAL_URL} there (or "
                  "run python -m launch.fetch cifar10), or use --config.data.source=files (image "
                  "folder) or =tfds.")


def decode_batch(name: str, data: bytes) -> Split:
  """One official batch (a dict pickle: b'data' uint8 (N, 3072) CHW rows, b'labels')."""
  try:
    batch = safe_loads(data)
  except UnsafePickleError as e:
    raise DataError(f"{name}: {e}. This is not an original CIFAR batch; replace it with the "
                    f"original from {OFFICIAL_URL}.") from None
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise DataError(f"{name}: not a CIFAR batch (expected a dict with b'data' and b'labels').")
  pixels, labels = batch[b"data"], np.asarray(batch[b"labels"], np.int64)
  if (not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2
      or pixels.shape[1] != 3072 or len(pixels) != len(labels)):
    raise DataError(f"{name}: b'data' must be uint8 (N, 3072) with N labels, got "
                    f"{getattr(pixels, 'dtype', type(pixels))} {getattr(pixels, 'shape', '')}.")
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise DataError(f"{name}: labels outside 0..9.")
  images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> NHWC.
  return Split(x=np.ascontiguousarray(images), y=labels.astype(np.int32))


def read_official(folder: Path) -> tuple[Split, Split]:
  members = read_official_members(folder)
  meta = safe_loads(members["batches.meta"])
  names = [n.decode() for n in meta[b"label_names"]]
  if names != CLASS_NAMES:
    raise DataError(f"batches.meta lists classes {names}, expected {CLASS_NAMES}.")
  parts = [decode_batch(name, members[name]) for name in TRAIN_BATCHES]
  train = Split(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))
  return train, decode_batch("test_batch", members["test_batch"])


# ---------------------------------------------------------------------------- image folder


def read_index(folder: Path, expected_sha256: str | None) -> tuple[dict[str, str], str]:
  """``images.sha256`` (``sha256sum`` format) -> ({relative path: sha256}, the index's sha256)."""
  index = folder / "images.sha256"
  if not index.is_file():
    raise DataError(f"Missing {index}: the image folder needs its checksum index "
                    f"(make one with `cd {folder} && sha256sum */*/*.jpg > images.sha256`).")
  digest = sha256_of(index)
  if expected_sha256 is not None and digest != expected_sha256:
    raise DataError(f"{index} is corrupt or from another copy: sha256 {digest}, expected "
                    f"{expected_sha256} (SOURCE.md).")
  entries = {}
  for line in index.read_text().splitlines():
    if line.strip():
      sha, rel = line.split(maxsplit=1)
      entries[rel.lstrip("*")] = sha
  return entries, digest


def decode_folder_split(folder: Path, split: str, class_names: list[str],
                        index: dict[str, str]) -> Split:
  """Every ``<split>/<class>/*`` image, checked against the index, decoded to uint8 RGB."""
  from PIL import Image  # Host-side decoding, once per cache.
  listed = sorted(rel for rel in index if rel.startswith(f"{split}/"))
  if not listed:
    raise DataError(f"{folder / 'images.sha256'} lists no files under {split}/.")
  images, labels = [], []
  for rel in listed:
    class_name = rel.split("/")[1]
    if class_name not in class_names:
      raise DataError(f"{folder / rel}: unknown class folder {class_name!r}; known: {class_names}.")
    path = folder / rel
    if not path.is_file():
      raise DataError(f"Missing image {path} (listed in images.sha256). Restore the folder.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != index[rel]:
      raise DataError(f"Image {path} is corrupt: its sha256 differs from images.sha256. Restore "
                      "the original file.")
    try:
      image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.uint8)
    except Exception as e:  # PIL raises several types for broken files.
      raise DataError(f"Image {path} does not decode ({type(e).__name__}: {e}).") from None
    images.append(image)
    labels.append(class_names.index(class_name))
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise DataError(f"{folder / split}: images of different sizes {sorted(shapes)}.")
  return Split(x=np.stack(images), y=np.asarray(labels, np.int32))


def cache_dir() -> Path:
  """Where decoded image folders are cached: $PLAYBOOK_CACHE_DIR, else the data cache."""
  return Path(os.environ.get("PLAYBOOK_CACHE_DIR") or cache_root())


def read_image_folder(folder: Path, class_names: list[str], *, cache: Path | None = None,
                      expected_index_sha256: str | None = None) -> tuple[Split, Split, str]:
  """(train, test, index sha256) of an image folder, decoded once and cached as ``.npz``.

  The cache is keyed by the index's sha256 (so any change to the files' listed checksums makes a
  new one); a cached file that does not load is an error naming it, not a silent re-decode.
  """
  if not folder.is_dir():
    raise DataError(f"Image folder {folder} does not exist (expected train/<class>/*.jpg and "
                    "test/<class>/*.jpg with an images.sha256 index).")
  index, digest = read_index(folder, expected_index_sha256)
  cache_file = (cache or cache_dir()) / f"{folder.name}-{digest[:16]}.npz"
  if cache_file.is_file():
    try:
      with np.load(cache_file) as z:
        return (Split(z["train_x"], z["train_y"]), Split(z["test_x"], z["test_y"]), digest)
    except Exception as e:
      raise DataError(f"Cache {cache_file} is unreadable ({type(e).__name__}: {e}); delete it "
                      "and it will be rebuilt from the images.") from None
  train = decode_folder_split(folder, "train", class_names, index)
  test = decode_folder_split(folder, "test", class_names, index)
  cache_file.parent.mkdir(parents=True, exist_ok=True)
  tmp = cache_file.with_suffix(".tmp.npz")
  np.savez(tmp, train_x=train.x, train_y=train.y, test_x=test.x, test_y=test.y)
  os.replace(tmp, cache_file)  # Atomic: never a half-written cache.
  return train, test, digest


def array_sha256(x: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------- TFDS


def read_tfds(split: str) -> Split:
  import tensorflow_datasets as tfds  # Heavy import: only on this path.
  try:
    data = tfds.as_numpy(tfds.load("cifar10", split=split, batch_size=-1))
  except Exception as e:  # TFDS raises many types for "offline" and "not prepared".
    raise DataError(f"TFDS could not provide cifar10/{split} ({type(e).__name__}: {e}). Go "
                    "online, or use --config.data.source=official or =files.") from None
  return Split(x=data["image"].astype(np.uint8), y=data["label"].astype(np.int32))


# ----------------------------------------------------------------------------------- entry


def shuffled(split: Split, *, seed: int) -> Split:
  order = np.random.default_rng(seed).permutation(len(split))
  return Split(split.x[order], split.y[order])



def has_official(folder: Path) -> bool:
  return (folder / BATCHES).is_dir() or (folder / TARBALL).is_file()


def has_jpeg_copy(folder: Path) -> bool:
  return (folder / "images.sha256").is_file()


def resolve(cfg: ml_collections.ConfigDict) -> tuple[str, Path | None]:
  """(source, ``cifar10`` folder to read) for ``cfg``; 'auto' becomes 'official' or 'files'.

  Roots are searched in order (the named one, then the cache); in each, the official batches win
  over the JPEG copy. The folder is None when the official tarball is still to be fetched.
  """
  if cfg.source not in COPIES:
    raise DataError(f"config.data.source must be 'auto', 'official', 'files' or 'tfds' for "
                    f"cifar10, got {cfg.source!r}.")
  if cfg.source == "tfds":
    return "tfds", None
  for root in search_roots(cfg.dir or None):
    folder = root / "cifar10"
    if cfg.source in ("auto", "official") and has_official(folder):
      return "official", folder
    if cfg.source in ("auto", "files") and has_jpeg_copy(folder):
      return "files", folder
  return ("files", data_root(cfg.dir or None) / "cifar10") if cfg.source == "files" else (
      "official", None)


def describe(cfg: ml_collections.ConfigDict) -> str:
  """Which copy ``cfg`` reads, e.g. the LOSSY JPEG copy (for results.json and the summary)."""
  return COPIES[resolve(cfg)[0]]


def load(cfg: ml_collections.ConfigDict) -> ImageDataset:
  """Train/validation/test splits as uint8 NHWC images and int32 labels, from ``cfg.source``."""
  source, folder = resolve(cfg)
  if source == "official":
    if folder is None:  # No root holds it: the official tarball, fetched and unpacked.
      folder = fetch.ensure(sources.CIFAR10, cfg.dir or None).parent
    train, test = read_official(folder)
  elif source == "files":
    if not folder.is_dir():
      raise DataError(f"No CIFAR-10 image folder at {folder} (train/<class>/*.jpg with an "
                      "images.sha256 index). Use --config.data.source=auto or =official to read "
                      "(or fetch) the official batches.")
    train, test, _ = read_image_folder(folder, CLASS_NAMES,
                                       expected_index_sha256=JPEG_INDEX_SHA256)
    # The folder is sorted by class (the original interleaving is lost): one fixed shuffle, so
    # that the first n images (train_limit, the plots' first test images) cover every class.
    train, test = shuffled(train, seed=0), shuffled(test, seed=1)
  else:
    train, test = read_tfds("train"), read_tfds("test")
  train, val = split_off_validation(train, cfg.val_size, seed=cfg.split_seed)
  return ImageDataset(train=train, val=val, test=test, class_names=list(CLASS_NAMES))
