"""A small fake cats_and_dogs folder (JPEGs + resized.sha256) for the image-folder tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def make_cats_dogs(root: Path, splits: dict[str, tuple[int, ...]] | None = None) -> Path:
  """``root/cats_and_dogs/<split>/{cats,dogs}/`` with small JPEGs; cats dark, dogs bright with a
  stripe, so even a linear head separates them."""
  splits = splits or {"train": (2, 10, 1)}
  folder, lines = root / "cats_and_dogs", []
  rng = np.random.default_rng(0)
  for split, numbers in splits.items():
    for label, name in enumerate(["cats", "dogs"]):
      for i in numbers:
        path = folder / split / name / f"{name[:-1]}.{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 60, (20, 30, 3)) + 150 * label
        pixels[:, 10:14, label] = 255
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  "
                     f"{path.relative_to(folder)}")
  (folder / "resized.sha256").write_text("\n".join(lines) + "\n")
  return folder
