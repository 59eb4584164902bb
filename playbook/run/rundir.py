"""The run directory, one API for every task: create, lock and check it; read it back; finish it.

    DIR/config.json      the resolved config (``prepare``; ``read_config``)
    DIR/.lock            held (fcntl) while a process trains in DIR
    DIR/checkpoints/     ``latest`` (resume) and ``best`` (``restore_best``), from ``fit``
    DIR/metrics.jsonl    per-step and per-epoch metrics (``playbook.run.writer``)
    DIR/plots/*.png      figures
    DIR/results.json     the run's figures, written last (``finish``)
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

import ml_collections

# Settings that may differ between a run and its resumption: where the data is read from, how
# progress is shown and into how many calls an epoch is split change nothing that the run
# computes, and the parameter layout over the devices only the rounding (a checkpoint restores
# onto any device count and layout).
RESUME_MAY_CHANGE = ("data.dir", "progress", "parallel.fsdp", "train.steps_per_call")
CONFIG_FILE, RESULTS_FILE, LOCK_FILE = "config.json", "results.json", ".lock"

# Locks this process holds, by workdir: an open file whose fcntl lock the kernel releases when the
# process ends, however it ends, so a killed run never blocks its resumption.
_held: dict[Path, Any] = {}


class RunDirError(RuntimeError):
  """The workdir is held by another process, belongs to another run, or is not a run directory."""


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def lock(workdir: Path) -> None:
  """Takes ``workdir``'s lock for this process, or refuses at once naming the holder."""
  workdir = workdir.absolute()
  if workdir in _held:
    return
  f = open(workdir / LOCK_FILE, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise RunDirError(f"Workdir {workdir} is in use by {holder}. Wait for it to finish (a re-run "
                      "then resumes), or use another --workdir.") from None
  f.seek(0)
  f.truncate()
  f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
  f.flush()
  _held[workdir] = f


def release(workdir: Path) -> None:
  """Lets go of ``workdir``'s lock (a finished run; the kernel does it anyway at exit)."""
  f = _held.pop(Path(workdir).absolute(), None)
  if f is not None:
    f.close()


def has_progress(workdir: Path) -> bool:
  """Whether ``workdir`` holds anything a re-run would build on: a checkpoint or results."""
  latest = workdir / "checkpoints" / "latest"
  return (workdir / RESULTS_FILE).exists() or (
      latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir()))


def check_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
  """Refuses a config that is not the one ``workdir`` was started with (resuming would mix them).

  A workdir whose run stopped before its first checkpoint holds nothing to mix: its config is
  replaced, so a run that failed at start never blocks the corrected command.
  """
  path = workdir / CONFIG_FILE
  if not path.exists() or not has_progress(workdir):
    return
  try:
    old = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise RunDirError(f"{path} is not valid JSON ({e}) while {workdir} holds checkpoints or "
                      "results; the run directory is damaged. Use a new --workdir.") from None
  new = json.loads(config.to_json())
  if "task" not in old:
    raise RunDirError(f"Workdir {workdir} holds a run made before configs named their task; "
                      "it cannot be resumed. Use a new --workdir.")
  if (old.get("task"), old.get("study")) != (new.get("task"), new.get("study")):
    raise RunDirError(f"Workdir {workdir} holds a run of study {old.get('study')!r}, not "
                      f"{new.get('study')!r}. Use a new --workdir for this study.")
  old_flat, new_flat = _flatten(old), _flatten(new)
  changed = sorted(k for k in old_flat.keys() | new_flat.keys()
                   if k not in RESUME_MAY_CHANGE and old_flat.get(k) != new_flat.get(k))
  if changed:
    detail = ", ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in changed[:8])
    raise RunDirError(
        f"Workdir {workdir} holds a run with a different config ({detail}); resuming it with "
        "this config would mix two experiments. Use a new --workdir, or the stored settings.")


def _write_json(path: Path, obj: dict) -> Path:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)
  return path


def prepare(workdir: str | Path, config: ml_collections.ConfigDict, *,
            write: bool | None = None) -> Path:
  """Creates and locks ``workdir`` and writes ``config.json``, or checks a re-run matches it.

  Call it only after the config is validated: a refused config leaves no trace. Every process
  checks; only ``write`` (default: JAX process 0) creates, locks and writes.
  """
  if write is None:
    import jax
    write = jax.process_index() == 0
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise RunDirError(f"--workdir {workdir} is a file, not a folder. Name a new or existing "
                      "run directory.")
  if write:
    try:
      workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise RunDirError(f"Cannot create the workdir {workdir}: {e.strerror}. Name a folder you "
                        "can write to.") from None
    lock(workdir)
  check_config(workdir, config)
  if write:
    _write_json(workdir / CONFIG_FILE, json.loads(config.to_json()))
  return workdir


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """The resolved config a run in ``workdir`` was started with."""
  path = Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise RunDirError(f"{workdir} is not a run directory (no {CONFIG_FILE}). Pass the --workdir "
                      "of a run made by `python -m launch.main --config=... --workdir=DIR`.")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise RunDirError(f"{path} is not valid JSON ({e}); the run directory is damaged.") from None


