"""A hash of the weight tensors themselves, so the same weights verify in any container.

A file's sha256 changes when the same numbers are written by another h5py, another Keras, or
converted to another format; the tensors do not. ``tensor_sha256`` hashes each array's bytes as
little-endian float32, C-contiguous, in the order given. For VGG the order is the Keras one: per
conv layer (block1_conv1, block1_conv2, ...) the HWIO kernel, then the bias
(``../shared/data/weights/SOURCE.md``).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np


def tensor_sha256(arrays: Iterable) -> str:
  """sha256 over each array's little-endian float32 C-contiguous bytes, in order."""
  digest = hashlib.sha256()
  for array in arrays:
    digest.update(np.ascontiguousarray(np.asarray(array), dtype="<f4").tobytes())
  return digest.hexdigest()
