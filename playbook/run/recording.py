"""Recording finished runs into ``results/<study>/<machine>.json`` (``launch.report --add DIR`` and
``--add-gpu-json FILE``): a run's own results.json and config.json, verbatim, with the command
that makes it and the machine it ran on. A run of the same config and seed replaces the one
recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from playbook.run.commands import config_from_command, rebuild_command, relative_workdir
from playbook.run.results import (RESULTS_DIR, ROOT, ReportError, flatten, group_key, machine,
                                  metric_of, norm, results_path)


def _store(entry: dict, *, replace: bool, root: Path) -> tuple[Path, list[str]]:
  """Adds ``entry`` (one run) to its study-and-machine file; returns the path and messages."""
  study, mach = entry["study"], entry["machine"]
  path = results_path(study, mach["slug"], root)
  record = {"study": study, "machine": mach, "runs": []}
  if path.exists() and not replace:
    record = json.loads(path.read_text())
  run = entry["run"]
  key, seed = group_key(run), run["config"].get("seed")
  kept = [r for r in record["runs"] if not (group_key(r) == key and r["config"].get("seed") == seed)]
  messages = []
  if len(kept) < len(record["runs"]):
    messages.append(f"replaced the recorded run of seed {seed} with the same config")
  others = {group_key(r) for r in kept} - {key}
  if others:
    messages.append(f"{len(others)} other config(s) of {study} stay recorded for this machine, "
                    "each a row of its own (--replace drops them)")
  name, values, unit, _ = metric_of(run["results"])
  seed0, n = run["config"].get("seed") or 0, run["config"].get("num_seeds") or 1
  env = run["results"].get("environment", {})
  run["summary"] = {  # For a reader of the file; the tables are computed from "results".
      "metric": f"{name} ({unit})" if unit else name, "per_seed": values,
      "seeds": list(range(seed0, seed0 + n)), "wall_seconds": run["results"].get("wall_seconds"),
      "versions": {k: env[k] for k in ("jax", "flax", "optax", "python") if k in env}}
  record["runs"] = kept + [run]
  record["machine"] = mach
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
  return path, messages


def add_run(workdir: str | Path, *, command: str | None = None, replace: bool = False,
            root: Path = RESULTS_DIR) -> tuple[Path, list[str]]:
  """Records a finished run directory: its results.json and config.json, verbatim, with the
  command that makes it and the machine it ran on."""
  from playbook.run import rundir
  workdir = Path(workdir)
  results_file, config_file = workdir / rundir.RESULTS_FILE, workdir / rundir.CONFIG_FILE
  for f in (config_file, results_file):
    if not f.is_file():
      raise ReportError(f"{f} is missing: record a finished run (launch.main writes "
                        f"{rundir.RESULTS_FILE} last)")
  results, config = json.loads(results_file.read_text()), json.loads(config_file.read_text())
  study = results.get("study") or config.get("study")
  if not study:
    raise ReportError(f"{results_file} names no study")
  notes = []
  env = results.get("environment", {})
  fallback = None
  if env.get("platform", "cpu") == "cpu" and not env.get("cpu"):
    fallback = rundir.cpu_model()
    notes.append("environment.cpu was missing from results.json (the run predates it) and "
                 "was filled at --add time with this machine's CPU")
  mach = machine(env, cpu_fallback=fallback)
  if command is None:
    command = rebuild_command(config, relative_workdir(workdir), results)
    command_source = "rebuilt from config.json"
  else:
    _, parsed = config_from_command(command)
    if parsed.get("study") != study:
      raise ReportError(f"--command runs study {parsed.get('study')!r}, the run is {study!r}")
    command_source = "given"
  run = {"added_from": relative_workdir(workdir), "command": command,
         "command_source": command_source, "config": config, "results": results,
         "notes": notes}
  export_report = workdir / "export" / "report.json"
  if export_report.is_file():  # launch.export's parity and accuracy figures, when it ran.
    run["export"] = json.loads(export_report.read_text())
  path, messages = _store({"study": study, "machine": mach, "run": run}, replace=replace,
                          root=root)
  return path, notes + messages


def add_gpu_json(path: str | Path, *, command: str, replace: bool = False,
                 root: Path = RESULTS_DIR) -> list[tuple[Path, list[str]]]:
  """Records the rows of a device JSON (``benchmarks/device/collect.py``'s format: a run's
  results with its model/optim/train config) whose config is the one ``command`` gives, whatever
  their seed; one run per seed, the last row of a seed winning."""
  path = Path(path)
  rows = json.loads(path.read_text())
  study_file, built = config_from_command(command)
  study = built.get("study", study_file)
  built_flat = flatten(built)
  chosen = {}
  for index, row in enumerate(rows):
    if row.get("study") != study:
      continue
    recorded = {k: v for k, v in flatten({s: row["config"].get(s) or {}
                                          for s in ("model", "optim", "train")}).items()}
    if all(k in built_flat and norm(built_flat[k]) == norm(v) for k, v in recorded.items()):
      chosen[row["config"].get("seed")] = (index, row)
  if not chosen:
    raise ReportError(f"no row of {path} has the config of {command!r}")
  out = []
  for seed, (index, row) in sorted(chosen.items()):
    results = {k: v for k, v in row.items() if k not in ("call", "run", "config")}
    results.setdefault("study", study)
    config = dict(row["config"], study=study)
    seeded = command if seed == built.get("seed") else f"{command} --config.seed={seed}"
    run = {"added_from": f"{_repo_relative(path)}[{index}]", "command": seeded,
           "command_source": "given", "config": config, "results": results,
           "notes": [f"row {index} of {_repo_relative(path)} ({row.get('call')}, run "
                     f"{row.get('run')}): the keys results.json and config.json had there"]}
    mach = machine(results.get("environment", {}))
    out.append(_store({"study": study, "machine": mach, "run": run}, replace=replace and not out,
                      root=root))
  return out


def _repo_relative(path: Path) -> str:
  try:
    return str(path.resolve().relative_to(ROOT))
  except ValueError:
    return path.name
