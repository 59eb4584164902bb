"""Inference latency of each exported model in each runtime on this CPU, against JAX-jit.

    python -m launch.export --workdir=runs/mnist_mlp --quantize=none,dynamic,int8   # per model
    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.export_latency \
        --workdirs=runs/mnist_dense,runs/mnist_mlp,runs/fashion_mlp
    # -> benchmarks/results/export_latency.json and a markdown table on stdout

For each run it reads ``DIR/export/`` (made by ``launch.export``) and the run's own JAX function
(``playbook.tasks.exportable``: the best checkpoint, eval mode), then times, on the real test
inputs of the export's parity batch (images; for the character LSTM one step of token and state):

* ``batch 1``: one call with one example (per-example latency, what an app pays per request);
* ``batch 32``: one call with 32 examples (fewer where the parity batch is smaller: the row's
  ``batch_sizes`` says how many). LiteRT's models have a fixed batch of one
  (``playbook/export/tflite.py``): its batch-32 figure is 32 calls, as an edge client makes them.

Runtimes: ``jax_jit`` (the exported function, jitted; ends in ``block_until_ready``), the TF
SavedModel's ``serving_default`` signature, LiteRT's signature runner on each ``.tflite`` (float32,
dynamic-range int8, full int8), and an onnxruntime CPU session, each as a client calls it (numpy
in, numpy out). Every runtime gets ``--threads`` intra-op threads (default 1; JAX too, through
``XLA_FLAGS``), so each measures one core's work.

The machine is shared, and when it is oversubscribed a call's wall time is mostly waiting for a
core. So each sample records both this process's CPU time (``time.process_time``, all threads:
with one thread per runtime, what the call costs a core, nearly independent of the load) and the
wall time. Each timed sample is ``--calls`` calls in a row (after a warm-up), every round runs
every (runtime, batch) once in a rotating order, and figures are medians over ``--rounds``
rounds, with the other processes' CPU use during each sample in the JSON
(``benchmarks.harness.Machine``) and the load average at start and end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "--threads=1" in sys.argv or not any(a.startswith("--threads") for a in sys.argv):
  # One XLA thread, like the other runtimes (read when jax first starts its CPU backend).
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                             "false intra_op_parallelism_threads=1").strip()

import jax  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import Machine, median, positive_int  # noqa: E402
from playbook import tasks  # noqa: E402
from playbook.export import pipeline  # noqa: E402
from playbook.export.tf_cpu import tensorflow  # noqa: E402

BATCHES = (1, 32)
RUNTIME_OF = {"saved_model": "tf_saved_model", "tflite_float32": "litert_float32",
              "tflite_dynamic": "litert_dynamic", "tflite_int8": "litert_int8",
              "onnx": "onnxruntime"}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdirs", default="runs/mnist_dense,runs/mnist_mlp,runs/fashion_mlp")
  p.add_argument("--rounds", type=positive_int, default=9)
  p.add_argument("--calls", type=positive_int, default=50, help="Calls per timed sample.")
  p.add_argument("--threads", type=int, default=1)
  p.add_argument("--quiet", type=float, default=0.2, help="Cores others may use in a quiet call.")
  p.add_argument("--max_wait", type=float, default=1.0, help="Seconds to wait for quiet.")
  p.add_argument("--out", default="benchmarks/results/export_latency.json")
  return p.parse_args(argv)


def runtimes(workdir: Path, exportable, threads: int) -> dict:
  """runtime name -> (predict, size in bytes), JAX first, from ``DIR/export/report.json``."""
  report = json.loads((workdir / "export" / "report.json").read_text())
  jitted = jax.jit(exportable.fn)
  out = {"jax_jit": (lambda *x: jax.block_until_ready(jitted(*x)), None)}
  for key in RUNTIME_OF:
    if key not in report["formats"]:
      continue
    entry = report["formats"][key]
    predict = pipeline.loader(key)(workdir / "export" / entry["file"], exportable, threads)
    out[RUNTIME_OF[key]] = (predict, entry["size_bytes"])
  return out


def load_average() -> list[float]:
  return [round(v, 2) for v in os.getloadavg()]


def main(argv=None) -> dict:
  args = parse_args(argv)
  tf = tensorflow()
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  machine = Machine(args.quiet, args.max_wait)
  result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average_start": load_average(), "args": vars(args), "models": {}}
  for workdir in map(Path, args.workdirs.split(",")):
    exportable = tasks.exportable(workdir)
    runs = runtimes(workdir, exportable, args.threads)
    cells = [(name, b) for name in runs for b in BATCHES]
    batch = lambda b: [x[:b] for x in exportable.parity_inputs]
    for name, b in cells:  # Warm-up: compilation, allocation, XNNPACK packing.
      for _ in range(3):
        runs[name][0](*batch(b))
    samples = {cell: [] for cell in cells}
    for r in range(args.rounds):
      for name, b in cells[r % len(cells):] + cells[:r % len(cells)]:
        predict, x, cpu = runs[name][0], batch(b), []

        def calls():
          start = time.process_time()
          for _ in range(args.calls):
            predict(*x)
          cpu.append(time.process_time() - start)
        seconds, others = machine.time(calls)
        samples[(name, b)].append((seconds / args.calls, cpu[0] / args.calls, others))
    model = {}
    for name, (_, size) in runs.items():
      row = {"size_bytes": size, "batch_sizes": [len(batch(b)[0]) for b in BATCHES]}
      for b in BATCHES:
        for kind, i in (("wall", 0), ("cpu", 1)):
          times = [sample[i] for sample in samples[(name, b)]]
          jax_times = [sample[i] for sample in samples[("jax_jit", b)]]
          row[f"batch{b}_{kind}_ms"] = 1e3 * median(times)
          # Per round, against JAX in the same round.
          row[f"batch{b}_{kind}_vs_jax"] = median([t / j for t, j in zip(times, jax_times)])
          row[f"batch{b}_{kind}_samples_ms"] = [1e3 * t for t in times]
        row[f"batch{b}_other_cores_busy"] = [o for _, _, o in samples[(name, b)]]
      model[name] = row
    result["models"][exportable.name] = model
    print(f"{exportable.name}: done", file=sys.stderr)
  result["load_average_end"] = load_average()
  result["environment"] = environment(args.threads)
  harness.write_json(args.out, result)
  print(table(result))
  return result


def environment(threads: int) -> dict:
  import ai_edge_litert
  import onnxruntime
  import tensorflow as tf
  return harness.environment(threads=threads, tensorflow=tf.__version__,
                             onnxruntime=onnxruntime.__version__,
                             ai_edge_litert=getattr(ai_edge_litert, "__version__", "2.3.0"))


def table(result: dict) -> str:
  rows = ["| model | runtime | file size | batch 1: CPU ms per call (vs JAX) | batch 32: CPU ms per "
          "call (vs JAX) | batch 32: µs per example | wall ms, batch 1 / 32 |",
          "|---|---|---|---|---|---|---|"]
  for model, runs in result["models"].items():
    for name, r in runs.items():
      size = "" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.2f} MB"
      big = r.get("batch_sizes", BATCHES)[-1]  # Fewer than 32 where the parity batch is.
      rows.append(f"| {model} | {name} | {size} | {r['batch1_cpu_ms']:.3f} "
                  f"({r['batch1_cpu_vs_jax']:.2f}×) | {r['batch32_cpu_ms']:.3f} "
                  f"({r['batch32_cpu_vs_jax']:.2f}×){'' if big == 32 else f' [batch {big}]'} | "
                  f"{1e3 * r['batch32_cpu_ms'] / big:.1f} | "
                  f"{r['batch1_wall_ms']:.3f} / {r['batch32_wall_ms']:.3f} |")
  return "\n".join(rows)


if __name__ == "__main__":
  main()
