"""Image-folder data sets: ``<root>/<split>/<class>/*.jpg``, each file checked against a
``sha256sum``-format list, e.g. Google's cats_and_dogs_filtered (``cats_and_dogs/``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from playbook.data.paths import DataError, data_root, sha256_of

CATS_DOGS = "cats_and_dogs"
CATS_DOGS_SOURCE = ("the folder is described in cats_and_dogs/SOURCE.md (Google's "
                    "cats_and_dogs_filtered, resized so the longer side is 256 px)")


@dataclasses.dataclass(frozen=True)
class FileSplit:
  paths: list[Path]
  labels: np.ndarray  # int32, index into class_names.
  class_names: list[str]

  def __len__(self) -> int:
    return len(self.paths)

  def subset(self, index) -> "FileSplit":
    return FileSplit([self.paths[i] for i in index], self.labels[index], self.class_names)


def read_checksums(path: Path) -> dict[str, str]:
  if not path.is_file():
    raise DataError(f"Missing checksum list {path}; {CATS_DOGS_SOURCE}.")
  sums = {}
  for line in path.read_text().splitlines():
    if line.strip():
      digest, name = line.split(maxsplit=1)
      sums[name.lstrip("*")] = digest
  return sums


def image_folder_split(split: str, data_dir=None, *, name: str = CATS_DOGS,
                       checksums: str = "resized.sha256", verify: bool = True) -> FileSplit:
  """The files of ``<data_dir>/<name>/<split>/<class>/``, classes in sorted order, each verified
  against ``<name>/<checksums>``: a file missing, extra or changed is a ``DataError``."""
  folder = data_root(data_dir) / name
  split_dir = folder / split
  if not split_dir.is_dir():
    raise DataError(f"Missing folder {split_dir}; {CATS_DOGS_SOURCE}.")
  class_names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
  sums = read_checksums(folder / checksums)
  expected = sorted(k for k in sums if k.startswith(f"{split}/"))
  paths, labels = [], []
  for label, class_name in enumerate(class_names):
    for path in sorted((split_dir / class_name).iterdir(), key=_natural):
      paths.append(path)
      labels.append(label)
  found = sorted(str(p.relative_to(folder)) for p in paths)
  if found != expected:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    raise DataError(f"{split_dir} does not match {folder / checksums}: missing {missing[:5]} "
                    f"({len(missing)}), unexpected {extra[:5]} ({len(extra)}); {CATS_DOGS_SOURCE}.")
  if verify:
    for path in paths:
      if sha256_of(path) != sums[str(path.relative_to(folder))]:
        raise DataError(f"Image {path} is corrupt (sha256 differs from {checksums}); replace it "
                        f"with the original; {CATS_DOGS_SOURCE}.")
  return FileSplit(paths, np.asarray(labels, np.int32), class_names)


def _natural(path: Path):
  """cat.2.jpg before cat.10.jpg."""
  return [int(t) if t.isdigit() else t for t in path.name.replace(".", " . ").split()]
