"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.), read into numpy.

An IDX file is a big-endian header — two zero bytes, a type code (0x08 = uint8) and the number of
dimensions — then one uint32 per dimension, then the values. Images: magic 2051, (n, 28, 28);
labels: magic 2049, (n,).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from playbook.data.paths import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx_gz(path: Path, *, magic: int, shape_tail: tuple[int, ...], source: str) -> np.ndarray:
  """Reads a gzipped IDX file, checking the magic number, the shape and the payload length."""
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"Data file {path} is not a readable gzip file ({e}). Replace it; {source}.")
  if len(raw) < 4:
    raise DataError(f"Data file {path} is too short for an IDX header. Replace it; {source}.")
  (found_magic,) = struct.unpack(">I", raw[:4])
  if found_magic != magic:
    kinds = {IMAGES_MAGIC: "an images file", LABELS_MAGIC: "a labels file"}
    raise DataError(
        f"Data file {path} is {kinds.get(found_magic, f'not an IDX file (magic {found_magic})')}"
        f", where {kinds[magic]} belongs (IDX magic {magic}). Put the right file in this place; "
        f"{source}.")
  ndim = len(shape_tail) + 1
  header_len = 4 + 4 * ndim
  if len(raw) < header_len:
    raise DataError(f"Data file {path} is too short for an IDX header. Replace it; {source}.")
  dims = struct.unpack(f">{ndim}I", raw[4:header_len])
  if tuple(dims[1:]) != shape_tail:
    raise DataError(
        f"Data file {path} holds arrays of shape {dims[1:]}, expected {shape_tail}. {source}.")
  expected = int(np.prod(dims))
  payload = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
  if payload.size != expected:
    raise DataError(
        f"Data file {path} holds {payload.size} values, its header promises {expected}. "
        f"Replace it; {source}.")
  return payload.reshape(dims)


def read_idx(path: Path) -> np.ndarray:
  """Any uint8 IDX file, gzipped or raw, its shape from its own header (``launch.predict``'s
  inputs); a DataError names a file that is not one."""
  path = Path(path)
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} is not a readable IDX file ({e}).") from None
  if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
    raise DataError(f"{path} is not a uint8 IDX file (its header starts {raw[:4].hex()}, not "
                    "00000803 for images or 00000801 for labels).")
  ndim = raw[3]
  header_len = 4 + 4 * ndim
  dims = struct.unpack(f">{ndim}I", raw[4:header_len]) if len(raw) >= header_len else ()
  payload = np.frombuffer(raw, dtype=np.uint8, offset=min(header_len, len(raw)))
  if not dims or payload.size != int(np.prod(dims)):
    raise DataError(f"{path} is a truncated IDX file: its header promises shape {dims}.")
  return payload.reshape(dims)
