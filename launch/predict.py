"""Class and probability per input from a trained classification run (any classifier study):

    python -m launch.predict --workdir=runs/mnist_mlp digit.png [IMAGE|FOLDER ...]
    python -m launch.predict --workdir=runs/mnist_mlp t10k-images-idx3-ubyte.gz --limit=5
    python -m launch.predict --workdir=runs/cats_dogs_lite0 cat.jpg
    python -m launch.predict --workdir=runs/cifar10_cnn images.npy

The run's stored config names its task, whose ``predictor`` reads the ``best`` checkpoint. Image
files are decoded on the host and fitted to the run's input shape (grey for MNIST-like runs;
resized as the task says); IDX files (``.gz`` or raw) and ``.npy`` arrays of uint8 images are
read as they are. Prints ``input<TAB>class<TAB>probability`` per image. An unreadable input is
reported on stderr with its cause and the others are still predicted; the exit status is then 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from playbook import tasks
from playbook.data.idx import read_idx
from playbook.data.images import RESIZERS, read_rgb
from playbook.data.paths import DataError
from playbook.run.rundir import RunDirError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a trained classification run.")
_LIMIT = flags.DEFINE_integer("limit", None, "At most this many images of each IDX/.npy input.")
flags.mark_flag_as_required("workdir")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ARRAY_SUFFIXES = (".npy", "-ubyte", "-ubyte.gz", ".idx", ".idx.gz")


def input_paths(args: list[str]) -> list[Path]:
  """The files named, and the image files (by suffix) inside the folders named, in order."""
  paths = []
  for arg in args:
    path = Path(arg)
    if path.is_dir():
      paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
      paths.append(path)  # Missing or unreadable files are reported when read.
  return paths


def read_array(path: Path, shape: tuple[int, ...], limit: int | None) -> np.ndarray:
  """uint8 images from an IDX file or a .npy array, checked against the run's input shape."""
  if path.name.endswith(".npy"):
    try:
      images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise DataError(f"{path} is not a readable .npy array ({e}).") from None
  else:
    images = read_idx(path)
  images = images[:limit]
  if images.ndim == len(shape) and shape[-1] == 1:
    images = images[..., None]  # (n, 28, 28) IDX images -> (n, 28, 28, 1).
  if images.shape[1:] != tuple(shape) or images.dtype != np.uint8:
    raise DataError(f"{path} holds {images.dtype} images of shape {images.shape[1:]}; this run "
                    f"takes uint8 images of shape {tuple(shape)}.")
  return images


def read_image(path: Path, predictor: tasks.Predictor) -> np.ndarray:
  """An image file fitted to the run's input: resized as the task says, grey if it takes one
  channel."""
  height, width, channels = predictor.input_shape
  rgb = RESIZERS[predictor.resize](read_rgb(path), height)
  if channels == 1:  # ITU-R 601 luma, as PIL's "L" mode.
    rgb = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))[..., None].astype(np.uint8)
  return rgb


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  args = argv[1:]
  if not args:
    raise app.UsageError("Name at least one image, folder of images, IDX file or .npy array.")
  try:
    task, config = tasks.for_workdir(_WORKDIR.value)
    if not hasattr(task, "predictor"):
      raise RunDirError(f"{_WORKDIR.value} holds a run of task {config.task!r}, which does not "
                        "classify images; pass the --workdir of a classifier study.")
    predictor = task.predictor(config, _WORKDIR.value)
  except (DataError, RunDirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  names, images, failed = [], [], 0
  for path in input_paths(args):
    try:
      if path.name.lower().endswith(ARRAY_SUFFIXES):
        batch = read_array(path, predictor.input_shape, _LIMIT.value)
        names += [f"{path}[{i}]" for i in range(len(batch))]
        images += list(batch)
      else:
        images.append(read_image(path, predictor))
        names.append(str(path))
    except DataError as e:
      print(f"error: {e}", file=sys.stderr)
      failed += 1
  if images:
    probs = predictor.predict(np.stack(images))
    for name, p in zip(names, probs):
      k = int(np.argmax(p))
      print(f"{name}\t{predictor.class_names[k]}\t{p[k]:.4f}")
  sys.exit(1 if failed or not images else 0)


if __name__ == "__main__":
  app.run(main)
