"""Where the data lives, and the one error type every reader raises.

The project reads data through one setting: ``PLAYBOOK_DATA_DIR`` (or the ``--data_dir`` flag,
which ``launch.main`` copies into ``config.data.dir``). Nothing is ever downloaded behind the
user's back and nothing is substituted: a missing or broken file is a ``DataError`` that names the
file, what is wrong with it, and where the right one comes from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_VAR = "PLAYBOOK_DATA_DIR"


class DataError(RuntimeError):
  """A data file is missing, truncated or corrupt; the message says which and how to fix it."""


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
  """The data root: the explicit argument, else $PLAYBOOK_DATA_DIR, else an error."""
  root = data_dir or os.environ.get(ENV_VAR)
  if not root:
    raise DataError(
        f"No data directory given. Set {ENV_VAR}=/path/to/data (or pass --data_dir) to a folder "
        "holding e.g. mnist/train-images-idx3-ubyte.gz, or use --config.data.source=tfds when "
        "online.")
  root = Path(root).expanduser()
  if not root.is_dir():
    raise DataError(f"Data directory {root} does not exist (from --data_dir or ${ENV_VAR}).")
  return root


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def verified_file(path: Path, *, size: int, sha256: str, source: str) -> Path:
  """Returns ``path`` after checking it exists and has the published size and sha256.

  ``source`` says where the right file comes from; it goes into every error message.
  """
  if not path.is_file():
    raise DataError(f"Missing data file {path}. Put the original file there; {source}.")
  actual_size = path.stat().st_size
  if actual_size != size:
    what = "truncated" if actual_size < size else "too large"
    raise DataError(
        f"Data file {path} is {what}: {actual_size} bytes, expected {size}. Replace it with the "
        f"original file; {source}.")
  actual_sha = sha256_of(path)
  if actual_sha != sha256:
    raise DataError(
        f"Data file {path} is corrupt: sha256 {actual_sha}, expected {sha256}. Replace it with "
        f"the original file; {source}.")
  return path
