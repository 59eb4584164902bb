"""The run directory: the resolved config, the check that a re-run is the same run, results."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import ml_collections

# Settings that may differ between a run and its resumption: where the data is read from, how
# progress is shown and into how many calls an epoch is split change nothing that the run
# computes, and the parameter layout over the devices only the rounding (a checkpoint restores
# onto any device count and layout).
RESUME_MAY_CHANGE = ("data.dir", "progress", "parallel.fsdp", "train.steps_per_call")


class RunDirError(RuntimeError):
  """The workdir belongs to another study or to an incompatible config."""


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def _as_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def prepare(workdir: str | Path, config: ml_collections.ConfigDict, *,
            write: bool | None = None) -> Path:
  """Creates ``workdir`` and writes ``config.json``, or checks a re-run matches the stored one.

  Every process checks; only ``write`` (default: JAX process 0) writes.
  """
  if write is None:
    import jax
    write = jax.process_index() == 0
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  new = _as_json(config)
  if path.exists():
    old = json.loads(path.read_text())
    if old.get("study") != new.get("study"):
      raise RunDirError(
          f"Workdir {workdir} holds a run of study {old.get('study')!r}, not {new.get('study')!r}. "
          "Use a new --workdir for this study.")
    old_flat, new_flat = _flatten(old), _flatten(new)
    changed = sorted(k for k in old_flat.keys() | new_flat.keys()
                     if k not in RESUME_MAY_CHANGE and old_flat.get(k) != new_flat.get(k))
    if changed:
      detail = ", ".join(f"{k}: {old_flat.get(k)!r} -> {new_flat.get(k)!r}" for k in changed[:8])
      raise RunDirError(
          f"Workdir {workdir} holds a run with a different config ({detail}); resuming it with "
          "this config would mix two experiments. Use a new --workdir, or the stored settings.")
  if not write:
    return workdir
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)
  return workdir


def environment() -> dict:
  """Where a result was measured: device, host and library versions."""
  import flax
  import jax
  import optax
  return {
      "device": str(jax.devices()[0].device_kind),
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "platform": jax.default_backend(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
  }


def write_results(workdir: str | Path, results: dict) -> Path:
  path = Path(workdir) / "results.json"
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)
  return path
