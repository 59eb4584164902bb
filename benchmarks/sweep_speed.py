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

Then, in this process, where the time of a sweep goes (``--probe_steps``, 0 skips it): the
trainer's jitted epoch (``loop.make_train_epoch``, augmentation on) timed per step for one model
and for the 8-rate sweep, per model, against the machine's float32 matmul rate (a 2048^2
``jnp.dot``). When one model's step already runs near that rate, stacking 8 models in one program
cannot make each faster; the sweep's gain is then the start-up, data checks and compilation the
sequential runs pay 8 times. The floor of a step is its matmuls at that rate plus one model's
optimiser update alone (AdamW's pass over every parameter and its two moments, timed apart);
``speedup_if_every_step_ran_at_the_floor`` is the ratio the sweep would reach were each of its
models' steps at the floor and the rest of its wall time as measured.
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

from benchmarks.harness import (command, environment, median, positive_int,
                                training_flops_per_example, write_json)

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


def step_probe(rates: str, num_steps: int, repeats: int = 5) -> dict:
  """ms per train step of one mnist_mlp model and of the sweep of ``rates`` (per model), and
  the matmul rate they are measured against; median of ``repeats`` calls of ``num_steps``."""
  import jax
  import jax.numpy as jnp
  import optax
  from benchmarks.jax_epoch import study_config
  from playbook import parallel
  from playbook.data import augment
  from playbook.tasks import classify
  from playbook.train import loop, steps, sweep

  base = study_config("mnist_mlp")
  data = classify.load_data(base.data)
  mesh = parallel.make_mesh()
  batch = base.train.batch_size
  rows = parallel.shard_rows({"image": data.train.x[:batch * num_steps],
                              "label": data.train.y[:batch * num_steps]}, mesh)
  augment_fn = augment.image_augmenter(max_shift=base.augment.max_shift,
                                       flip_lr=base.augment.flip_lr)

  def median_ms(call) -> float:
    """Median ms of ``repeats`` calls of ``call``, after one that compiles."""
    call()
    seconds = []
    for _ in range(repeats):
      start = time.perf_counter()
      call()
      seconds.append(time.perf_counter() - start)
    return 1000 * median(seconds)

  def per_step_ms(config) -> float:
    swept = sweep.parse(config)
    models = swept.num_models if swept else 1
    learner = classify.flax_learner(config, 10, data.train.x, num_steps)
    state = loop.init_states(learner.init_fn, learner.tx, 0, models, mesh,
                             seed_cycle=swept.seeds if swept else None)
    if swept:
      state = loop.with_hyperparams(state, swept.hparams())
    epoch = loop.make_train_epoch(state, train_step=steps.make_train_step(learner.loss_fn),
                                  batch_size=batch, num_examples=rows.num_examples, mesh=mesh,
                                  num_seeds=models, augment_fn=augment_fn)
    calls = iter(range(repeats + 1))

    def call():
      nonlocal state
      state, metrics = epoch(state, rows.arrays, next(calls))
      jax.block_until_ready((state, metrics))
    return median_ms(call) / num_steps / models

  def optimizer_ms() -> float:
    """One model's optimiser update alone (AdamW over every parameter: memory traffic, no
    matmul), timed as a jitted scan of ``num_steps`` updates."""
    learner = classify.flax_learner(base, 10, data.train.x, num_steps)
    params = learner.init_fn(jax.random.PRNGKey(0))[0]
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    @jax.jit
    def updates(params, opt_state, grads):
      def body(carry, _):
        params, opt_state = carry
        update, opt_state = learner.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, update), opt_state), None
      return jax.lax.scan(body, (params, opt_state), None, length=num_steps)[0]

    state = (params, learner.tx.init(params))

    def call():
      nonlocal state
      state = jax.block_until_ready(updates(*state, grads))
    return median_ms(call) / num_steps

  swept_config = base.copy_and_resolve_references()
  swept_config.sweep.learning_rate = rates
  single, per_model = per_step_ms(base), per_step_ms(swept_config)
  optimizer = optimizer_ms()
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  matmul_gflops = 2 * n ** 3 / (median_ms(lambda: jax.block_until_ready(dot(a, a))) / 1000) / 1e9
  flops = training_flops_per_example(base)[1] * batch
  # No program does better than its matmuls at the matmul rate plus the optimiser's pass over
  # memory; the sweep's models can share neither (each has its own weights and state).
  floor = 1000 * flops / (matmul_gflops * 1e9) + optimizer
  return {"steps_per_call": num_steps, "batch_size": batch,
          "train_steps_per_epoch": len(data.train.x) // batch,
          "optimizer_ms_per_step": optimizer, "floor_ms_per_step": floor,
          "sweep_over_floor_per_model": per_model / floor,
          "single_model_ms_per_step": single, "sweep_ms_per_step_per_model": per_model,
          "sweep_over_single_per_model": per_model / single,
          "matmul_gflop_s": matmul_gflops,
          "single_model_gflop_s": flops / (single / 1000) / 1e9,
          "single_model_fraction_of_matmul_rate": flops / (single / 1000) / 1e9 / matmul_gflops}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--epochs", type=positive_int, default=3)
  parser.add_argument("--learning_rates", default=DEFAULT_RATES)
  parser.add_argument("--probe_steps", type=int, default=100,
                      help="Steps per timed call of the per-step probe (0 skips it).")
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
  }
  if args.probe_steps:
    report["per_step"] = probe = step_probe(args.learning_rates, args.probe_steps)
    # The sweep's wall time were every model's step at the floor, the rest (start-up, data,
    # compilation, evaluation, checkpoints) as measured: the most a CPU program could gain.
    steps = len(rates) * args.epochs * probe["train_steps_per_epoch"]
    at_floor = sweep_s - steps * (probe["sweep_ms_per_step_per_model"]
                                  - probe["floor_ms_per_step"]) / 1000
    report["speedup_if_every_step_ran_at_the_floor"] = sum(sequential) / at_floor
    print(f"per step: one model {probe['single_model_ms_per_step']:.2f} ms "
          f"({probe['single_model_fraction_of_matmul_rate']:.0%} of the {probe['matmul_gflop_s']:.0f}"
          f" GFLOP/s matmul rate), in the sweep {probe['sweep_ms_per_step_per_model']:.2f} ms per "
          f"model; floor {probe['floor_ms_per_step']:.2f} ms (matmuls at that rate plus "
          f"{probe['optimizer_ms_per_step']:.2f} ms of optimiser update)")
  report["environment"] = environment()
  write_json(args.out, report)
  bound = report.get("speedup_if_every_step_ran_at_the_floor")
  print(f"{len(rates)} learning rates, {args.epochs} epochs of mnist_mlp: one program "
        f"{sweep_s:.0f} s, {len(rates)} sequential runs {sum(sequential):.0f} s: "
        f"{report['speedup']:.2f}x" + (f" (at most {bound:.2f}x with every step at the floor)"
                                       if bound else "") + f"; {args.out}")
  return report


if __name__ == "__main__":
  main()
