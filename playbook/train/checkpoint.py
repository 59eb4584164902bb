"""Orbax checkpoints under ``<workdir>/checkpoints/{latest,best}``.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
process killed mid-save leaves the previous checkpoint intact; the half-written directory is
ignored on restore and cleaned up. ``latest`` is what a re-run resumes from; ``best`` (by the
validation metric) is what the test figure and the exporters read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """``latest`` and ``best`` checkpoints of a state pytree plus a JSON ``meta`` dict each."""

  def __init__(self, workdir: str | Path):
    root = Path(workdir).absolute() / "checkpoints"

    def manager(name):
      options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                             enable_async_checkpointing=False,
                                             cleanup_tmp_directories=True)
      return ocp.CheckpointManager(root / name, options=options, item_names=("state", "meta"))

    self.latest, self.best = manager("latest"), manager("best")

  def save(self, which: str, step: int, state: Any, meta: dict) -> None:
    manager = getattr(self, which)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()

  def restore(self, which: str, like: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the newest ``which`` checkpoint, shaped like ``like``; None if none."""
    manager = getattr(self, which)
    step = manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def close(self):
    self.latest.close()
    self.best.close()
