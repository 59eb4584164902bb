"""Every JAX-against-PyTorch speed ratio in ``benchmarks/results/`` in one figure and one table.

    python -m benchmarks.plot_ratios [--out=docs/img/perf_ratios.png]

Reads the JSON the benchmarks wrote (nothing is measured here): the trainer's epoch against the
PyTorch peer for the MLPs (``train_throughput.json``), the CIFAR-10 nets
(``cifar_throughput.json``) and the char-LSTM (``lstm_throughput_quiet.json``), and the
style-transfer step (``style_speed.json``, and with Winograd convolutions and glibc told to keep
its memory, ``style_speed_winograd_malloc.json``). A ratio above 1 means JAX is faster. Prints the
same figures as a Markdown table, with each bar and the file it came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def ratios(results: Path = RESULTS) -> list[dict]:
  """[{label, ratio, bar, file}] in a fixed order; a missing file is skipped."""
  out = []

  def load(name):
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None

  train = load("train_throughput.json")
  for row in (train or {}).get("summary", []):
    bar = 2.0 if (row["model"], row["batch_size"]) == ("mnist_mlp", 128) else None
    out.append(dict(label=f"{row['model']} MLP, batch {row['batch_size']}",
                    ratio=row["ratio_jax_scan_over_torch"], bar=bar,
                    file="train_throughput.json"))
  cifar = load("cifar_throughput.json")
  for model, name, bar in (("seed_cnn", "cifar10_cnn (seed CNN)", 1.5),
                           ("fast_resnet", "cifar10_fast net", None)):
    entry = (cifar or {}).get("results", {}).get(model, {})
    if "ratio_jax_fast_over_torch" in entry:
      out.append(dict(label=f"{name}, batch 128", ratio=entry["ratio_jax_fast_over_torch"],
                      bar=bar, file="cifar_throughput.json"))
  lstm = load("lstm_throughput_quiet.json")
  if lstm:
    out.append(dict(label="char_lstm 2x512, batch 128",
                    ratio=lstm["ratio_vs_torch_median"][lstm["best_jax_column"]], bar=2.0,
                    file="lstm_throughput_quiet.json"))
  for name, suffix in (("style_speed.json", ""),
                       ("style_speed_winograd_malloc.json", ", Winograd + malloc settings")):
    style = load(name)
    for row in (style or {}).get("rows", []):
      h, w = row["size"]
      out.append(dict(label=f"style step {h}x{w}{suffix}", ratio=row["median_ratio"], bar=1.3,
                      file=name))
  return out


def machine(results: Path = RESULTS) -> str:
  env = json.loads((results / "train_throughput.json").read_text())["environment"]
  return (f"{env.get('cpu_model', 'CPU')}, {env.get('cpu_count')} CPUs; jax {env.get('jax')}, "
          f"torch {env.get('torch')}")


def plot(out: Path, results: Path = RESULTS) -> Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = ratios(results)
  fig, ax = plt.subplots(figsize=(7.5, 0.36 * len(rows) + 1.2))
  y = list(range(len(rows)))[::-1]
  colors = ["tab:green" if r["ratio"] >= 1 else "tab:red" for r in rows]
  ax.barh(y, [r["ratio"] for r in rows], color=colors, alpha=0.75)
  for yi, r in zip(y, rows):
    ax.text(r["ratio"] + 0.03, yi, f"{r['ratio']:.2f}x", va="center", fontsize=8)
    if r["bar"]:
      ax.plot([r["bar"]] * 2, [yi - 0.4, yi + 0.4], color="black", lw=1.5)
  ax.axvline(1.0, color="grey", ls="--", lw=1)
  ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
  ax.set_xlabel("JAX / PyTorch speed (> 1: JAX faster; black tick: the bar)")
  ax.set_title(machine(results), fontsize=9)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=90, bbox_inches="tight")
  plt.close(fig)
  return out


def table(results: Path = RESULTS) -> str:
  lines = ["| what | JAX / PyTorch | bar | met | from |", "|---|---|---|---|---|"]
  for r in ratios(results):
    bar = f"{r['bar']:.1f}x" if r["bar"] else ""
    met = ("yes" if r["ratio"] >= r["bar"] else "no") if r["bar"] else ""
    lines.append(f"| {r['label']} | {r['ratio']:.2f}x | {bar} | {met} | "
                 f"`benchmarks/results/{r['file']}` |")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  out = next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")),
             "docs/img/perf_ratios.png")
  print(table())
  print(f"\nfigure: {plot(Path(out))}")


if __name__ == "__main__":
  main(sys.argv[1:])
