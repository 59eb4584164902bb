"""The recorded files, and what they hold: ``results/<study>/<machine>.json``, copied from finished
runs by a command, and ``results/reference.json``, read back as one headline per group of runs.

    results/reference.json             literature constants: the seed notebooks' figures and the
                                       best public figures, with their sources
    results/<study>/<machine>.json     {"study", "machine": {...}, "runs": [{"command", "results",
                                       "config", "added_from", ...}, ...]}: a run's own
                                       results.json and config.json, verbatim

``launch/report.py`` is the command; ``recording.py`` writes these files, ``commands.py`` rebuilds
the launch.main command of a run, ``tables.py`` prints them and ``blocks.py`` puts the tables
into the README and ``docs/``. Runs of one study on one machine whose configs differ only in the
seed form one group, and its headline is the mean ± std over every seed of the group (std with
ddof=1, and n); runs with another config are another group, and another row.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
REFERENCE_FILE = "reference.json"

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


# -------------------------------------------------------------------------------------- configs


def flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def norm(value):
  """JSON-comparable form: tuples and lists alike."""
  return json.loads(json.dumps(value))


def group_key(run: dict) -> str:
  """Runs with the same key differ only in their seed."""
  flat = {k: v for k, v in flatten(run["config"]).items()
          if k not in NOT_RECIPE and k not in ("seed", "task")}
  return json.dumps(norm(flat), sort_keys=True)


# ------------------------------------------------------------------------------------- reading


def results_path(study: str, slug: str, root: Path = RESULTS_DIR) -> Path:
  return root / study / f"{slug}.json"


def reference(root: Path = RESULTS_DIR) -> dict:
  return json.loads((root / REFERENCE_FILE).read_text())


PRECISION_DIR = "precision"  # results/precision/: float32/bfloat16 pairs (precision_report.py).
SWEEPS_DIR = "sweeps"  # results/sweeps/: recorded sweep runs (sweep_report.py).


def records(root: Path = RESULTS_DIR) -> list[dict]:
  """Every results/<study>/<machine>.json."""
  return [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))
          if p.parent.name not in (PRECISION_DIR, SWEEPS_DIR)]


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


def metric_words(key: str) -> str:
  """A metric's key as a table or legend says it: ``best_val_nats_per_char`` -> best validation
  nats/char."""
  return key.replace("val_", "validation_").replace("_per_", "/").replace("_", " ")


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


def training_seconds(results: dict) -> float | None:
  cumulative = results.get("train_seconds_per_epoch_cumulative")
  return float(cumulative[-1]) if cumulative else results.get("train_seconds")


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
