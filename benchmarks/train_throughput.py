"""Training-step throughput of the three MNIST-family models: JAX (the library's own path) vs PyTorch.

    .venv/bin/pip install -r requirements-bench.txt
    PLAYBOOK_DATA_DIR=/path/to/data .venv/bin/python -m benchmarks.train_throughput

Columns (compiles excluded by a warm-up call; JAX timings end in ``jax.block_until_ready``):
``jax_scan``, the trainer's path: ``fit``'s jitted epoch (``benchmarks/jax_epoch.py``), one call
one "epoch" of ``--steps`` steps over the first ``steps * batch_size`` real training images
(augmentation off); ``jax_dispatch``, the same train step jitted and called from Python once per
batch (gather and key inside the call, one more call per epoch for the shuffle); ``torch``, the
PyTorch peer (``harness.TorchModel``: same widths, AdamW, eager, default threads), and
``torch_threads1``, the same on one intra-op thread. ``vmap``: the seed-vmapped epoch
(``num_seeds=8``, as ``fit``) against the one-seed epoch run once per seed (``--vmap_repeats=0``
or ``--vmap_batch_size=0`` skips it, and the output says so). ``roofline``: the fp32 matmul rate
(``harness.matmul_roofline``) and each model's training FLOPs (nominal and needed,
``harness.training_flops_per_example``) at the largest batch as a fraction of the JAX peak.

Timing on a shared machine is ``benchmarks/harness.py``'s: quiet gating, rounds interleaving the
columns in a rotating order until each has ``--repeats`` quiet calls (or ``--time_budget`` runs
out), medians of the quiet calls, every raw timing and its load in the JSON.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

from benchmarks import harness
from benchmarks.harness import Machine, TorchModel, ints, summarise, timed_rounds
from benchmarks.jax_epoch import JaxModel, run_jax_dispatch, run_jax_scan, vmap_comparison
from playbook.data import mnist

MODELS = ("mnist_dense", "mnist_mlp", "fashion_mlp")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default=",".join(MODELS), help="Experiment names (experiments/).")
  p.add_argument("--batch_sizes", default="128,4096", help="Comma-separated batch sizes.")
  p.add_argument("--steps", default="100,13",
                 help="Steps per timed call: one number, or one per batch size (capped at the "
                      "steps of one epoch of the 55000 training images).")
  harness.add_timing_args(p, max_wait=20.0)
  p.add_argument("--max_rounds", type=int, default=0, help="Most rounds (default 3 * repeats).")
  p.add_argument("--time_budget", type=float, default=540.0,
                 help="Seconds after which no more repeats start (each column keeps >= 1 call).")
  p.add_argument("--num_seeds", type=int, default=8, help="Seeds of the vmap comparison.")
  p.add_argument("--vmap_batch_size", type=int, default=128,
                 help="Batch size of the vmap comparison (0 skips it).")
  p.add_argument("--vmap_steps", type=int, default=50, help="Steps per seed per timed call.")
  p.add_argument("--vmap_repeats", type=int, default=3,
                 help="Quiet timed calls wanted per side of the vmap comparison (0 skips it).")
  p.add_argument("--matmul_sizes", default="1024,2048,4096", help="Square matmul sizes (roofline).")
  p.add_argument("--no_dispatch", action="store_true", help="Skip the per-step dispatch path.")
  p.add_argument("--torch_extra_threads", type=int, default=1,
                 help="Also time the torch peer with this many intra-op threads (an extra column, "
                      "torch_threads<N>; 0 skips it).")
  p.add_argument("--torch_compile", action="store_true",
                 help="Also time torch.compile of the peer's model (an extra column).")
  p.add_argument("--data_dir", default=None, help="Data root (default: $PLAYBOOK_DATA_DIR).")
  p.add_argument("--out", default="benchmarks/results/train_throughput.json")
  return p.parse_args(argv)


def make_cell(name, config, jm: JaxModel, tm: TorchModel, bs: int, n_steps: int, kinds, args):
  """One (model, batch size): warmed up (compiles excluded from every timing); returns the cell
  with ``fns[kind](round)``, each running one timed call."""
  import torch
  n_steps = min(n_steps, len(jm.train_y) // bs)
  rows = jm.data(n_steps * bs)
  cell = {"name": name, "bs": bs, "steps": n_steps, "compile": {}, "fns": {}, "live": {}}
  scan_fn, step_fns = jm.epoch_fn(bs, rows.num_examples), jm.step_fns(bs, rows.num_examples)
  compiled = TorchModel(config, jm.train_x, jm.train_y, compile_model=True) if (
      "torch_compile" in kinds) else None
  runs = {
      "jax_scan": lambda state, epoch: run_jax_scan(scan_fn, state, rows.arrays, epoch),
      "jax_dispatch": lambda state, epoch: run_jax_dispatch(*step_fns, state, rows.arrays, epoch,
                                                            n_steps),
      "torch": lambda _, __: tm.run_epoch(bs, n_steps),
      "torch_compile": lambda _, __: compiled.run_epoch(bs, n_steps)}
  threads = torch.get_num_threads()

  def fewer_threads(_, __):
    torch.set_num_threads(args.torch_extra_threads)
    try:
      tm.run_epoch(bs, n_steps)
    finally:
      torch.set_num_threads(threads)

  runs[f"torch_threads{args.torch_extra_threads}"] = fewer_threads
  for kind in kinds:
    t0 = time.perf_counter()
    cell["live"][kind] = runs[kind](jm.state(bs) if kind.startswith("jax") else None, 0)
    cell["compile"][kind] = time.perf_counter() - t0

    def call(epoch, kind=kind):
      cell["live"][kind] = runs[kind](cell["live"][kind], epoch)

    cell["fns"][kind] = call
  print(f"  warm-up {name} batch {bs}: compile + first call "
        + ", ".join(f"{k} {v:.1f} s" for k, v in cell["compile"].items()), flush=True)
  return cell


def cell_row(cell, samples, config, peak_jax: float, quiet: float) -> dict:
  flops, needed = harness.training_flops_per_example(config)
  row = {"steps_per_call": cell["steps"], "flops_per_example": flops,
         "needed_flops_per_example": needed, "compile_and_first_call_seconds": cell["compile"]}
  for kind, kind_samples in samples.items():
    s = summarise(kind_samples, cell["steps"], quiet)
    s["steps_per_s"], s["best_steps_per_s"] = s.pop("per_s"), s.pop("best_per_s")
    s["examples_per_s"] = s["steps_per_s"] * cell["bs"]
    s["gflops"] = s["examples_per_s"] * flops / 1e9
    s["fraction_of_jax_matmul_peak"] = s["gflops"] / peak_jax
    s["needed_gflops"] = s["examples_per_s"] * needed / 1e9
    s["needed_fraction_of_jax_matmul_peak"] = s["needed_gflops"] / peak_jax
    row[kind] = s
  speed = lambda kind, key="steps_per_s": row[kind][key]  # noqa: E731
  for kind in samples:
    if kind.startswith("torch"):
      row[f"ratio_jax_scan_over_{kind}"] = speed("jax_scan") / speed(kind)
  if "jax_dispatch" in row:
    row["ratio_jax_dispatch_over_torch"] = speed("jax_dispatch") / speed("torch")
  row["ratio_best_jax_scan_over_best_torch"] = (speed("jax_scan", "best_steps_per_s")
                                                / speed("torch", "best_steps_per_s"))
  return row


def main(argv=None) -> dict:
  args = parse_args(argv)
  import torch
  if args.data_dir:
    os.environ["PLAYBOOK_DATA_DIR"] = args.data_dir
  models, batch_sizes, steps_arg = [m for m in args.models.split(",") if m], \
      ints(args.batch_sizes), ints(args.steps)
  steps_arg *= len(batch_sizes) if len(steps_arg) == 1 else 1
  if len(steps_arg) != len(batch_sizes):
    raise SystemExit("--steps needs one value, or one per batch size.")
  machine = Machine(args.quiet, args.max_wait)
  load_before, started = os.getloadavg(), time.perf_counter()
  deadline = started + args.time_budget

  print("roofline (fp32 matmul):", flush=True)
  roofline = {"matmul": harness.matmul_roofline(machine, ints(args.matmul_sizes), args.repeats)}
  peak_jax = max(v["jax"]["per_s"] for v in roofline["matmul"].values())
  roofline.update(jax_peak_gflops=peak_jax,
                  torch_peak_gflops=max(v["torch"]["per_s"] for v in roofline["matmul"].values()))

  kinds = ["jax_scan", "torch"] + ([] if args.no_dispatch else ["jax_dispatch"])
  if args.torch_extra_threads and args.torch_extra_threads != torch.get_num_threads():
    kinds.append(f"torch_threads{args.torch_extra_threads}")
  kinds += ["torch_compile"] if args.torch_compile else []
  datasets, jax_models, configs, cells = {}, {}, {}, []
  for name in models:  # One load per data set.
    configs[name] = config = importlib.import_module(f"experiments.{name}").get_config()
    if config.data.name not in datasets:
      datasets[config.data.name] = mnist.load(config.data).train
    train = datasets[config.data.name]
    jax_models[name] = jm = JaxModel(name, config, train.x, train.y)
    tm = TorchModel(config, train.x, train.y)
    cells += [make_cell(name, config, jm, tm, bs, n, kinds, args)
              for bs, n in zip(batch_sizes, steps_arg)]

  all_samples = timed_rounds(machine, [cell["fns"] for cell in cells], repeats=args.repeats,
                             max_rounds=args.max_rounds or 3 * args.repeats, deadline=deadline)
  results, summary = {}, []
  for cell, samples in zip(cells, all_samples):
    name, bs = cell["name"], cell["bs"]
    row = cell_row(cell, samples, configs[name], peak_jax, args.quiet)
    results.setdefault(name, {"hidden": list(configs[name].model.hidden),
                              "dropout": configs[name].model.dropout,
                              "learning_rate": configs[name].optim.learning_rate})[str(bs)] = row
    jax_row = row["jax_scan"]
    line = {"model": name, "batch_size": bs,
            **{f"{k}_steps_per_s": round(row[k]["steps_per_s"], 2) for k in kinds},
            "ratio_jax_scan_over_torch": round(row["ratio_jax_scan_over_torch"], 3),
            "jax_scan_fraction_of_matmul_peak": round(jax_row["fraction_of_jax_matmul_peak"], 3),
            "jax_scan_needed_fraction_of_matmul_peak": round(
                jax_row["needed_fraction_of_jax_matmul_peak"], 3),
            "quiet_calls": {k: f"{row[k]['quiet_calls']}/{row[k]['calls']}" for k in kinds}}
    summary.append(line)
    print(f"{name:12s} batch {bs:5d}: " + ", ".join(f"{k} {row[k]['steps_per_s']:.1f}"
                                                     for k in kinds)
          + f" steps/s; jax_scan/torch {row['ratio_jax_scan_over_torch']:.2f}x; jax_scan "
          f"{jax_row['gflops']:.1f} GFLOP/s ({100 * jax_row['fraction_of_jax_matmul_peak']:.0f} % "
          f"of matmul peak, {100 * jax_row['needed_fraction_of_jax_matmul_peak']:.0f} % counting "
          "needed FLOPs); quiet calls " + " ".join(line["quiet_calls"].values()), flush=True)
  cells.clear()

  if args.vmap_batch_size and args.vmap_repeats > 0:
    vmap = {name: vmap_comparison(jax_models[name], machine, batch_size=args.vmap_batch_size,
                                  num_seeds=args.num_seeds, steps=args.vmap_steps,
                                  repeats=args.vmap_repeats, deadline=deadline + 120)
            for name in models}
  else:  # No timed calls means no median: say so rather than report (or crash on) nothing.
    vmap = {"skipped": f"--vmap_batch_size={args.vmap_batch_size} "
                       f"--vmap_repeats={args.vmap_repeats}: no vmap comparison timed"}
    print(f"vmap comparison skipped ({vmap['skipped']})", flush=True)

  largest = str(max(batch_sizes))
  roofline["at_batch"] = int(largest)
  roofline["flops_model"] = (
      "nominal: 6 * sum(fan_in * fan_out) per example (forward 2x, backward 4x); needed: the same "
      "less 2 * fan_in * fan_out of the first layer, whose input gradient is never computed")
  roofline["models"] = {name: {
      "flops_per_example": results[name][largest]["flops_per_example"],
      "needed_flops_per_example": results[name][largest]["needed_flops_per_example"],
      **{f"{k}_{m}": results[name][largest][k][m] for k in kinds for m in (
          "gflops", "fraction_of_jax_matmul_peak", "needed_fraction_of_jax_matmul_peak")}}
      for name in models}

  bar = None
  if "mnist_mlp" in results and "128" in results["mnist_mlp"]:
    ratio = results["mnist_mlp"]["128"]["ratio_jax_scan_over_torch"]
    bar = {"criterion": "mnist_mlp (784-512-512-10) at batch 128: jax_scan >= 2x torch",
           "ratio": ratio, "met": bool(ratio >= 2.0)}
  out = {
      "command": harness.command("benchmarks.train_throughput", argv),
      "environment": harness.environment(),
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
      "seconds_waiting_for_quiet": machine.waited, "total_seconds": time.perf_counter() - started,
      "settings": {"repeats": args.repeats, "batch_sizes": batch_sizes, "steps": steps_arg,
                   "quiet_cores": args.quiet, "max_wait": args.max_wait,
                   "statistic": "median over the quiet timed calls (all calls if none was quiet) "
                                "of one call: one scan epoch of steps_per_call steps (torch: the "
                                "same number of steps)"},
      "bar": bar, "summary": summary, "results": results, "vmap": vmap, "roofline": roofline,
  }
  path = harness.write_json(args.out, out)
  print(f"wrote {path} ({out['total_seconds']:.0f} s, {machine.waited:.0f} s of it waiting for "
        "a quiet machine)")
  return out


if __name__ == "__main__":
  main()
