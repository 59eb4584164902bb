"""A toy classification problem the trainer tests share: learnable in a few epochs."""

from __future__ import annotations

import numpy as np


def blobs(n: int, seed: int = 0) -> dict:
  """``n`` points from three Gaussian blobs in 4-d, as a ``{"image", "label"}`` batch."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n).astype(np.int32)
  centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], np.float32)
  return {"image": centres[labels] + rng.normal(size=(n, 4)).astype(np.float32), "label": labels}
