"""Throughput of the trainer's epoch at 1, 2, 4 and 8 devices, at the same global batch size.

    PLAYBOOK_DATA_DIR=/path/to/data .venv/bin/python -m benchmarks.scaling
    # -> benchmarks/results/scaling_cpu.json (on a GPU host: --platform=gpu --devices=1,2,4,8,
    #    which uses the real GPUs and writes scaling_gpu.json)

Each device count runs in its own process. On CPU the devices are forced host devices
(``--xla_force_host_platform_device_count=N``): N logical devices that share this machine's
cores, so the ideal is *no* speed-up, and the figure measures what splitting the program costs
(SPMD partitioning, the per-step gradient all-reduce or FSDP gathers between the logical devices,
smaller per-device matmuls). On real accelerators the same program is the scale-out path.

What is timed is exactly ``fit``'s program: ``playbook.train.loop.make_train_epoch`` (one
``lax.scan`` epoch, state donated, batches split over the ``(data, fsdp)`` mesh) on the study's
model, loss and optimiser, the training rows placed with ``parallel.shard_rows`` and the state
created with ``loop.init_states(..., mesh)``. One timed call is one epoch of ``--steps`` steps
over the first ``steps * batch_size`` training images; the first call (compilation) is excluded,
every timing ends in ``jax.block_until_ready``, the figure is the median of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import ints, positive_int

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--study", default="mnist_mlp", help="Experiment in experiments/ (its model, "
                 "loss and optimiser).")
  p.add_argument("--devices", default="1,2,4,8", help="Comma-separated device counts.")
  p.add_argument("--batch_sizes", default="128,1024", help="Global batch sizes.")
  p.add_argument("--steps", default="64,16", help="Steps per timed epoch, per batch size.")
  p.add_argument("--fsdp", default="1,-1", help="parallel.fsdp values to time: 1 = data "
                 "parallel (replicated parameters), -1 = FSDP over every device.")
  p.add_argument("--repeats", type=positive_int, default=5)
  p.add_argument("--platform", default="cpu", choices=["cpu", "gpu", "tpu"],
                 help="cpu: forced host devices; gpu/tpu: the first N real devices.")
  p.add_argument("--data_dir", default=None, help="Data root (default: $PLAYBOOK_DATA_DIR).")
  p.add_argument("--out", default=None,
                 help="Default: benchmarks/results/scaling_<platform>.json.")
  p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
  return p.parse_args(argv)


# ----------------------------------------------------------------------------- one device count


def worker(args) -> dict:
  """Runs in a process whose JAX sees ``args.worker`` devices; returns its timings."""
  import jax
  import jax.numpy as jnp

  from benchmarks.jax_epoch import study_config
  from playbook import parallel
  from playbook.run import compile_cache
  from playbook.tasks import classify
  from playbook.train import loop, steps

  compile_cache.enable()
  n = args.worker
  devices = jax.devices()[:n]
  assert len(devices) == n, f"asked for {n} devices, JAX sees {jax.devices()}"
  config = study_config(args.study)
  if args.data_dir:
    config.data.dir = args.data_dir
  data = classify.load_data(config.data)

  rows = []
  for batch_size, num_steps in zip(ints(args.batch_sizes), ints(args.steps)):
    num_examples = batch_size * num_steps
    train = {"image": data.train.x[:num_examples], "label": data.train.y[:num_examples]}
    config.train.batch_size = batch_size  # The study's learner (model, loss, optimiser) at it.
    learner = classify.flax_learner(config, len(data.class_names), train["image"], num_steps)
    train_step = learner.train_step or steps.make_train_step(learner.loss_fn)
    for fsdp in ints(args.fsdp):
      if fsdp == -1 and n == 1 and 1 in ints(args.fsdp):
        continue  # One device: FSDP is the same program as data parallelism.
      mesh = parallel.make_mesh(fsdp, devices=devices)
      state = loop.init_states(learner.init_fn, learner.tx, 0, 1, mesh)
      on_device = parallel.shard_rows(train, mesh).arrays
      epoch = loop.make_train_epoch(state, train_step=train_step, batch_size=batch_size,
                                    num_examples=num_examples, mesh=mesh)
      start = time.perf_counter()
      state, metrics = epoch(state, on_device, 0)
      jax.block_until_ready((state, metrics))
      first = time.perf_counter() - start
      times = []
      for r in range(args.repeats):
        start = time.perf_counter()
        state, metrics = epoch(state, on_device, r + 1)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
      seconds = harness.median(times)
      rows.append({"devices": n, "mode": "data_parallel" if mesh.shape["fsdp"] == 1 else "fsdp",
                   "mesh": dict(mesh.shape), "global_batch_size": batch_size,
                   "per_device_batch_size": batch_size // n, "steps": num_steps,
                   "steps_per_second": num_steps / seconds,
                   "examples_per_second": num_steps * batch_size / seconds,
                   "epoch_seconds_median": seconds, "epoch_seconds": times,
                   "first_call_seconds": first,
                   "final_loss": float(jnp.mean(metrics["loss"][-1]))})
      print(f"  {n} devices, {rows[-1]['mode']:13s} batch {batch_size:5d}: "
            f"{rows[-1]['steps_per_second']:8.1f} steps/s", file=sys.stderr, flush=True)
  return {"rows": rows, "device_kind": devices[0].device_kind, "platform": devices[0].platform}


# ------------------------------------------------------------------------------------ driver


def run_worker(args, n: int) -> dict:
  env = dict(os.environ)
  if args.platform == "cpu":
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
    env["JAX_PLATFORMS"] = "cpu"
  cmd = [sys.executable, "-m", "benchmarks.scaling", f"--worker={n}", f"--study={args.study}",
         f"--batch_sizes={args.batch_sizes}", f"--steps={args.steps}", f"--fsdp={args.fsdp}",
         f"--repeats={args.repeats}"] + ([f"--data_dir={args.data_dir}"] if args.data_dir else [])
  proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
  if proc.returncode:
    raise SystemExit(f"worker with {n} devices failed (exit {proc.returncode})")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    print(json.dumps(worker(args)))
    return
  load_before = os.getloadavg()
  started = time.perf_counter()
  results = {}
  for n in ints(args.devices):
    print(f"{n} device(s):", file=sys.stderr, flush=True)
    results[n] = run_worker(args, n)
  rows = [row for r in results.values() for row in r["rows"]]
  base = {r["global_batch_size"]: r["steps_per_second"] for r in rows if r["devices"] == 1}
  for row in rows:  # Relative to 1 device at the same global batch (1.0 = no overhead on CPU).
    row["relative_to_1_device"] = row["steps_per_second"] / base[row["global_batch_size"]]
    row["efficiency_if_devices_were_independent"] = row["relative_to_1_device"] / row["devices"]
  out = {
      "benchmark": "benchmarks/scaling.py",
      "command": harness.command("benchmarks.scaling", argv),
      "study": args.study,
      "platform": args.platform,
      "device_kind": next(iter(results.values()))["device_kind"],
      "what": ("steps/s of fit's jitted train epoch (lax.scan, donated state, batches split over "
               "a (data, fsdp) mesh), same global batch at every device count, median of "
               f"{args.repeats} epochs after the compiling one"),
      "note": ("Forced host devices share this machine's cores: N CPU 'devices' cannot be faster "
               "than 1 (which already uses every core), so relative_to_1_device measures the "
               "overhead of the partitioned program; efficiency_if_devices_were_independent is "
               "relative_to_1_device / N, what the same numbers would mean on N real devices."
               if args.platform == "cpu" else "Real devices."),
      "host": harness.environment(loadavg_before=load_before, loadavg_after=os.getloadavg()),
      "wall_seconds": time.perf_counter() - started,
      "rows": rows,
  }
  path = harness.write_json(
      args.out or ROOT / "benchmarks" / "results" / f"scaling_{args.platform}.json", out)
  print(f"\n{'devices':>7} {'mode':>13} {'batch':>6} {'steps/s':>9} {'vs 1 dev':>9}")
  for r in rows:
    print(f"{r['devices']:>7} {r['mode']:>13} {r['global_batch_size']:>6} "
          f"{r['steps_per_second']:>9.1f} {r['relative_to_1_device']:>8.2f}x")
  print(f"-> {path}")


if __name__ == "__main__":
  main()