def run_file(workdir: str | Path, name: str) -> Path:
  """``DIR/name``, a file a run writes beside its checkpoints (its vocabulary, feature
  statistics), or an error naming it."""
  path = Path(workdir) / name
  if not path.is_file():
    raise RunDirError(f"{path} is missing: the run writes it before training, so {workdir} is "
                      "not a whole run of this study. Pass the workdir of a finished run.")
  return path


def best_checkpoint_step(workdir: str | Path) -> int:
  """The step of ``DIR/checkpoints/best``, or an error saying there is none."""
  directory = Path(workdir).absolute() / "checkpoints" / "best"
  steps = sorted(int(p.name) for p in directory.glob("*") if p.name.isdigit()) \
      if directory.is_dir() else []
  if not steps:
    raise RunDirError(f"No best checkpoint in {directory}: the run has not finished an epoch yet "
                      "(fit saves 'best' after each epoch whose validation metric improved). "
                      "Train it first, or pass the workdir of a finished run.")
  return steps[-1]


def restore_best(workdir: str | Path, abstract_variables: dict, *, num_seeds: int = 1,
                 seed_index: int = 0) -> tuple[dict, dict]:
  """(variables, meta) of the best checkpoint: ``{'params': ..., **model_state}`` as numpy on
  the CPU, whatever devices trained it. Only params and model state are read (orbax partial
  restore), so the optimiser need not be rebuilt.

  ``abstract_variables`` is ``jax.eval_shape`` of the model's ``init`` (one seed); a run of
  ``num_seeds`` seeds stored them stacked, and ``seed_index`` picks one.
  """
  import jax
  import orbax.checkpoint as ocp
  if not 0 <= seed_index < num_seeds:
    raise RunDirError(f"seed_index={seed_index}, but the run trained {num_seeds} seed(s): use "
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
      raise RunDirError(f"The best checkpoint {directory / str(step)} does not hold the "
                        f"model its config.json describes ({type(e).__name__}: {e}).") from e
  state = jax.tree.map(jax.device_get, restored.state)
  if num_seeds > 1:
    state = jax.tree.map(lambda a: a[seed_index], state)
  return {"params": state["params"], **state["model_state"]}, dict(restored.meta)


def environment() -> dict:
  """Where a result was measured: device, CPU, host and library versions."""
  import flax
  import jax
  import optax
  return {
      "device": str(jax.devices()[0].device_kind),
      "cpu": cpu_model(),
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "platform": jax.default_backend(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
  }


def cpu_model() -> str:
  """The CPU's model name and its widest vector units (2-core EPYCs differ: AVX2 or AVX-512
  with BF16), so a figure says which machine it came from."""
  try:
    info = Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or platform.machine()
  name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
               if line.startswith("model name")), platform.machine())
  flags = next((line.split(":", 1)[1].split() for line in info.splitlines()
                if line.startswith("flags")), [])
  units = [u for u in ("avx512_bf16", "avx512f", "avx2") if u in flags]
  return f"{name} ({units[0] if units else 'no AVX2'})"


def finished(workdir: str | Path, config: ml_collections.ConfigDict) -> dict | None:
  """The results of a run of ``config`` that has already finished in ``workdir``
  (``results.json`` is written last), after saying so; None when there is still work to do.

  Called before any data are read: a finished run is answered at once. Its config must be the
  one asked for (``prepare`` checks), so a re-run would train nothing and only overwrite the
  figures, the wall time among them, with a re-evaluation's."""
  path = Path(workdir) / RESULTS_FILE
  try:
    results = json.loads(path.read_text())
  except (OSError, ValueError):  # Absent, or cut short: the run goes on and writes it anew.
    return None
  prepare(workdir, config)  # Refuses another config, as resuming would.
  release(Path(workdir))
  print(f"{workdir} holds this run, finished: nothing to train. Results in {path}; a new "
        "--workdir trains it again.")
  return results


def finish(workdir: str | Path, results: dict, *, start: float, summary: str) -> dict:
  """Writes ``results.json`` (with wall time and environment) and prints the one summary line.

  ``start``: ``time.perf_counter()`` when the run began. Returns the results as written.
  """
  results = dict(results, wall_seconds=time.perf_counter() - start, environment=environment())
  path = _write_json(Path(workdir) / RESULTS_FILE, results)
  release(workdir)
  print(f"{summary}; wall {results['wall_seconds']:.0f} s; results in {path}")
  return results
