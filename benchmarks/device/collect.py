"""Collects the device runs' results.json files into one JSON for benchmarks/results/.

    python -m benchmarks.device.collect --out=benchmarks/results/gpu_h200.json \
        gpu_runs_dir:label [gpu_runs_dir:label ...]

Each argument is a folder the device scripts filled (``gpu_runs/``, unpacked from the
``gpu_runs.tgz`` they return) and a label naming which call it was.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEEP = ("study", "data_copy", "epochs_run", "best_epoch", "test_accuracy", "best_val_nats_per_char",
        "train_seconds", "train_seconds_per_epoch_cumulative", "wall_seconds",
        "train_tokens_per_second", "environment")


def collect(folder: Path, label: str) -> list[dict]:
  rows = []
  for results in sorted(folder.glob("*/results.json")):
    r = json.loads(results.read_text())
    config = json.loads((results.parent / "config.json").read_text())
    row = {"call": label, "run": results.parent.name} | {k: r[k] for k in KEEP if k in r}
    row["config"] = {"model": config.get("model"), "optim": config.get("optim"),
                     "train": {k: config["train"].get(k) for k in ("batch_size", "num_epochs")},
                     "seed": config.get("seed")}
    curve = results.parent / "metrics.jsonl"
    row["test_curve"] = [round(m["accuracy"], 4) for m in map(json.loads, curve.open())
                         if m["split"] == "test_curve"] if curve.exists() else None
    rows.append(row)
  return rows


def main(argv: list[str]) -> None:
  out = next(a.split("=", 1)[1] for a in argv if a.startswith("--out="))
  rows = [row for a in argv if not a.startswith("--") for row in collect(Path(a.split(":")[0]),
                                                                          a.split(":", 1)[1])]
  Path(out).write_text(json.dumps(rows, indent=1) + "\n")
  print(f"{len(rows)} runs -> {out}")


if __name__ == "__main__":
  main(sys.argv[1:])
