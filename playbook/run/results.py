"""Figures that cannot drift: ``results/<study>/<machine>.json``, copied from finished runs by a
command, and every table of results in the README and ``docs/studies/`` printed from them.

    results/reference.json             literature constants: the seed notebooks' figures and the
                                       best public figures, with their sources
    results/<study>/<machine>.json     {"study", "machine": {...}, "runs": [{"command", "results",
                                       "config", "added_from", ...}, ...]}: a run's own
                                       results.json and config.json, verbatim

``launch/report.py`` is the command (``--add DIR``, ``--add-gpu-json FILE``, the tables,
``--write``, ``--images``). Runs of one study on one machine whose configs differ only in the seed
form one group, and its headline is the mean ± std over every seed of the group (std with
ddof=1, and n); runs with another config are another group, and another row.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
REFERENCE_FILE = "reference.json"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
STUDY_BEGIN = "<!-- results:{study}:begin -->"
STUDY_END = "<!-- results:{study}:end -->"

# Config keys that say where or how a run was watched, not what it computed (rundir's
# RESUME_MAY_CHANGE, plus the progress bar): left out of rebuilt commands and of group keys.
NOT_RECIPE = ("data.dir", "progress", "parallel.fsdp", "train.steps_per_call")


class ReportError(ValueError):
  """A run directory, results file or command that cannot be recorded; the message says why."""


# ------------------------------------------------------------------------------------ machines


def slugify(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine(env: dict, *, cpu_fallback: str | None = None) -> dict:
  """The machine a run's ``environment`` describes: a label for tables and a slug for files."""
  platform = env.get("platform", "cpu")
  out = {k: env[k] for k in ("platform", "device", "cpu", "cpu_count", "num_devices",
                             "num_processes") if k in env}
  if platform != "cpu":
    n = env.get("num_devices", 1)
    label = f"{n} x {env.get('device', platform)}" if n > 1 else str(env.get("device", platform))
  else:
    cpu = env.get("cpu") or cpu_fallback
    if cpu is None:
      raise ReportError("the run's environment names no CPU model (results.json predates the "
                        "'cpu' field) and the run was not made on this machine")
    out["cpu"] = cpu
    label = f"{cpu}, {env.get('cpu_count', '?')} CPUs"
  out["label"] = label
  out["slug"] = slugify(label.replace(" x ", "x-"))
  return out


# ------------------------------------------------------------------------------------- commands


def flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _norm(value):
  """JSON-comparable form: tuples and lists alike."""
  return json.loads(json.dumps(value))


