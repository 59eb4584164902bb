"""Image-folder data sets: ``<root>/<split>/<class>/*.jpg``, each file checked against a
``sha256sum``-format list, e.g. Google's cats_and_dogs_filtered (``cats_and_dogs/``).

The cats and dogs come from the data root (e.g. the shared resized copy with its
``resized.sha256``), else the cache, else Google's zip, fetched and unpacked into the cache with an
``originals.sha256`` listing whose own hash the registry holds (``playbook.data.sources``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from playbook.data import fetch, sources
from playbook.data.paths import DataError, data_root, sha256_of

CATS_DOGS = "cats_and_dogs"
CATS_DOGS_SOURCE = ("the folder is described in cats_and_dogs/SOURCE.md (Google's "
                    f"cats_and_dogs_filtered, {sources.CATS_DOGS_URL}); python -m launch.fetch "
                    "cats_and_dogs fetches it")
# Checksum lists a folder may hold, in order of preference.
LISTINGS = sources.CATS_DOGS.archive.listings


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
  return sources.parse_manifest(path.read_text())


def image_folder(name: str = CATS_DOGS, data_dir=None) -> Path:
  """``<root>/<name>``; the registered cats and dogs are fetched into the cache when absent."""
  if name == CATS_DOGS:
    return fetch.ensure(sources.CATS_DOGS, data_dir)
  return data_root(data_dir) / name


def checksum_list(folder: Path, checksums: str | None) -> Path:
  """The list to check ``folder`` against: the one named, else the first of ``LISTINGS`` there."""
  if checksums:
    return folder / checksums
  return next((folder / n for n in LISTINGS if (folder / n).is_file()), folder / LISTINGS[0])


def image_folder_split(split: str, data_dir=None, *, name: str = CATS_DOGS,
                       checksums: str | None = None, verify: bool = True) -> FileSplit:
  """The files of ``<root>/<name>/<split>/<class>/``, classes in sorted order, each verified
  against the folder's checksum list (``checksums``, else resized.sha256 or originals.sha256):
  a file missing, extra or changed is a ``DataError``."""
  folder = image_folder(name, data_dir)
  split_dir = folder / split
  if not split_dir.is_dir():
    raise DataError(f"Missing folder {split_dir}; {CATS_DOGS_SOURCE}.")
  class_names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
  listing = checksum_list(folder, checksums)
  sums = read_checksums(listing)
  _check_registered_listing(name, listing, sums)
  expected = sorted(k for k in sums if k.startswith(f"{split}/"))
  paths, labels = [], []
  for label, class_name in enumerate(class_names):
    for path in sorted((split_dir / class_name).iterdir(), key=_natural):
      paths.append(path)
      labels.append(label)
  found = sorted(str(p.relative_to(folder)) for p in paths)
  if found != expected:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    raise DataError(f"{split_dir} does not match {listing}: missing {missing[:5]} "
                    f"({len(missing)}), unexpected {extra[:5]} ({len(extra)}); {CATS_DOGS_SOURCE}.")
  if verify:
    for path in paths:
      if sha256_of(path) != sums[str(path.relative_to(folder))]:
        raise DataError(f"Image {path} is corrupt (sha256 differs from {listing.name}); replace "
                        f"it with the original; {CATS_DOGS_SOURCE}.")
  return FileSplit(paths, np.asarray(labels, np.int32), class_names)


def _check_registered_listing(name: str, listing: Path, sums: dict[str, str]) -> None:
  """The originals' list of the registered cats and dogs must be the registry's, byte for byte
  once sorted: a list edited to match changed images is refused."""
  spec = sources.CATS_DOGS.archive
  if name == CATS_DOGS and listing.name == spec.manifest and (
      sources.manifest_sha256(sums) != spec.manifest_sha256):
    raise DataError(f"{listing} is not the registered list of the original images (its sorted "
                    f"listing's sha256 is not {spec.manifest_sha256}); {CATS_DOGS_SOURCE}.")


def _natural(path: Path):
  """cat.2.jpg before cat.10.jpg."""
  return [int(t) if t.isdigit() else t for t in path.name.replace(".", " . ").split()]
