"""MNIST and Fashion-MNIST from their original IDX ``.gz`` files, or from TFDS when online.

The files come from the data root, else the cache, else are fetched into the cache
(``playbook.data.fetch``). Each is checked against the sha256 that tensorflow-datasets publishes
for it (``tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt``, held in
``playbook.data.sources``), then against its IDX header.
"""

from __future__ import annotations

import gzip
import hashlib

import ml_collections
import numpy as np

from playbook.data import fetch, sources
from playbook.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_gz
from playbook.data.paths import DataError
from playbook.data.splits import ImageDataset, Split, split_off_validation

# name -> file name -> (bytes, sha256): a view of the registry, for callers that want the table.
CHECKSUMS = {name: {f: (size, sha) for f, (size, sha, *_) in files.items()}
             for name, files in sources.IDX_FILES.items()}

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


def check_content(path, source: sources.Source, hint: str) -> None:
  """The published file, or the same IDX content in another gzip container; else a DataError
  that says which of the two differs."""
  if fetch.verify_file(path, source.digests)[0]:
    return
  with gzip.open(path, "rb") as f:
    content = hashlib.sha256(f.read()).hexdigest()
  if content == source.content_sha256:
    return  # Recompressed (another gzip level or tool): the data are the originals.
  raise DataError(f"Data file {path} is corrupt: its decompressed content has sha256 {content}, "
                  f"the original's is {source.content_sha256} (the file is a well-formed "
                  f"{source.name.split('-')[1]} file of the right shape, but other values). "
                  f"Replace it; {hint}.")


def read_idx_split(name: str, data_dir=None, *, split: str) -> Split:
  """Reads one split ('train' or 't10k') of ``name`` (``<root>/<name>/``, fetched if absent)."""
  arrays, folder = {}, None
  for kind, magic, tail in (("images", IMAGES_MAGIC, (28, 28)), ("labels", LABELS_MAGIC, ())):
    source = sources.get(f"{name}/{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz")
    path = fetch.ensure(source, data_dir)
    folder = path.parent
    hint = (f"the originals are at {source.urls[0].rsplit('/', 1)[0]}/ "
            f"(expected folder: {folder})")
    # Format first (gzip, magic, dimensions, length): a file of the wrong kind is named as such.
    arrays[kind] = read_idx_gz(path, magic=magic, shape_tail=tail, source=hint)
    check_content(path, source, hint)
  if len(arrays["images"]) != len(arrays["labels"]):
    raise DataError(f"{folder}: {len(arrays['images'])} images but {len(arrays['labels'])} labels.")
  return Split(x=arrays["images"][..., None], y=arrays["labels"].astype(np.int32))


def read_tfds_split(name: str, split: str) -> Split:
  """The same split through tensorflow-datasets (downloads when online, caches in
  ~/tensorflow_datasets)."""
  import tensorflow_datasets as tfds  # Heavy import: only on this path.
  try:
    data = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1))
  except Exception as e:  # TFDS raises many types for "offline" and "not prepared".
    raise DataError(
        f"TFDS could not provide {name}/{split} ({type(e).__name__}: {e}). Go online, or put the "
        f"original IDX files under $PLAYBOOK_DATA_DIR/{name}/ and use --config.data.source=files.")
  return Split(x=data["image"].astype(np.uint8), y=data["label"].astype(np.int32))


def load(cfg: ml_collections.ConfigDict) -> ImageDataset:
  """Train/validation/test splits of ``cfg.name`` as uint8 NHWC images and int32 labels.

  ``cfg.source``: 'files' or 'auto' (the same here: the data root, else the cache, else fetched),
  or 'tfds'.
  """
  if cfg.name not in CHECKSUMS:
    raise DataError(f"Unknown IDX data set {cfg.name!r}; known: {sorted(CHECKSUMS)}.")
  if cfg.source in ("files", "auto"):
    train = read_idx_split(cfg.name, cfg.dir or None, split="train")
    test = read_idx_split(cfg.name, cfg.dir or None, split="t10k")
  elif cfg.source == "tfds":
    train, test = read_tfds_split(cfg.name, "train"), read_tfds_split(cfg.name, "test")
  else:
    raise DataError(f"config.data.source must be 'files', 'auto' or 'tfds', got {cfg.source!r}.")
  train, val = split_off_validation(train, cfg.val_size, seed=cfg.split_seed)
  return ImageDataset(train=train, val=val, test=test, class_names=CLASS_NAMES[cfg.name])