def _flag_value(value) -> str:
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(_flag_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def default_config(study: str, arg: str = "") -> dict:
  """``experiments/<study>.py``'s ``get_config(arg)`` as plain JSON."""
  try:
    module = importlib.import_module(f"experiments.{study}")
  except ModuleNotFoundError:
    raise ReportError(f"there is no experiments/{study}.py to rebuild the command from; pass "
                      "--command") from None
  return json.loads(module.get_config(arg).to_json())


def config_from_command(command: str) -> tuple[str, dict]:
  """(study file stem, resolved config) of a ``python -m launch.main`` command, parsed the way
  launch.main parses it (ml_collections' config flags), without running anything."""
  from absl import flags
  from ml_collections import config_flags
  args = shlex.split(command)
  if "launch.main" not in args:
    raise ReportError(f"not a `python -m launch.main ...` command: {command!r}")
  args = args[args.index("launch.main") + 1:]
  keep = [a for a in args if a.startswith("--config")]
  spec = next((a.split("=", 1)[1] for a in keep if a.startswith("--config=")), None)
  if spec is None:
    raise ReportError(f"the command names no --config=experiments/<study>.py: {command!r}")
  values = flags.FlagValues()
  argv = ["report", *keep]
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  try:
    values(argv)
  except Exception as e:  # absl wraps ml_collections' errors in several types.
    raise ReportError(f"the command's config does not parse: {e}") from None
  return Path(spec.split(":")[0]).stem, json.loads(values["config"].value.to_json())


def _auto_resolved(key: str, value, default, results: dict | None) -> bool:
  """Whether a run's ``data.source`` is what today's default 'auto' resolved to for it (its
  results name the source they read): the same files, so no override is needed."""
  return (key == "data.source" and default == "auto" and results is not None
          and f"({value})" in str(results.get("data_copy", results.get("data", ""))))


def rebuild_command(config: dict, workdir: str, results: dict | None = None) -> str:
  """The launch.main command that gives ``config``: the study's config file and an override for
  every recipe value that differs from its defaults, checked by parsing it back."""
  study = config.get("study")
  if not study:
    raise ReportError("config.json names no study; pass --command")
  default = flatten(default_config(study))
  run = flatten(config)
  overrides, same = [], set()
  for key, value in sorted(run.items()):
    if key in NOT_RECIPE or key == "task":
      continue
    if key in default and _auto_resolved(key, value, default[key], results):
      same.add(key)
      continue
    if key not in default:
      raise ReportError(f"config.json's {key} is not a key of experiments/{study}.py today; "
                        "pass --command")
    if _norm(value) != _norm(default[key]):
      overrides.append(f"--config.{key}={_flag_value(value)}")
  command = " ".join(["python -m launch.main", f"--config=experiments/{study}.py",
                      f"--workdir={workdir}", *map(shlex.quote, overrides)])
  _, parsed = config_from_command(command)
  parsed = flatten(parsed)
  wrong = [k for k, v in run.items() if k not in NOT_RECIPE and k not in same and k in parsed
           and _norm(parsed[k]) != _norm(v)]
  if wrong:
    raise ReportError(f"the rebuilt command ({command}) does not reproduce config.json "
                      f"({', '.join(wrong[:5])}); pass --command")
  return command


def relative_workdir(workdir: Path) -> str:
  """How a README names a workdir: relative to the repository, else runs/<name>."""
  try:
    return str(workdir.resolve().relative_to(ROOT))
  except ValueError:
    return f"runs/{workdir.resolve().name}"


# ----------------------------------------------------------------------------------- recording


def group_key(run: dict) -> str:
  """Runs with the same key differ only in their seed."""
  flat = {k: v for k, v in flatten(run["config"]).items()
          if k not in NOT_RECIPE and k not in ("seed", "task")}
  return json.dumps(_norm(flat), sort_keys=True)


def results_path(study: str, slug: str, root: Path = RESULTS_DIR) -> Path:
  return root / study / f"{slug}.json"


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
    if all(k in built_flat and _norm(built_flat[k]) == _norm(v) for k, v in recorded.items()):
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


# ------------------------------------------------------------------------------------- reading


def reference(root: Path = RESULTS_DIR) -> dict:
  return json.loads((root / REFERENCE_FILE).read_text())


def records(root: Path = RESULTS_DIR) -> list[dict]:
  """Every results/<study>/<machine>.json."""
  return [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))]


@dataclasses.dataclass
class Headline:
  """One group: runs of one study on one machine that differ only in their seed."""
  study: str
  machine: dict
  runs: list[dict]
  metric: str
  values: list[float]
  unit: str
  higher_is_better: bool

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> float:
    return sum(self.values) / self.n

  @property
  def std(self) -> float | None:
    if self.n < 2:
      return None
    m = self.mean
    return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

  @property
  def command(self) -> str:
    """The group's command (the first run's, without a seed override when there are several)."""
    command = self.runs[0]["command"]
    if len(self.runs) > 1:
      command = re.sub(r"\s+--config\.seed=\S+", "", command)
    return command

  @property
  def seeds(self) -> list[int]:
    out = []
    for run in self.runs:
      seed = run["config"].get("seed", 0) or 0
      out += list(range(seed, seed + (run["config"].get("num_seeds") or 1)))
    return out

  @property
  def overrides(self) -> int:
    return len(re.findall(r"--config\.(?!seed=)", self.command))


def _per_seed(value) -> list[float]:
  if isinstance(value, dict):
    value = value.get("per_seed", value.get("mean"))
  return [float(v) for v in (value if isinstance(value, list) else [value])]


def metric_of(results: dict) -> tuple[str, list[float], str, bool]:
  """(name, per-seed values, unit, higher is better) of a run's headline figure."""
  if "test_accuracy" in results:
    return "test accuracy", [100 * v for v in _per_seed(results["test_accuracy"])], "%", True
  if "best_val_nats_per_char" in results:
    return ("validation loss", _per_seed(results["best_val_nats_per_char"]), "nats/char",
            False)
  if "final_loss" in results:
    return "final loss", _per_seed(results["final_loss"]["total"]), "", False
  raise ReportError(f"no headline figure in results of {results.get('study')!r}")


