"""Sweeps in the study pages: one table per recorded sweep run, printed from recorded files.

    python -m launch.report --add-sweep runs/cats_dogs_lite0_head_sweep

records a finished sweep run (``--config.sweep.*``: every variant in one program) into
``results/sweeps/<study>.<run>.<machine>.json``: the command that made it (rebuilt from its
``config.json``), the machine, every variant's values and per-seed figures, and the variant the
validation figure picked. ``launch.report --write`` prints the study's recorded sweeps between
``<!-- sweeps:<study>:begin -->`` and ``<!-- sweeps:<study>:end -->`` of
``docs/studies/<study>.md``: per variant its headline figure (mean ± std over seeds), the
validation figure that selects, the best epochs, and its difference from the variant with the
config's own values (else the first) with its test (``run/compare.py``: Welch's t-test from 3
seeds a side, a bootstrap interval with 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from playbook.run import commands, compare, tables
from playbook.run import results as res

BEGIN, END = "<!-- sweeps:{study}:begin -->", "<!-- sweeps:{study}:end -->"
# The figure each variant is reported by, as (key in a variant, name, scale, unit).
HEADLINES = (("test_accuracy", "test accuracy", 100.0, "%"),
             ("best_val_nats_per_char", "validation loss", 1.0, "nats/char"))


def _headline(variant: dict) -> tuple[str, str, float, str]:
  for entry in HEADLINES:
    if entry[0] in variant:
      return entry
  raise res.ReportError(f"sweep variant {variant.get('name')!r} has none of "
                        f"{', '.join(h[0] for h in HEADLINES)}")


def own_variant(variants: list[dict], config: dict) -> int | None:
  """The variant whose swept values are the config's own (what the run would train without
  ``--config.sweep``), or None."""
  flat = res.flatten(config)
  for i, variant in enumerate(variants):
    if all(flat.get(key) is not None and float(flat[key]) == float(value)
           for key, value in variant["values"].items()):
      return i
  return None


def add_sweep(workdir: str | Path, root: Path = res.RESULTS_DIR) -> Path:
  """Records a finished sweep run; returns the file written."""
  workdir = Path(workdir)
  results, config = compare.read_results(workdir), compare.run_config(workdir)
  variants = results.get("variants")
  if not variants:
    raise res.ReportError(f"{workdir} is not a sweep (its results.json lists no variants); "
                          "record plain runs with --add")
  key, _, _, _ = _headline(variants[0])
  select = next((k for k in variants[0] if k.startswith("val_")), key)
  machine = res.machine(results.get("environment", {}))
  entry = {
      "study": config["study"], "run": workdir.resolve().name, "machine": machine,
      "command": commands.rebuild_command(config, commands.relative_workdir(workdir), results),
      "num_seeds": config.get("num_seeds", 1), "metric": key, "select": select,
      "select_mode": config.get("train", {}).get("best_mode", "max"),
      "best_variant": results["best_variant"],
      "own_variant": None if (own := own_variant(variants, config)) is None
                     else variants[own]["name"],
      "wall_seconds": results.get("wall_seconds"),
      "variants": [{k: v[k] for k in ("name", "values", "best_epochs", key, select)}
                   for v in variants]}
  path = root / res.SWEEPS_DIR / f"{entry['study']}.{entry['run']}.{machine['slug']}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
  return path


def _fmt(x: float, unit: str) -> str:
  return f"{x:.4f}" if unit == "" else tables._fmt(x, unit)


def _cell(summary: dict, scale: float, unit: str) -> str:
  values = [scale * v for v in summary["per_seed"]]
  mean, std, _ = compare.seed_values(values)
  spread = f" ± {_fmt(std, unit)}" if len(values) > 1 else ""
  return f"{_fmt(mean, unit)}{spread} {unit}".rstrip()


def _difference(base: dict, variant: dict, key: str, scale: float, unit: str) -> str:
  if variant["name"] == base["name"]:
    return "(baseline)"
  rows = [compare.seed_row(v["name"], [scale * x for x in v[key]["per_seed"]])
          for v in (base, variant)]
  return compare.difference_cell(compare.difference(*rows), unit)


def sweep_table(entry: dict) -> str:
  """One recorded sweep: a heading line, its command, a row per variant (the picked one bold)."""
  key, name, scale, unit = _headline(entry["variants"][0])
  swept = list(entry["variants"][0]["values"])
  own = entry.get("own_variant")  # The baseline: the config's own values, else the first.
  base = next((v for v in entry["variants"] if v["name"] == own), entry["variants"][0])
  select = entry["select"]
  select_unit = "%" if select.endswith("accuracy") else ""
  select_scale = 100.0 if select_unit == "%" else 1.0
  wall = f"; {entry['wall_seconds']:,.0f} s wall" if entry.get("wall_seconds") else ""
  lines = [f"{len(entry['variants'])} variants x {entry['num_seeds']} seed"
           f"{'s' * (entry['num_seeds'] > 1)} in one program on {entry['machine']['label']}"
           f"{wall} (`results/{res.SWEEPS_DIR}/`):", "", "```bash", entry["command"], "```", "",
           "| " + " | ".join([*swept, f"{name} (mean ± std)", "per seed",
                              f"{res.metric_words(select)} (selects)", "best epochs",
                              f"vs {base['name']}" + (" (the config's own)" if own else "")])
           + " |",
           "|" + "---|" * (len(swept) + 5)]
  for v in entry["variants"]:
    bold = (lambda s: f"**{s}**") if v["name"] == entry["best_variant"] else (lambda s: s)
    cells = [f"{v['values'][k]:g}" for k in swept] + [
        bold(_cell(v[key], scale, unit)),
        ", ".join(_fmt(scale * x, unit) for x in v[key]["per_seed"]),
        _cell(v[select], select_scale, select_unit) if select != key else "(the same)",
        ", ".join(str(e) for e in v["best_epochs"]), _difference(base, v, key, scale, unit)]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", f"Bold: the variant the validation figure picked, `{entry['best_variant']}`."]
  return "\n".join(lines)


def entries(study: str, root: Path = res.RESULTS_DIR) -> list[dict]:
  return [json.loads(p.read_text())
          for p in sorted((root / res.SWEEPS_DIR).glob(f"{study}.*.json"))]


def block(study: str, root: Path = res.RESULTS_DIR) -> str:
  """Every recorded sweep of ``study``, one table each."""
  return "\n\n".join(sweep_table(e) for e in entries(study, root))
