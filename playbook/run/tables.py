"""The results as Markdown, printed from ``results/``: the README's table (one row per study and
recorded config and machine), a study page's block (every group with its per-seed figures, the
literature figures and the pictures of ``docs/img/<study>/``), and ``docs/export.md``'s parity
table.
"""

from __future__ import annotations

import re
from pathlib import Path

from playbook.run.results import (RESULTS_DIR, ROOT, Headline, headlines, reference,
                                  training_seconds)


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
