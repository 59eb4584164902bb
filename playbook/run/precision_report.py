"""bfloat16 against float32: the README's mixed-precision tables, printed from recorded files.

    python -m launch.report --add-precision runs/mnist_mlp runs/mnist_mlp_bf16

records a pair of finished runs of one study that differ only in ``config.precision`` (float32
first) into ``results/precision/<study>.<machine>.json``: both runs' per-seed test figures, the
commands that made them, training seconds, and the difference with its test (Welch's t-test from
3 seeds a side, a bootstrap interval with 2: ``run/compare.py``). The step-time table comes from
``benchmarks/results/precision_cpu.json`` (``python -m benchmarks.precision``), which times both
precisions in the same rounds. ``launch.report --write`` prints both into the README.
"""

from __future__ import annotations

import json
from pathlib import Path

from playbook.run import commands, compare, tables
from playbook.run import results as res


BEGIN, END = "<!-- precision:begin -->", "<!-- precision:end -->"
STEP_TIMES = Path("benchmarks") / "results" / "precision_cpu.json"
PRECISIONS = ("float32", "bfloat16")
# Keys that may differ between the two runs of a pair: the one compared and where they ran.
UNCOMPARED = set(res.NOT_RECIPE) | {"precision"}


def _side(workdir: Path, precision: str) -> dict:
  results, config = compare.read_results(workdir), compare.run_config(workdir)
  if config.get("precision", "float32") != precision:
    raise res.ReportError(f"{workdir} ran in {config.get('precision', 'float32')}; pass the "
                          "float32 run first, then the bfloat16 run of the same config")
  if results.get("variants"):
    raise res.ReportError(f"{workdir} is a sweep; record plain runs (one config each)")
  name, values, unit, _ = res.metric_of(results)
  return {"command": commands.rebuild_command(config, commands.relative_workdir(workdir), results),
          "metric": name, "unit": unit, "per_seed": values,
          "train_seconds": res.training_seconds(results),
          "config": config, "results": results}


def _differences(flat: dict[str, dict], results: dict[str, dict]) -> list[str]:
  """Recipe keys whose values differ between the two runs. Not differences: a key one run
  predates, whose value in the other is today's default; ``data.source='auto'`` in one run where
  it resolved to the other's explicit source (the same files)."""
  default = res.flatten(commands.default_config(flat["float32"]["study"]))
  missing = object()
  differ = []
  for key in sorted(flat["float32"].keys() | flat["bfloat16"].keys()):
    a, b = (flat[p].get(key, missing) for p in PRECISIONS)
    if key in UNCOMPARED:
      continue
    if a is missing or b is missing:
      if res.norm(b if a is missing else a) != res.norm(default.get(key)):
        differ.append(key)
      continue
    if res.norm(a) == res.norm(b):
      continue
    if any(commands.auto_resolved(key, flat[q][key], flat[p][key], results[p])
           for p, q in (PRECISIONS, PRECISIONS[::-1])):
      continue
    differ.append(key)
  return differ


def add_pair(float32_dir: str | Path, bfloat16_dir: str | Path,
             root: Path = res.RESULTS_DIR) -> Path:
  """Records a float32 run and its bfloat16 twin; returns the file written."""
  dirs = dict(zip(PRECISIONS, (Path(float32_dir), Path(bfloat16_dir))))
  sides = {p: _side(d, p) for p, d in dirs.items()}
  flat = {p: res.flatten(s.pop("config")) for p, s in sides.items()}
  results = {p: s.pop("results") for p, s in sides.items()}
  differ = _differences(flat, results)
  if differ:
    raise res.ReportError(f"the two runs differ in more than their precision: {', '.join(differ)}")
  machines = {p: res.machine(r.get("environment", {})) for p, r in results.items()}
  if machines["float32"]["slug"] != machines["bfloat16"]["slug"]:
    raise res.ReportError(f"the runs were made on different machines ({machines['float32']['label']}"
                          f" and {machines['bfloat16']['label']}); compare them on one")
  rows = [compare.seed_row(p, s["per_seed"]) for p, s in sides.items()]
  study = flat["float32"]["study"]
  entry = {"study": study, "machine": machines["float32"], **sides,
           "bfloat16_minus_float32": compare.difference(rows[0], rows[1])}
  path = root / res.PRECISION_DIR / f"{study}.{machines['float32']['slug']}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
  return path


def _mean_std(values: list[float], unit: str) -> str:
  mean, std, _ = compare.seed_values(values)
  spread = f" ± {tables._fmt(std, unit)}" if len(values) > 1 else ""
  return f"{tables._fmt(mean, unit)}{spread} {unit} (n = {len(values)})"


def accuracy_table(root: Path = res.RESULTS_DIR) -> str:
  """One row per recorded pair, then the commands that made them."""
  entries = [json.loads(p.read_text()) for p in sorted((root / res.PRECISION_DIR).glob("*.json"))]
  lines = ["| study | float32 | bfloat16 | bfloat16 − float32 | machine |", "|---|---|---|---|---|"]
  for e in entries:
    f32, bf16, unit = e["float32"], e["bfloat16"], e["float32"]["unit"]
    difference = compare.difference_cell(e["bfloat16_minus_float32"], unit)
    lines.append(
        f"| `{e['study']}` {f32['metric']} | {_mean_std(f32['per_seed'], unit)} | "
        f"{_mean_std(bf16['per_seed'], unit)} | {difference} | {e['machine']['label']} |")
  commands = [e[p]["command"] for e in entries for p in PRECISIONS]
  return "\n".join(lines) + "\n\n```bash\n" + "\n".join(commands) + "\n```"


def step_time_table(repo: Path = res.ROOT) -> str:
  data = json.loads((repo / STEP_TIMES).read_text())
  env = data.get("environment", {})
  cpu = env.get("cpu_model") or env.get("cpu") or "CPU"
  lines = ["| model | float32 ms/step | bfloat16 ms/step | bfloat16 / float32 |",
           "|---|---|---|---|"]
  for name, m in data["models"].items():
    lines.append(f"| `{name}` (batch {m['batch_size']}) | {m['step_ms']['float32']:.1f} | "
                 f"{m['step_ms']['bfloat16']:.1f} | {m['ratio_bf16_over_f32']:.2f} |")
  return (f"Train-step time, both precisions timed in the same rounds on {cpu}, "
          f"{env.get('cpu_count', '?')} CPUs (`{data.get('command', 'python -m benchmarks.precision')}`"
          f", `{STEP_TIMES.as_posix()}`):\n\n" + "\n".join(lines))


def block(root: Path = res.RESULTS_DIR, repo: Path = res.ROOT) -> str:
  """The README's precision block: accuracy pairs, then step times."""
  return accuracy_table(root) + "\n\n" + step_time_table(repo)
