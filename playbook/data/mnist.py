"""MNIST and Fashion-MNIST from their original IDX ``.gz`` files, or from TFDS when online.

Each file is checked against the sha256 that tensorflow-datasets publishes for it
(``tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt``), then against its IDX header.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from playbook.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_gz
from playbook.data.paths import DataError, data_root, verified_file
from playbook.data.splits import ImageDataset, Split, split_off_validation

# file name -> (bytes, sha256), as published by TFDS.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz":
            (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz":
            (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz":
            (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz":
            (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz":
            (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz":
            (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz":
            (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
}

DOWNLOAD_FROM = {
    "mnist": "the originals are at https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": ("the originals are at "
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


def read_idx_split(name: str, data_dir=None, *, split: str) -> Split:
  """Reads one split ('train' or 't10k') of ``name`` from ``<data_dir>/<name>/``, verified."""
  folder = data_root(data_dir) / name
  source = f"{DOWNLOAD_FROM[name]} (expected folder: {folder})"
  arrays = {}
  for kind, magic, tail in (("images", IMAGES_MAGIC, (28, 28)), ("labels", LABELS_MAGIC, ())):
    file_name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
    size, sha = CHECKSUMS[name][file_name]
    path = verified_file(folder / file_name, size=size, sha256=sha, source=source)
    arrays[kind] = read_idx_gz(path, magic=magic, shape_tail=tail, source=source)
  if len(arrays["images"]) != len(arrays["labels"]):
    raise DataError(f"{folder}: {len(arrays['images'])} images but {len(arrays['labels'])} labels.")
  return Split(x=arrays["images"][..., None], y=arrays["labels"].astype(np.int32))


def read_tfds_split(name: str, split: str) -> Split:
  """The same split through tensorflow-datasets (downloads when online, caches in ~/tensorflow_datasets)."""
  import tensorflow_datasets as tfds  # Heavy import: only on this path.
  try:
    data = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1))
  except Exception as e:  # TFDS raises many types for "offline" and "not prepared".
    raise DataError(
        f"TFDS could not provide {name}/{split} ({type(e).__name__}: {e}). Go online, or put the "
        f"original IDX files under $PLAYBOOK_DATA_DIR/{name}/ and use --config.data.source=files.")
  return Split(x=data["image"].astype(np.uint8), y=data["label"].astype(np.int32))


def load(cfg: ml_collections.ConfigDict) -> ImageDataset:
  """Train/validation/test splits of ``cfg.name`` as uint8 NHWC images and int32 labels."""
  if cfg.name not in CHECKSUMS:
    raise DataError(f"Unknown IDX data set {cfg.name!r}; known: {sorted(CHECKSUMS)}.")
  if cfg.source == "files":
    train = read_idx_split(cfg.name, cfg.dir, split="train")
    test = read_idx_split(cfg.name, cfg.dir, split="t10k")
  elif cfg.source == "tfds":
    train, test = read_tfds_split(cfg.name, "train"), read_tfds_split(cfg.name, "test")
  else:
    raise DataError(f"config.data.source must be 'files' or 'tfds', got {cfg.source!r}.")
  train, val = split_off_validation(train, cfg.val_size, seed=cfg.split_seed)
  return ImageDataset(train=train, val=val, test=test, class_names=CLASS_NAMES[cfg.name])
