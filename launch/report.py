"""The README's results table, printed from ``results/``; finished runs recorded into it.

    python -m launch.report                               # the README's results table (Markdown)
    python -m launch.report --study mnist_cnn             # one study page's results block
    python -m launch.report --add runs/mnist_cnn [--command "python -m launch.main ..."]
    python -m launch.report --add-gpu-json benchmarks/results/gpu_h200.json \\
        --command "python -m launch.main --config=experiments/cifar10_fast.py ..."
    python -m launch.report --add-precision runs/mnist_mlp runs/mnist_mlp_bf16
    python -m launch.report --add-sweep runs/cats_dogs_lite0_head_sweep
    python -m launch.report --write                       # rewrites the generated blocks
    python -m launch.report --check                       # exit 1 if a generated block is stale
    python -m launch.report --images                      # refreshes docs/img/ from runs/, results/

``--add DIR`` copies a finished run's ``results.json`` and ``config.json`` into
``results/<study>/<machine>.json`` with the command that made it: by default the launch.main line
rebuilt from config.json (the study's config file and every value that differs from its
defaults, checked by parsing it back). A run of the same config and seed replaces the one
recorded; ``--replace`` first drops everything recorded for that study on that machine.
``--add-precision F32_DIR BF16_DIR`` records a float32 run and its bfloat16 twin for the README's
mixed-precision table (``playbook/run/precision_report.py``). ``--add-sweep DIR`` records a
sweep run for its study page's sweep tables (``playbook/run/sweep_report.py``).
``--add-gpu-json`` records the rows of a device JSON (``benchmarks/device/collect.py``) whose
config is the one ``--command`` gives, one run per seed. ``PLAYBOOK_RESULTS_DIR`` moves
``results/`` (the tests use it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playbook.run import blocks, precision_report, recording, sweep_report, tables
from playbook.run import results as res
from playbook.run.rundir import RunDirError


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m launch.report", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--add", metavar="DIR", help="Record a finished run directory.")
  parser.add_argument("--add-gpu-json", metavar="FILE",
                      help="Record the rows of a device JSON whose config --command gives.")
  parser.add_argument("--add-precision", nargs=2, metavar=("F32_DIR", "BF16_DIR"),
                      help="Record a float32 run and the same config's bfloat16 run.")
  parser.add_argument("--add-sweep", metavar="DIR",
                      help="Record a finished sweep run for its study page's sweep tables.")
  parser.add_argument("--command", help="The launch.main command that made the run "
                      "(default for --add: rebuilt from config.json; required with "
                      "--add-gpu-json unless --study names a study run with its defaults).")
  parser.add_argument("--replace", action="store_true",
                      help="Drop what is recorded for the study on that machine first.")
  parser.add_argument("--study", help="Print this study's block (docs/studies/<study>.md).")
  parser.add_argument("--write", action="store_true",
                      help="Rewrite the generated blocks of README.md and docs/studies/*.md.")
  parser.add_argument("--check", action="store_true",
                      help="Exit 1, naming them, if generated blocks differ from results/.")
  parser.add_argument("--images", action="store_true",
                      help="Refresh docs/img/ from runs/<study>/plots and results/.")
  args = parser.parse_args(argv)
  root = Path(os.environ.get("PLAYBOOK_RESULTS_DIR") or res.RESULTS_DIR)
  try:
    if args.add:
      path, messages = recording.add_run(args.add, command=args.command, replace=args.replace,
                                         root=root)
      _say(path, messages)
    elif args.add_precision:
      _say(precision_report.add_pair(*args.add_precision, root=root), [])
    elif args.add_sweep:
      _say(sweep_report.add_sweep(args.add_sweep, root=root), [])
    elif args.add_gpu_json:
      command = args.command
      if command is None:
        if not args.study:
          parser.error("--add-gpu-json needs --command (or --study for the study's defaults)")
        command = f"python -m launch.main --config=experiments/{args.study}.py " \
                  f"--workdir=runs/{args.study}"
      for path, messages in recording.add_gpu_json(args.add_gpu_json, command=command,
                                                   replace=args.replace, root=root):
        _say(path, messages)
    elif args.write:
      written = blocks.write_blocks(root)
      print("\n".join(f"rewrote {p.relative_to(res.ROOT)}" for p in written) or "up to date")
    elif args.check:
      stale = blocks.stale_blocks(root)
      if stale:
        print("stale: " + "; ".join(stale) + ". Run `python -m launch.report --write`.",
              file=sys.stderr)
        return 1
      print("up to date")
    elif args.images:
      from playbook.run import docimages
      for line in docimages.refresh(root):
        print(line)
    elif args.study:
      print(tables.study_block(args.study, root))
    else:
      print(tables.table(root))
  except (res.ReportError, RunDirError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _say(path: Path, messages: list[str]) -> None:
  try:
    shown = path.resolve().relative_to(res.ROOT)
  except ValueError:
    shown = path
  print(f"recorded in {shown}" + "".join(f"\n  note: {m}" for m in messages))


if __name__ == "__main__":
  sys.exit(main())
