"""JAX's persistent compilation cache: a re-run (or a resumed run) skips XLA compilation."""

from __future__ import annotations

import os
from pathlib import Path

import jax

DEFAULT_DIR = Path.home() / ".cache" / "playbook" / "jax"


def enable(directory: str | os.PathLike | None = None) -> Path:
  """Caches every compiled program under ``directory`` ($PLAYBOOK_JAX_CACHE or ~/.cache/...)."""
  path = Path(directory or os.environ.get("PLAYBOOK_JAX_CACHE") or DEFAULT_DIR)
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  # Small programs compile in well under the default 1 s threshold, but on a 2-core CPU they
  # are still most of a short run's time.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return path
