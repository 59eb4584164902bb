"""Several finished runs side by side: a table of a test metric with significance, and one figure.

``launch/compare.py`` is the command. Each run directory (or each variant of a sweep run) becomes
one row: the metric's mean ± std over seeds, the number of seeds, training steps/s and wall time,
and how it differs from the first row. Seeds are few and noisy, so a difference of means means
little without a test: Welch's t-test (unequal variances) where both sides have at least
``MIN_SEEDS_FOR_T`` seeds, a bootstrap interval of the difference below that (a range, with no
claim of 95 % coverage: ``caveat``), nothing for one seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from playbook.run import plots
from playbook.run.rundir import CONFIG_FILE, RESULTS_FILE, RunDirError

MIN_SEEDS_FOR_T = 3
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CURVE_SPLITS = ("val", "test_curve")
# Numbers in results.json that describe the run, not what it learnt: never offered as metrics.
NOT_METRICS = {"num_seeds", "best_epoch", "epochs_run", "test_count"}
NOT_METRIC_SUFFIXES = ("seconds", "per_second", "_cumulative")
# The figure a study is judged by, in the order looked for when no metric is named.
HEADLINE_METRICS = ("test_accuracy", "best_val_nats_per_char")


@dataclasses.dataclass
class Row:
  """One line of the table: a run, or one variant of a sweep run."""
  name: str
  mean: float
  std: float
  num_seeds: int
  values: np.ndarray | None  # Per-seed values; None where the run stored only mean and std.
  steps_per_second: float | None = None
  wall_seconds: float | None = None
  # Split ("val", "test_curve") -> (epochs, seeds) array of the per-epoch metric.
  curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  curve_key: str | None = None  # The metrics.jsonl key the curves show ("accuracy", "xent").


# ---------------------------------------------------------------------------------------- loading


def read_results(workdir: Path) -> dict:
  """``DIR/results.json``, or an error saying why there is none to compare."""
  if not workdir.is_dir():
    raise RunDirError(f"{workdir} does not exist (or is not a folder).")
  path = workdir / RESULTS_FILE
  if not path.is_file():
    raise RunDirError(f"{workdir} is not finished: no {RESULTS_FILE}; run or resume it first.")
  try:
    results = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RunDirError(f"{path} is not readable JSON ({e}).") from None
  if not isinstance(results, dict):
    raise RunDirError(f"{path} holds no results object.")
  return results


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def metric_names(entry: dict) -> list[str]:
  """The keys of ``entry`` (results or one variant) that hold a metric: {mean, std, per_seed}
  dicts, or a number or list of numbers per seed (as char_lm writes them)."""
  def is_metric(key, value):
    if isinstance(value, dict):
      return "mean" in value
    if key in NOT_METRICS or key.endswith(NOT_METRIC_SUFFIXES):
      return False
    return _is_number(value) or (isinstance(value, list) and bool(value)
                                 and all(_is_number(v) for v in value))
  return sorted(k for k, v in entry.items() if is_metric(k, v))


def seed_values(value) -> tuple[float, float, np.ndarray | None]:
  """(mean, std, per-seed values or None) of one stored metric, whichever way it was stored.
  The std is recomputed (ddof=1) from per-seed values when they are there."""
  if isinstance(value, dict):
    per_seed = value.get("per_seed")
    if per_seed is None:
      return float(value["mean"]), float(value.get("std") or 0.0), None
    value = per_seed
  values = np.atleast_1d(np.asarray(value, np.float64))
  std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return float(values.mean()), std, values


def _row(name: str, entry: dict, metric: str, results: dict) -> Row:
  mean, std, values = seed_values(entry[metric])
  n = len(values) if values is not None else int(results.get("num_seeds") or 1)
  return Row(name, mean, std, n, values, results.get("train_steps_per_second"),
             results.get("wall_seconds"))


def load_rows(workdir: str | Path, metric: str) -> list[Row]:
  """The rows of one run directory: one per sweep variant if it has variants, else one."""
  workdir = Path(workdir)
  results = read_results(workdir)
  variants = results.get("variants") or []
  entries = [(f"{workdir} [{v.get('name', i)}]", v) for i, v in enumerate(variants)] \
      or [(str(workdir), results)]
  for name, entry in entries:
    if metric not in metric_names(entry):
      has = ", ".join(metric_names(entry)) or "none"
      raise RunDirError(f"{name} has no metric {metric!r}; its metrics: {has}.")
  rows = [_row(name, entry, metric, results) for name, entry in entries]
  key, curves = read_curves(workdir, metric, len(rows))
  for row, row_curves in zip(rows, curves):
    row.curves, row.curve_key = row_curves, key
  return rows


# ----------------------------------------------------------------------------------------- curves


def curve_key(metric: str, available: set[str]) -> str | None:
  """The per-epoch key that tracks ``metric``: test_accuracy -> accuracy, test_loss and
  best_val_nats_per_char -> xent. None when no such key was logged."""
  name = metric
  for prefix in ("test_", "best_val_", "final_train_", "val_", "best_", "final_"):
    if name.startswith(prefix):
      name = name[len(prefix):]
      break
  for key in (name, {"loss": "xent", "nats_per_char": "xent"}.get(name)):
    if key in available:
      return key
  return None


def read_curves(workdir: Path, metric: str,
                num_variants: int) -> tuple[str | None, list[dict[str, np.ndarray]]]:
  """(key, per variant split -> (epochs, seeds) array) of the metric's curve in ``metrics.jsonl``.
  Per-seed lists of a sweep are variant-major; a log that does not divide into the variants, or
  no log at all, gives no curves (the table does not need them)."""
  empty = [{} for _ in range(num_variants)]
  path = workdir / "metrics.jsonl"
  try:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  except (OSError, UnicodeDecodeError, json.JSONDecodeError):
    return None, empty
  out, found = empty, None
  for split in CURVE_SPLITS:
    by_step = {r.get("step"): r for r in rows if isinstance(r, dict) and r.get("split") == split}
    if not by_step:
      continue
    key = curve_key(metric, set.intersection(*(set(r) for r in by_step.values())))
    if key is None:
      continue
    try:
      values = np.array([np.atleast_1d(by_step[s][key]) for s in sorted(by_step, key=float)],
                        np.float64)
    except (ValueError, TypeError):
      continue  # Ragged or non-numeric rows: a damaged log.
    if values.ndim != 2 or values.shape[1] % num_variants:
      continue
    for i, part in enumerate(np.split(values, num_variants, axis=1)):
      out[i][split] = part
    found = found or key
  return found, out


# ------------------------------------------------------------------------------------ significance


def bootstrap_interval(base: np.ndarray, other: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
  """95 % percentile interval of mean(other) - mean(base), resampling each side's seeds with
  replacement. A fixed seed so the same runs always print the same table."""
  rng = np.random.default_rng(seed)
  resample = lambda x: rng.choice(x, size=(resamples, len(x)), replace=True).mean(1)
  low, high = np.percentile(resample(other) - resample(base), [2.5, 97.5])
  return float(low), float(high)


def welch_p(base: np.ndarray, other: np.ndarray) -> float:
  """Two-sided p-value of Welch's t-test (the seeds' variances need not be equal)."""
  return float(stats.ttest_ind(other, base, equal_var=False).pvalue)


def seed_row(name: str, per_seed) -> Row:
  """A row of per-seed values alone (no speed, no curves), for ``difference``."""
  mean, std, values = seed_values(per_seed)
  return Row(name, mean, std, len(values), values)


def difference_cell(d: dict, unit: str) -> str:
  """``difference``'s result as a table cell in ``unit``: a percentage's in points (2 decimals),
  any other to 4 decimals, with its p-value or bootstrap interval."""
  if d["test"] is None:
    return f"n/a ({d['why']})"
  digits = 2 if unit == "%" else 4
  diff = f"{d['difference']:+.{digits}f} {'points' if unit == '%' else unit}".rstrip()
  if d["test"] == "welch":
    return f"{diff}, p = {d['p_value']:.2f} (Welch)" if d["p_value"] is not None else diff
  low, high = d["interval_95"]
  return f"{diff}, bootstrap interval [{low:+.{digits}f}, {high:+.{digits}f}]"


def difference(base: Row, row: Row) -> dict:
  """How ``row`` differs from the first row, and how sure that is: {'difference', 'test', and
  'p_value' (Welch) or 'interval_95' (bootstrap)}, or {'test': None, 'why': ...} without one."""
  if row is base:
    return {"test": None, "why": "baseline"}
  if base.values is None or row.values is None:
    return {"test": None, "why": "no per-seed values"}
  if min(len(base.values), len(row.values)) < 2:
    return {"test": None, "why": "1 seed"}
  out = {"difference": row.mean - base.mean}
  if min(len(base.values), len(row.values)) >= MIN_SEEDS_FOR_T:
    p = welch_p(base.values, row.values)
    return out | {"test": "welch", "p_value": p if math.isfinite(p) else None}
  return out | {"test": "bootstrap", "interval_95": list(bootstrap_interval(base.values,
                                                                          row.values))}


def significance(base: Row, row: Row) -> str:
  """The difference of ``row`` from the first row, and how sure it is, in words."""
  d = difference(base, row)
  if d["test"] is None:
    return "(baseline)" if d["why"] == "baseline" else f"n/a ({d['why']})"
  diff = f"Δ {d['difference']:+.4f}"
  if d["test"] == "welch":
    p = d["p_value"]
    return f"{diff}, p={p:.3g} (Welch)" if p is not None else f"{diff}, p=n/a (no variance)"
  low, high = d["interval_95"]
  return f"{diff}, bootstrap interval [{low:+.4f}, {high:+.4f}]"


def caveat(rows: list[Row]) -> str | None:
  """What a bootstrap row's interval is worth, where the table has one. With 2 seeds a side each
  resampled mean is one seed, the other or their mean, so the 2.5 and 97.5 percentiles are the
  smallest and largest seed-to-seed differences: the interval is their range, not 95 % coverage."""
  if any(difference(rows[0], r)["test"] == "bootstrap" for r in rows[1:]):
    return (f"Bootstrap rows have fewer than {MIN_SEEDS_FOR_T} seeds a side: their interval "
            "spans the differences the seeds showed and claims no 95 % coverage; "
            f"{MIN_SEEDS_FOR_T} or more seeds a side give Welch's t-test.")
  return None


# ------------------------------------------------------------------------------------------ table


def table(rows: list[Row], metric: str) -> list[list[str]]:
  """Header and one list of cells per row, shared by the text and Markdown forms."""
  maybe = lambda x, fmt: "-" if x is None else format(x, fmt)
  header = ["run", f"{metric} (mean ± std)", "seeds", "steps/s", "wall s",
            f"vs {rows[0].name}"]
  return [header] + [[r.name, f"{r.mean:.4f} ± {r.std:.4f}", str(r.num_seeds),
                      maybe(r.steps_per_second, ".1f"), maybe(r.wall_seconds, ".0f"),
                      significance(rows[0], r)] for r in rows]


def format_text(cells: list[list[str]]) -> str:
  """Columns padded to their widest cell, for the terminal."""
  widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
  line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
  return "\n".join([line(cells[0]), line(["-" * w for w in widths])]
                   + [line(row) for row in cells[1:]])


def format_markdown(cells: list[list[str]]) -> str:
  """A GitHub Markdown table; pipes in run names are escaped."""
  line = lambda row: "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
  align = ["---"] + ["---:"] * 4 + ["---"]
  return "\n".join([line(cells[0]), "|" + "|".join(align) + "|"]
                   + [line(row) for row in cells[1:]]) + "\n"


# ------------------------------------------------------------------------------------------- plot


def plot_curves(rows: list[Row], metric: str, path: Path) -> Path:
  """Every row's validation curve (solid) and test curve (dashed, where logged) against epoch:
  the mean over seeds, with a min–max band when there are several seeds."""
  fig = Figure(figsize=(8, 5))  # Outside pyplot's registry: nothing global to leak.
  ax = fig.subplots()
  colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
  for k, row in enumerate(rows):
    color = colors[k % len(colors)]
    for split, style in zip(CURVE_SPLITS, ("-", "--")):
      if split not in row.curves:
        continue
      values = row.curves[split]
      epochs = np.arange(1, len(values) + 1)
      label = row.name if split == "val" else f"{row.name} (test every epoch)"
      ax.plot(epochs, values.mean(1), style, color=color, lw=1.8, label=label)
      if values.shape[1] > 1:
        ax.fill_between(epochs, values.min(1), values.max(1), color=color, alpha=0.15, lw=0)
  if not any(row.curves for row in rows):
    ax.text(0.5, 0.5, "no per-epoch curves logged for this metric", ha="center",
            va="center", transform=ax.transAxes)
  ax.set_xlabel("epoch")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  keys = sorted({row.curve_key for row in rows if row.curves})
  ax.set_ylabel(f"{' / '.join(keys) or metric} per epoch (validation; dashed: test)")
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
  ax.set_title("Learning curves (mean over seeds; band: min–max)")
  return plots.save(fig, path)


def run_config(workdir: Path) -> dict:
  """The run's config.json ({} when it has none: results.json alone can be compared)."""
  try:
    return json.loads((workdir / CONFIG_FILE).read_text())
  except (OSError, ValueError):
    return {}