def headlines(root: Path = RESULTS_DIR) -> list[Headline]:
  order = reference(root)["order"]
  out = []
  for record in records(root):
    groups: dict[str, list[dict]] = {}
    for run in record["runs"]:
      groups.setdefault(group_key(run), []).append(run)
    for runs in groups.values():
      runs = sorted(runs, key=lambda r: r["config"].get("seed") or 0)
      values, name, unit, higher = [], None, None, True
      for run in runs:
        name, v, unit, higher = metric_of(run["results"])
        values += v
      out.append(Headline(record["study"], record["machine"], runs, name, values, unit, higher))
  rank = {s: i for i, s in enumerate(order)}
  out.sort(key=lambda h: (rank.get(h.study, len(rank)), h.machine["platform"] != "cpu",
                          h.machine["label"], h.overrides, h.command))
  return out


# ------------------------------------------------------------------------------------ rendering


def _fmt(x: float, unit: str) -> str:
  if unit == "%":
    return f"{x:.2f}"
  if unit == "nats/char":
    return f"{x:.4f}"
  return f"{x:.3g}"


def result_cell(h: Headline) -> str:
  unit = f" {h.unit}" if h.unit else ""
  spread = f" ± {_fmt(h.std, h.unit)}" if h.std is not None else ""
  how = ""
  if len(h.runs) == 1 and h.n > 1:
    how = ", one vmapped run"
  extra = ""
  r = h.runs[0]["results"]
  if h.n == 1 and "test_correct" in r and "test_count" in r:
    extra = f", {r['test_correct']}/{r['test_count']}"
  return f"**{_fmt(h.mean, h.unit)}{spread}{unit}** {h.metric} (n = {h.n}{how}{extra})"


def _seconds(x: float) -> str:
  return f"{x:,.0f} s" if x >= 10 else f"{x:.1f} s"


def training_seconds(results: dict) -> float | None:
  cumulative = results.get("train_seconds_per_epoch_cumulative")
  return float(cumulative[-1]) if cumulative else results.get("train_seconds")


def wall_cell(h: Headline) -> tuple[str, bool]:
  """The group's wall times, and whether one is a training time standing in for a wall time
  that a later re-run of the finished workdir overwrote."""
  parts, stand_in = [], False
  for run in h.runs:
    r = run["results"]
    wall, train = r.get("wall_seconds"), training_seconds(r)
    if wall is not None and train is not None and wall < train:
      parts.append(f"{_seconds(train)} of training †")
      stand_in = True
    elif wall is not None:
      parts.append(_seconds(wall))
    elif r.get("seconds") is not None:
      parts.append(_seconds(r["seconds"]))
  if len(parts) > 1 and not stand_in:
    return " / ".join(p.removesuffix(" s") for p in parts) + " s", False
  return " / ".join(parts), stand_in


def _ref_cell(ref: dict | None) -> str:
  if not ref:
    return "—"
  return ref["figure"] + (f" ({ref['note']})" if ref.get("note") else "")


def table(root: Path = RESULTS_DIR) -> str:
  """The README's results table: one row per study and recorded config and machine; a study with
  nothing recorded still has its row, with its command."""
  ref = reference(root)
  rows = ["| study | command | result (mean ± std over seeds, n) | seed notebook | best public "
          "| wall | machine |", "|---|---|---|---|---|---|---|"]
  by_study: dict[str, list[Headline]] = {}
  for h in headlines(root):
    by_study.setdefault(h.study, []).append(h)
  any_stand_in = False
  # Studies recorded but not (yet) in reference.json come last, with no literature figures.
  for study in ref["order"] + sorted(set(by_study) - set(ref["order"])):
    info = ref["studies"].get(study) or {"command": f"python -m launch.main --config="
                                                    f"experiments/{study}.py --workdir=runs/{study}"}
    name = f"[`{study}`](docs/studies/{study}.md)"
    seed, public = _ref_cell(info.get("seed")), _ref_cell(info.get("public"))
    if study not in by_study:
      rows.append(f"| {name} | `{info['command']}` | not recorded yet | {seed} | {public} | | |")
      continue
    for i, h in enumerate(by_study[study]):
      wall, stand_in = wall_cell(h)
      any_stand_in |= stand_in
      rows.append(f"| {name if i == 0 else ''} | `{h.command}` | {result_cell(h)} | "
                  f"{seed if i == 0 else ''} | {public if i == 0 else ''} | {wall} | "
                  f"{h.machine['label']} |")
  notes = ["", "Recorded with `python -m launch.report --add DIR` from each run's own "
           "`results.json` and `config.json` into `results/<study>/<machine>.json`; the "
           "literature figures and their sources are in `results/reference.json`."]
  if any_stand_in:
    notes.append("")
    notes.append("† The run directory was run again after it had finished: that re-run only "
                 "re-evaluated the best checkpoint and wrote its own few seconds as the wall "
                 "time, so the training time (the sum of the epochs) stands in for it.")
  return "\n".join(rows + notes)


