"""Class and probability per image from a trained run:

    python -m launch.predict --workdir=runs/cats_dogs_lite0_frozen IMAGE [IMAGE|FOLDER ...]

Reads the run's ``config.json`` and ``best`` checkpoint (the study's ``predictor``), decodes each
image on the host (resized and centre-cropped as in training) and prints
``path<TAB>class<TAB>probability``. An unreadable image is reported on stderr with its cause and
the others are still predicted; the exit status is then 1.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from playbook.data.images import load_image
from playbook.data.paths import DataError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a finished training run.")
flags.mark_flag_as_required("workdir")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def image_paths(args: list[str]) -> list[Path]:
  """The files named, and the image files (by suffix) inside the folders named, in order."""
  paths = []
  for arg in args:
    path = Path(arg)
    if path.is_dir():
      paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
      paths.append(path)  # Missing or unreadable files are reported when read.
  return paths


def load_predictor(workdir: Path):
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise DataError(f"{workdir} is not a run directory (no config.json); pass the --workdir of "
                    "a finished `python -m launch.main` run.")
  stored = json.loads(config_path.read_text())
  experiment = Path(__file__).resolve().parents[1] / "experiments" / f"{stored['study']}.py"
  spec = importlib.util.spec_from_file_location(f"experiments.{stored['study']}", experiment)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "predictor"):
    raise DataError(f"Study {stored['study']!r} ({experiment}) has no predictor(config, workdir).")
  config = module.get_config()  # The run's values over the defaults (keys added since then).
  with config.unlocked():
    config.update(stored)
  return module.predictor(config, workdir)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  args = argv[1:]
  if not args:
    raise app.UsageError("Name at least one image or folder of images.")
  paths = image_paths(args)
  if not paths:
    raise app.UsageError(f"No image files (by suffix: {sorted(IMAGE_SUFFIXES)}) in {args}.")
  try:
    predict, class_names, image_size = load_predictor(Path(_WORKDIR.value))
  except (DataError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  images, readable, failed = [], [], 0
  for path in paths:
    try:
      images.append(load_image(path, image_size))
      readable.append(path)
    except DataError as e:
      print(f"error: {e}", file=sys.stderr)
      failed += 1
  if images:
    probs = predict(np.stack(images))
    for path, p in zip(readable, probs):
      k = int(np.argmax(p))
      print(f"{path}\t{class_names[k]}\t{p[k]:.4f}")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  app.run(main)