def as_json(rows: list[Row], metric: str, configs: list[dict]) -> dict:
  """The table as data: per row the metric over seeds, speed, the difference from the first row
  with its test, and the run's study and precision (``configs``: one config.json per row)."""
  return {"metric": metric, "rows": [
      {"name": r.name, "study": c.get("study"), "precision": c.get("precision", "float32"),
       "mean": r.mean, "std": r.std, "num_seeds": r.num_seeds,
       "per_seed": None if r.values is None else r.values.tolist(),
       "steps_per_second": r.steps_per_second, "wall_seconds": r.wall_seconds,
       "vs_first": difference(rows[0], r)} for r, c in zip(rows, configs)]}


def headline_metric(workdir: Path) -> str:
  """The first of ``HEADLINE_METRICS`` the run's ``results.json`` holds."""
  results = read_results(workdir)
  for metric in HEADLINE_METRICS:
    if metric in results:
      return metric
  has = ", ".join(metric_names(results)) or "none"
  raise RunDirError(f"{workdir} has none of {', '.join(HEADLINE_METRICS)}; name one of its "
                    f"metrics with --metric ({has}).")


def compare(workdirs: list[str | Path], metric: str | None,
            out: str | Path) -> tuple[str, Path, Path]:
  """Loads the runs, writes ``out.md``, ``out.json`` and ``out.png``; returns (text table, md
  path, png path). ``metric`` None: the first run's ``headline_metric``. Any bad run directory
  raises ``RunDirError`` before anything is written."""
  metric = metric or headline_metric(Path(workdirs[0]))
  loaded = [(row, run_config(Path(workdir))) for workdir in workdirs
            for row in load_rows(workdir, metric)]
  rows, configs = [r for r, _ in loaded], [c for _, c in loaded]
  cells = table(rows, metric)
  out = Path(out)
  md = out.with_name(out.name + ".md")
  md.parent.mkdir(parents=True, exist_ok=True)
  note = caveat(rows)
  md.write_text(format_markdown(cells) + (f"\n{note}\n" if note else ""))
  out.with_name(out.name + ".json").write_text(json.dumps(as_json(rows, metric, configs),
                                                          indent=1) + "\n")
  png = plot_curves(rows, metric, out.with_name(out.name + ".png"))
  return format_text(cells) + (f"\n\n{note}" if note else ""), md, png
