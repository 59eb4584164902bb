"""Finished runs side by side: a table of a test metric over seeds, and their learning curves:

    python -m launch.compare runs/mnist_mlp runs/mnist_cnn
    python -m launch.compare runs/lr_sweep --metric=test_loss --out=reports/lr_sweep
    python -m launch.compare runs/char_lstm runs/char_lstm_lr_sweep

One row per run, or per variant of a sweep run ("DIR [name]"): the metric's (by default the
study's headline: test accuracy, or validation nats/char for char_lstm) mean ± std over
seeds, the number of seeds, training steps/s and wall seconds, and its difference from the first
row: Welch's t-test with 3 or more seeds on both sides, a bootstrap interval of the difference
with 2 (the range of the seed-to-seed differences: a note under the table says so), "n/a" with
1. The table is printed and written to PREFIX.md (by default runs/compare.md for runs/...); the
runs' per-epoch validation (and test, where logged) curves are overlaid in PREFIX.png. A bad
run directory or an unknown metric is one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from playbook.run import compare
from playbook.run.rundir import RunDirError

_METRIC = flags.DEFINE_string("metric", None,
                              "Key in results.json (or in each sweep variant) to compare; "
                              "default: the study's headline, test_accuracy or (char_lstm) "
                              "best_val_nats_per_char.")
_OUT = flags.DEFINE_string("out", None, "Prefix of the PREFIX.md table and PREFIX.png figure; "
                          "default: compare, beside the first run directory (runs/compare.md "
                          "for runs/a), so that nothing lands in the current directory.")


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise app.UsageError("Name at least one run directory (the --workdir of launch.main).")
  try:
    out = _OUT.value or Path(workdirs[0]).parent / "compare"
    text, md, png = compare.compare(workdirs, _METRIC.value, out)
  except RunDirError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(text)
  print(f"\ntable in {md}; curves in {png}")


if __name__ == "__main__":
  app.run(main)
