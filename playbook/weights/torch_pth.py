"""PyTorch ``.pth`` state dicts read into numpy, without torch and without running pickled code.

A ``.pth`` file is a pickle whose tensors point at raw storages. Unpickling an arbitrary pickle
runs whatever callables it names, so the unpickler here resolves only the handful of globals a
state dict of dense tensors needs (``_ALLOWED``) and raises ``DataError`` for anything else
before it is called. Two containers are read:

- the zip format (``torch.save`` since 1.6): ``<root>/data.pkl`` plus one file per storage in
  ``<root>/data/<key>``;
- the legacy stream (before 1.6, e.g. ``efficientnet-lite0-57934424.pth``): pickles of a magic
  number, protocol version and system info, then the object, then the list of storage keys, then
  each storage as an int64 element count followed by its bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np

from playbook.data.paths import DataError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass
class _Storage:
  key: str
  dtype: np.dtype
  numel: int
  data: np.ndarray | None = None  # Filled once the storage bytes are read.


@dataclasses.dataclass
class _PendingTensor:
  storage: _Storage
  offset: int
  size: tuple
  stride: tuple

  def materialize(self) -> np.ndarray:
    data = self.storage.data
    if data is None:
      raise DataError(f"storage {self.storage.key} was never written to the file.")
    if not self.size:
      return data[self.offset].copy()
    end = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
    if min(self.size) > 0 and end > data.size:
      raise DataError(f"a tensor of size {self.size} reads past its storage ({data.size} items).")
    strides = tuple(s * data.itemsize for s in self.stride)
    view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, strides, writeable=False)
    return np.array(view)  # A compact copy, independent of the storage.


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _PendingTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
  """Resolves only ``_ALLOWED`` globals; storages become placeholders filled in afterwards."""

  def __init__(self, file, source: str):
    super().__init__(file)
    self.source = source
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise DataError(
          f"{self.source} refers to {module}.{name}, which a tensor state dict never needs; it "
          "was not loaded (unpickling it could run arbitrary code). Use a plain state dict "
          "saved with torch.save(model.state_dict(), path).")
    return _ALLOWED[(module, name)]

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise DataError(f"{self.source} has an unsupported persistent id {pid!r:.80}.")
    _, storage_type, key, _location, numel, *view = pid
    key = str(key)
    storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, int(numel)))
    if view and view[0] is not None:  # Legacy storage views: (view_key, offset, view_size).
      raise DataError(f"{self.source} uses legacy storage views, which are not supported.")
    return storage


def _materialize(obj):
  if isinstance(obj, _PendingTensor):
    return obj.materialize()
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _load_zip(path: Path) -> object:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
      raise DataError(f"{path} is a zip without one data.pkl; not a torch.save file.")
    root = pickles[0][: -len("data.pkl")]
    if root + "byteorder" in names and archive.read(root + "byteorder") != b"little":
      raise DataError(f"{path} was saved big-endian, which is not supported.")
    unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), str(path))
    obj = unpickler.load()
    for key, storage in unpickler.storages.items():
      raw = archive.read(f"{root}data/{key}")
      storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
  return obj


def _load_legacy(path: Path) -> object:
  with open(path, "rb") as f:
    header = _StateDictUnpickler(f, str(path))
    if header.load() != LEGACY_MAGIC:
      raise DataError(f"{path} is neither a torch zip file nor a legacy torch pickle.")
    if header.load() != LEGACY_PROTOCOL:
      raise DataError(f"{path} has an unknown legacy torch protocol version.")
    sys_info = header.load()
    if not sys_info.get("little_endian", True):
      raise DataError(f"{path} was saved big-endian, which is not supported.")
    unpickler = _StateDictUnpickler(f, str(path))
    obj = unpickler.load()
    keys = _StateDictUnpickler(f, str(path)).load()
    for key in keys:
      storage = unpickler.storages[str(key)]
      (numel,) = np.frombuffer(f.read(8), "<i8")
      if numel != storage.numel:
        raise DataError(f"{path}: storage {key} holds {numel} items, expected {storage.numel}.")
      raw = f.read(numel * storage.dtype.itemsize)
      if len(raw) != numel * storage.dtype.itemsize:
        raise DataError(f"{path} is truncated (storage {key}); replace it with the original.")
      storage.data = np.frombuffer(raw, storage.dtype)
  return obj


def read_torch_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The state dict in ``path`` as {name: numpy array}, in the file's order.

  Raises ``DataError`` for a file that is missing, truncated, not a torch file, or that names
  anything beyond tensors and ordered dicts (nothing it names is ever called).
  """
  path = Path(path)
  if not path.is_file():
    raise DataError(f"Missing weight file {path}.")
  try:
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
  except (pickle.UnpicklingError, EOFError, KeyError, ValueError, AttributeError) as e:
    raise DataError(f"{path} is not a readable torch state dict ({type(e).__name__}: {e}).") from e
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]  # Training checkpoints often wrap the state dict.
  if not isinstance(obj, dict):
    raise DataError(f"{path} holds a {type(obj).__name__}, not a state dict.")
  return dict(_materialize(obj))
