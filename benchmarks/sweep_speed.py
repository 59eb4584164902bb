"""A learning-rate sweep in one program against the same sweep as sequential runs, wall clock.

    python -m benchmarks.sweep_speed [--epochs=3] [--learning_rates=...] \
        [--out=benchmarks/results/sweep_speed.json]

Both sides are the user's own commands, run here one after the other on the same machine:
``python -m launch.main --config=experiments/mnist_mlp.py --config.sweep.learning_rate=<all>``
(every learning rate in one vmapped program, one process), and the same command once per
learning rate with ``--config.optim.learning_rate=<lr>`` (a fresh process each: start-up, data
checks and compilation included, as a user running them one by one pays). The ratio is
sequential wall time over sweep wall time; the test accuracies of both are kept, to show the
sweep trains the same models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import command, environment, positive_int, write_json

DEFAULT_RATES = "0.0001,0.0002,0.0005,0.001,0.002,0.005,0.01,0.02"


def launch(workdir: Path, epochs: int, *flags: str) -> tuple[float, dict]:
  """(wall seconds, results.json) of one launch.main process."""
  cmd = [sys.executable, "-m", "launch.main", "--config=experiments/mnist_mlp.py",
         f"--workdir={workdir}", "--noprogress", "--config.tensorboard=False",
         f"--config.train.num_epochs={epochs}", *flags]
  start = time.perf_counter()
  out = subprocess.run(cmd, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if out.returncode:
    sys.exit(f"error: {' '.join(cmd)} failed: {out.stderr.strip().splitlines()[-1]}")
  return seconds, json.loads((workdir / "results.json").read_text())


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--epochs", type=positive_int, default=3)
  parser.add_argument("--learning_rates", default=DEFAULT_RATES)
  parser.add_argument("--out", default="benchmarks/results/sweep_speed.json")
  args = parser.parse_args(argv)
  rates = [float(r) for r in args.learning_rates.split(",")]
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    load_start = os.getloadavg()[0]
    sweep_s, swept = launch(tmp / "sweep", args.epochs,
                            f"--config.sweep.learning_rate={args.learning_rates}")
    sequential, accuracies = [], []
    for i, rate in enumerate(rates):
      seconds, result = launch(tmp / f"run{i}", args.epochs, f"--config.optim.learning_rate={rate}")
      sequential.append(seconds)
      accuracies.append(result["test_accuracy"]["mean"])
  report = {
      "command": command("benchmarks.sweep_speed", argv),
      "study": "mnist_mlp", "epochs": args.epochs, "learning_rates": rates,
      "sweep_wall_seconds": sweep_s, "sequential_wall_seconds": sum(sequential),
      "sequential_wall_seconds_each": sequential,
      "speedup": sum(sequential) / sweep_s,
      "test_accuracy_sweep": [v["test_accuracy"]["mean"] for v in swept["variants"]],
      "test_accuracy_sequential": accuracies,
      "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
      "environment": environment(),
  }
  write_json(args.out, report)
  print(f"{len(rates)} learning rates, {args.epochs} epochs of mnist_mlp: one program "
        f"{sweep_s:.0f} s, {len(rates)} sequential runs {sum(sequential):.0f} s: "
        f"{report['speedup']:.2f}x; {args.out}")
  return report


if __name__ == "__main__":
  main()