CAPTIONS = {
    "learning_curves": "Learning curves: loss and accuracy per epoch (train, validation; test "
                       "where the study logs it every epoch)",
    "learning_curve": "Learning curve: loss per epoch",
    "confusion_matrix": "Confusion matrix of the best checkpoint on the test set",
    "accuracy_vs_time": "Test accuracy against training time",
    "gradient_norms": "Gradient norm of each layer during training",
    "first_layer_filters": "The first layer's filters after training",
    "most_confident_mistakes": "The most confidently wrong test images",
    "side_by_side": "Content | style | result",
    "loss": "Total loss per step",
    "architecture": "Architecture sketch",
}


def pictures(study: str, repo: Path = ROOT) -> list[str]:
  """Markdown image lines for the run plots and drawn figures in docs/img/<study>/ (what
  ``--images`` writes), as a study page links them."""
  folder = repo / "docs" / "img" / study
  out = []
  order = list(CAPTIONS)
  rank = lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name)
  for path in sorted(folder.glob("*"), key=rank) if folder.is_dir() else []:
    stem = path.stem
    if stem.startswith("test_curves_"):
      caption = f"Test accuracy per epoch, one line per seed ({stem[len('test_curves_'):]})"
    elif stem in CAPTIONS:
      caption = CAPTIONS[stem]
    else:
      continue  # Hand-placed pictures (the style gallery) are linked by the page itself.
    out.append(f"![{caption}](../img/{study}/{path.name})\n*{caption}.*")
  return out


def study_block(study: str, root: Path = RESULTS_DIR, repo: Path = ROOT) -> str:
  """A study page's results: every recorded group with its per-seed figures, the literature
  figures with their sources, and the pictures of docs/img/<study>/."""
  ref = reference(root)
  info = ref["studies"].get(study) or {"command": f"python -m launch.main --config=experiments/"
                                                  f"{study}.py --workdir=runs/{study}"}
  lines = []
  groups = [h for h in headlines(root) if h.study == study]
  if groups:
    lines += ["| machine | command | result | per seed | epochs (best) | wall | versions |",
              "|---|---|---|---|---|---|---|"]
    for h in groups:
      wall, _ = wall_cell(h)
      per_seed = ", ".join(f"{_fmt(v, h.unit)}" for v in h.values)
      epochs = ", ".join(f"{r['results'].get('epochs_run', '?')} ({r['results'].get('best_epoch', '?')})"
                         for r in h.runs if "epochs_run" in r["results"]) or "—"
      env = h.runs[0]["results"].get("environment", {})
      versions = ", ".join(f"{k} {env[k]}" for k in ("jax", "flax", "optax") if k in env)
      lines.append(f"| {h.machine['label']} | `{h.command}` | {result_cell(h)} | {per_seed} "
                   f"({'seeds' if len(h.seeds) > 1 else 'seed'} {', '.join(map(str, h.seeds))}) | {epochs} | {wall} | {versions} |")
  else:
    lines.append(f"Nothing recorded yet: run `{info['command']}`, then "
                 f"`python -m launch.report --add {_workdir_of(info['command'])}`.")
  lines.append("")
  for what, key in (("Seed notebook", "seed"), ("Best public figure", "public")):
    r = info.get(key)
    if r:
      source = f" Source: {r['source']}." if r.get("source") else ""
      lines.append(f"- {what}: {r['figure']}" + (f" ({r['note']})" if r.get("note") else "")
                   + f".{source}")
  images = pictures(study, repo)
  if images:
    lines += [""] + "\n\n".join(images).split("\n")
  return "\n".join(lines)


