"""Where a classifier study's training step spends its time: a per-op profile of the trainer's
jitted epoch (``loop.make_train_epoch``, what ``fit`` runs), from a ``jax.profiler`` trace.

    PLAYBOOK_DATA_DIR=/path/to/data .venv/bin/python -m benchmarks.step_profile \\
        --config=experiments/cifar10_cnn.py [--batch_size=128] [--steps=4] [--top=20]

Prints the wall time per step of one epoch of ``--steps`` steps, then the ops (XLA thunks: fused
kernels, YNNPACK fusions, convolutions, dots) with the most time per step, each with its HLO
shape and the JAX operation it came from. Op times overlap when XLA runs independent ops side by
side, so they can sum to more than the wall time. Augmentation is off. The trace is kept under
``--trace_dir`` for TensorBoard / Perfetto.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true")

import jax  # noqa: E402  (after XLA_FLAGS: the flag must be set before the backend starts)

from benchmarks.jax_epoch import JaxModel, run_jax_scan, study_config  # noqa: E402
from playbook.tasks import classify  # noqa: E402


def op_descriptions(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> 'shape  op_name' from the compiled module's text."""
  out = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s+(?:ROOT )?%?([\w.\-]+) = (\S+) ", line)
    if m:
      op = re.search(r'op_name="([^"]*)"', line)
      out[m.group(1)] = f"{m.group(2)}  {'/'.join(op.group(1).split('/')[-3:]) if op else ''}"
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", required=True,
                 help="experiments/<study>.py[:quick] (a study of the classify task)")
  p.add_argument("--batch_size", type=int, default=0, help="Default: the config's.")
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--top", type=int, default=20)
  p.add_argument("--trace_dir", default="runs/benchmarks/step_profile")
  args = p.parse_args()
  config = study_config(args.config)
  config.augment.max_shift, config.augment.flip_lr = 0, False
  batch_size = args.batch_size or config.train.batch_size
  train = classify.load_data(config.data).train
  model = JaxModel(config.study, config, train.x, train.y)
  rows = model.data(args.steps * batch_size)
  epoch_fn = model.epoch_fn(batch_size, rows.num_examples)
  state = run_jax_scan(epoch_fn, model.state(batch_size), rows.arrays, 0)  # Compile.
  start = time.perf_counter()
  state = run_jax_scan(epoch_fn, state, rows.arrays, 1)
  print(f"{config.study} batch {batch_size}: "
        f"{(time.perf_counter() - start) / args.steps * 1e3:.1f} ms per step (untraced)")
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    state = run_jax_scan(epoch_fn, state, rows.arrays, 2)
  trace = max(Path(args.trace_dir).glob("plugins/profile/*/perfetto_trace.json.gz"),
              key=os.path.getmtime)
  events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(("Thunk", "$", "Slinky", "Pjit")):
      total[e["name"]] += e.get("dur", 0)
  described = op_descriptions(epoch_fn.lower(state, rows.arrays, 3).compile().as_text())
  print(f"summed op time {sum(total.values()) / args.steps / 1e3:.1f} ms per step; top ops:")
  for name, micros in total.most_common(args.top):
    print(f"  {micros / args.steps / 1e3:8.1f} ms  {name:32s} {described.get(name, '')}")


if __name__ == "__main__":
  main()
