"""Where the data lives, and the one error type every reader raises.

The data root is ``--data_dir`` (``config.data.dir``), else ``PLAYBOOK_DATA_DIR``, else the cache,
``$XDG_CACHE_HOME/playbook`` (``~/.cache/playbook``). A root the user names is only ever read; a
file missing from it is looked for in the cache and, when absent there too, fetched into the cache
(``playbook.data.fetch``), verified against the registry (``playbook.data.sources``). Nothing is
substituted: a missing or broken file is a ``DataError`` that names the file, what is wrong with it,
and how to get the right one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_VAR = "PLAYBOOK_DATA_DIR"
CACHE_NAME = "playbook"


class DataError(RuntimeError):
  """A data file is missing, truncated or corrupt; the message says which and how to fix it."""


def cache_root() -> Path:
  """``$XDG_CACHE_HOME/playbook`` (``~/.cache/playbook``): the default data root, and the only
  folder the fetcher writes into. It need not exist yet."""
  base = os.environ.get("XDG_CACHE_HOME", "")
  if not os.path.isabs(base):  # The XDG spec: a relative value is invalid and ignored.
    base = os.path.join("~", ".cache")
  return Path(base).expanduser() / CACHE_NAME


def named_root(data_dir: str | os.PathLike | None = None) -> Path | None:
  """The root the user named (the argument, else $PLAYBOOK_DATA_DIR), checked; None if none."""
  root = data_dir or os.environ.get(ENV_VAR)
  if not root:
    return None
  root = Path(root).expanduser()
  if not root.is_dir():
    raise DataError(f"Data directory {root} does not exist (from --data_dir or ${ENV_VAR}). Point "
                    f"it at an existing folder, or unset it to use the cache {cache_root()}.")
  return root


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
  """The data root: the explicit argument, else $PLAYBOOK_DATA_DIR, else the cache."""
  return named_root(data_dir) or cache_root()


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
  """Where a data file is looked for, in order: the named root (if any), then the cache."""
  named = named_root(data_dir)
  cache = cache_root()
  return [named, cache] if named and named.resolve() != cache.resolve() else [cache]


def keras_models_dir() -> Path:
  """Keras's download cache, ``$KERAS_HOME/models`` (``~/.keras/models``): weight files found
  there are used in place."""
  return Path(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")).expanduser() / "models"


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