def _workdir_of(command: str) -> str:
  m = re.search(r"--workdir=(\S+)", command)
  return m.group(1) if m else "DIR"


def export_block(root: Path = RESULTS_DIR) -> str:
  """docs/export.md's parity table: every recorded run that carries launch.export's report."""
  lines = ["| study | machine | format | size | max abs error vs JAX | / max \\|logit\\| | "
           "vs float64 | top-1 agreement | test accuracy | Δ | bar met |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  count = 0
  for h in headlines(root):
    for run in h.runs:
      report = run.get("export")
      if not report:
        continue
      count += 1
      lines.append(f"| {h.study} | {h.machine['label']} | JAX float32 (max \\|logit\\| "
                   f"{report.get('max_abs_logit', float('nan')):.2f}) | | | | "
                   f"{report.get('jax_max_abs_error_vs_float64', float('nan')):.2e} | | "
                   f"{100 * report['jax_accuracy']:.2f} % | | |")
      for name, f in sorted(report["formats"].items(), key=lambda kv: _FORMAT_ORDER.get(kv[0], 9)):
        size = f"{f['size_bytes'] / 1e6:.2f} MB" if f.get("size_bytes") else ""
        lines.append(f"| | | {name} | {size} | {f['max_abs_error']:.2e} | "
                     f"{f.get('max_abs_error_relative', float('nan')):.1e} | "
                     f"{f.get('max_abs_error_vs_float64', float('nan')):.2e} | "
                     f"{100 * f['top1_agreement']:.1f} % | {100 * f['accuracy']:.2f} % | "
                     f"{f['accuracy_delta_points']:+.2f} pt | {'yes' if f['passes'] else 'NO'} |")
  if not count:
    return ("Nothing recorded yet: export a finished run (`python -m launch.export "
            "--workdir=DIR --quantize=none,dynamic,int8`), then `python -m launch.report --add "
            "DIR` records its `export/report.json` with the run.")
  return "\n".join(lines)


_FORMAT_ORDER = {"saved_model": 0, "tflite_float32": 1, "onnx": 2, "tflite_dynamic": 3,
                 "tflite_int8": 4}


# ------------------------------------------------------------------------------ markdown blocks


def between(text: str, begin: str, end: str) -> str | None:
  """The text between two marker lines, without them, or None where they are missing."""
  if begin not in text or end not in text:
    return None
  return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def replace_between(text: str, begin: str, end: str, body: str) -> str:
  if begin not in text or end not in text:
    raise ReportError(f"markers {begin} / {end} missing")
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  return f"{head}{begin}\n{body}\n{end}{tail}"


def documents(root: Path = RESULTS_DIR, repo: Path = ROOT) -> dict[Path, list[tuple[str, str,
                                                                                   str]]]:
  """Every generated block: file -> [(begin marker, end marker, expected body)]."""
  from playbook.run import precision_report  # It builds on this module.
  readme = [(BEGIN, END, table(root))]
  if (root / "precision").is_dir():
    readme.append((precision_report.BEGIN, precision_report.END,
                   precision_report.block(root, repo)))
  out = {repo / "README.md": readme}
  export_page = repo / "docs" / "export.md"
  if export_page.exists():
    out[export_page] = [(STUDY_BEGIN.format(study="export"), STUDY_END.format(study="export"),
                         export_block(root))]
  for study in reference(root)["order"]:
    page = repo / "docs" / "studies" / f"{study}.md"
    if page.exists():
      out[page] = [(STUDY_BEGIN.format(study=study), STUDY_END.format(study=study),
                    study_block(study, root, repo))]
  return out


def stale_blocks(root: Path = RESULTS_DIR, repo: Path = ROOT) -> list[str]:
  """Files whose generated blocks differ from what results/ gives now (or lack the markers)."""
  stale = []
  for path, blocks in documents(root, repo).items():
    text = path.read_text()
    for begin, end, body in blocks:
      if between(text, begin, end) != body:
        stale.append(f"{path.relative_to(repo)} ({begin})")
  return stale


def write_blocks(root: Path = RESULTS_DIR, repo: Path = ROOT) -> list[Path]:
  written = []
  for path, blocks in documents(root, repo).items():
    text = new = path.read_text()
    for begin, end, body in blocks:
      new = replace_between(new, begin, end, body)
    if new != text:
      path.write_text(new)
      written.append(path)
  return written
