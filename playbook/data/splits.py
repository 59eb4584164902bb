"""In-memory splits and the held-out validation set carved from the training set."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  x: np.ndarray  # uint8 images, NHWC.
  y: np.ndarray  # int32 labels.

  def __len__(self) -> int:
    return len(self.y)

  def take(self, n: int | None) -> "Split":
    return self if n is None else Split(self.x[:n], self.y[:n])


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  train: Split
  val: Split
  test: Split
  class_names: list[str]


def split_off_validation(train: Split, val_size: int, *, seed: int) -> tuple[Split, Split]:
  """Holds out ``val_size`` training examples, chosen by a fixed permutation of ``seed``.

  The validation set drives early stopping and the "best" checkpoint; the test set is only
  evaluated once, for the reported figure.
  """
  if not 0 < val_size < len(train):
    raise ValueError(f"val_size must be in (0, {len(train)}), got {val_size}.")
  order = np.random.default_rng(seed).permutation(len(train))
  keep, held = np.sort(order[val_size:]), np.sort(order[:val_size])
  return Split(train.x[keep], train.y[keep]), Split(train.x[held], train.y[held])
