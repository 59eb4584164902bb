"""A finished (or paused) run's resolved config and best weights, read from its workdir.

Export reads files only, never a live training process: ``DIR/config.json`` (written by
``rundir.prepare``) and ``DIR/checkpoints/best`` (written by ``fit``; orbax renames a checkpoint
into place only when complete, so what is there is whole). Only ``params`` and ``model_state``
are read (orbax partial restore): the optimiser need not be rebuilt, and the arrays land on the
CPU whatever devices trained them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from playbook.export.exportable import ExportError


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
  path = Path(workdir) / "config.json"
  if not path.is_file():
    raise ExportError(f"{path} is missing: {workdir} is not a run directory. Export reads a run "
                      "made by `python -m launch.main --config=... --workdir=DIR`; pass that DIR.")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def run_file(workdir: str | Path, name: str) -> Path:
  """``DIR/name``, a file the study's run writes beside its checkpoints (its vocabulary, class
  names, feature statistics), or an error naming it."""
  path = Path(workdir) / name
  if not path.is_file():
    raise ExportError(f"{path} is missing: the run writes it before training, so {workdir} is not "
                      "a whole run of this study. Pass the workdir of a finished run (or train "
                      "one with `python -m launch.main --config=... --workdir=DIR`).")
  return path


def best_checkpoint_step(workdir: str | Path) -> int:
  """The step of ``DIR/checkpoints/best``, or an error saying there is none."""
  directory = Path(workdir).absolute() / "checkpoints" / "best"
  steps = sorted(int(p.name) for p in directory.glob("*") if p.name.isdigit()) \
      if directory.is_dir() else []
  if not steps:
    raise ExportError(f"No best checkpoint in {directory}: the run has not finished an epoch yet "
                      "(fit saves 'best' after each epoch whose validation metric improved). "
                      "Train it first, or pass the workdir of a finished run.")
  return steps[-1]


def restore_best(workdir: str | Path, abstract_variables: dict, *, num_seeds: int = 1,
                 seed_index: int = 0) -> tuple[dict, dict]:
  """(variables, meta) of the best checkpoint: ``{'params': ..., **model_state}`` as numpy.

  ``abstract_variables`` is ``jax.eval_shape`` of the model's ``init`` (one seed); a run of
  ``num_seeds`` seeds stored them stacked, and ``seed_index`` picks one.
  """
  if not 0 <= seed_index < num_seeds:
    raise ExportError(f"seed_index={seed_index}, but the run trained {num_seeds} seed(s): use "
                      f"0..{num_seeds - 1}.")
  step = best_checkpoint_step(workdir)
  directory = Path(workdir).absolute() / "checkpoints" / "best"
  params = abstract_variables["params"]
  model_state = {k: v for k, v in abstract_variables.items() if k != "params"}
  stacked = lambda a: jax.ShapeDtypeStruct(((num_seeds,) if num_seeds > 1 else ()) + a.shape,
                                           a.dtype)
  like = jax.tree.map(stacked, {"params": params, "model_state": model_state})
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=cpu), like)
  options = ocp.CheckpointManagerOptions(create=False)
  with ocp.CheckpointManager(directory, options=options, item_names=("state", "meta")) as manager:
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(item=like, restore_args=restore_args,
                                       partial_restore=True),
          meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise ExportError(f"The best checkpoint {directory / str(step)} does not hold the "
                        f"model its config.json describes ({type(e).__name__}: {e}).") from e
  state: dict[str, Any] = jax.tree.map(jax.device_get, restored.state)
  if num_seeds > 1:
    state = jax.tree.map(lambda a: a[seed_index], state)
  return {"params": state["params"], **state["model_state"]}, dict(restored.meta)
