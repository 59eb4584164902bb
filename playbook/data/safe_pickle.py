"""A restricted unpickler: loads numpy arrays in dicts and lists, refuses everything else.

``pickle.load`` runs whatever a file tells it to (``__reduce__`` can name ``os.system``). The
official CIFAR batches only need three globals to rebuild their arrays, so ``find_class`` allows
exactly those and raises before any other object is even looked up: no code of a crafted pickle
runs. Containers, strings, bytes and numbers need no globals at all.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
from numpy._core import multiarray

# (module, name) -> object: the globals numpy's ndarray pickles reference (numpy < 2 wrote
# 'numpy.core.multiarray', numpy >= 2 writes 'numpy._core.multiarray').
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle names a global outside ``ALLOWED_GLOBALS``; nothing of it was executed."""


class RestrictedUnpickler(pickle.Unpickler):
  def find_class(self, module: str, name: str):
    try:
      return ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise UnsafePickleError(
          f"refused to load global {module}.{name}: only numpy arrays in dicts/lists are "
          "allowed in a data pickle") from None


def safe_loads(data: bytes, *, encoding: str = "bytes"):
  """``pickle.loads`` that only rebuilds plain containers and numpy arrays (of no object dtype).

  ``encoding='bytes'`` reads Python 2 pickles (the CIFAR batches) with their str as bytes.
  """
  obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
  _check_no_object_arrays(obj)
  return obj


def _check_no_object_arrays(obj) -> None:
  if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
    raise UnsafePickleError("refused an object-dtype array in a data pickle")
  if isinstance(obj, dict):
    for value in obj.values():
      _check_no_object_arrays(value)
  elif isinstance(obj, (list, tuple)):
    for value in obj:
      _check_no_object_arrays(value)
