"""Train-step time in float32 against bfloat16 (``config.precision``), measured in one run.

    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.precision
    # -> benchmarks/results/precision_cpu.json

Five of the trainer's own steps, each in both precisions (parameters and optimiser state
float32 either way; ``playbook/models/precision.py``):

* ``mnist_mlp``: ``experiments/mnist_mlp.py`` (784-512-512-10, dropout 0.2, AdamW), batch 128;
* ``cifar10_cnn``: the seed CNN of ``experiments/cifar10_cnn.py:quick`` (conv 32-32-64-64, dense
  512; the fast im2col convolutions), batch 128;
* ``char_lstm``: ``experiments/char_lstm.py`` (2 x 512 LSTM, sequences of 100, batch 128, Adam
  with clipping), the state carried from batch to batch;
* ``scratch_nn`` and ``scratch_cnn``: the hand-derived networks of ``experiments/scratch_nn.py``
  (784-256-128-10) and ``experiments/scratch_cnn.py`` (conv 32-64, im2col matmuls), their hand
  backward pass and hand SGD, batch 128.

Each timed call is ``fit``'s jitted epoch of ``--steps`` steps on real training rows
(``jax_epoch.JaxModel`` for the classifiers and scratch networks, ``lstm_throughput.JaxSide``
for the LSTM), so a step is exactly what training runs: forward, backward and optimiser update.
Compilation is excluded (a warm-up call first). Both precisions of a model are timed in the same
rounds, in a rotating order, each call after waiting for a quiet machine
(``harness.timed_rounds``); a step's time is the median of the quiet calls (of all calls when
none was quiet) divided by the steps.
The ratio is bfloat16 / float32 step time: below 1 bfloat16 is faster.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks import harness
from benchmarks.harness import Machine, ints, median, positive_int, summarise, timed_rounds
from benchmarks.jax_epoch import JaxModel, run_jax_scan, study_config
from benchmarks.lstm_throughput import JaxSide
from playbook.run import rundir
from playbook.tasks import char_lm, classify

PRECISIONS = ("float32", "bfloat16")
STUDIES = {"mnist_mlp": "mnist_mlp", "cifar10_cnn": "cifar10_cnn:quick",  # The classifiers.
           "scratch_nn": "scratch_nn", "scratch_cnn": "scratch_cnn"}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="mnist_mlp,cifar10_cnn,char_lstm,scratch_nn,scratch_cnn",
                 help=f"Which of {', '.join([*STUDIES, 'char_lstm'])} to time.")
  p.add_argument("--steps", default="50,4,1,100,4",
                 help="Train steps per timed call, one per model (in --models order).")
  p.add_argument("--batch_size", type=positive_int, default=128)
  harness.add_timing_args(p)
  p.add_argument("--matmul_size", type=int, default=2048,
                 help="Side of the square matmul timed in both dtypes (0: skip).")
  p.add_argument("--out", default="benchmarks/results/precision_cpu.json")
  return p.parse_args(argv)


class ClassifierEpoch:
  """One classify study's jitted epoch (``JaxModel.epoch_fn``) in one precision."""

  def __init__(self, study: str, precision: str, batch_size: int, num_steps: int):
    config = study_config(study)
    config.precision = precision
    data = classify.load_data(config.data)
    rows = num_steps * batch_size
    self.model = JaxModel(study, config, data.train.x[:rows], data.train.y[:rows])
    self.fn = self.model.epoch_fn(batch_size, rows)
    self.state, self.data = self.model.state(batch_size), self.model.data(rows).arrays
    self.epoch = 0
    self()  # Compile.

  def __call__(self, _round=None):
    self.state = run_jax_scan(self.fn, self.state, self.data, self.epoch)
    self.epoch += 1


def lstm_epoch(precision: str, batch_size: int, num_steps: int) -> JaxSide:
  """``lstm_throughput.JaxSide``: the char_lstm study's jitted epoch (it compiles on creation)."""
  config = study_config("char_lstm")
  config.precision = precision
  config.train.batch_size = config.train.eval_batch_size = batch_size
  vocab, train, _, _ = char_lm.prepare_data(config)
  return JaxSide(config, len(vocab), train, num_steps)


def make_column(model: str, precision: str, batch_size: int, num_steps: int):
  if model == "char_lstm":
    return lstm_epoch(precision, batch_size, num_steps)
  return ClassifierEpoch(STUDIES[model], precision, batch_size, num_steps)


MATMULS = {  # name: (operand dtype, the dtype its products are summed in and returned).
    "float32": (jnp.float32, None),
    "bfloat16": (jnp.bfloat16, None),  # A bfloat16 result, as jnp.dot of bfloat16 arrays gives.
    "bfloat16_float32_sums": (jnp.bfloat16, jnp.float32),  # precision.dot, what the models run.
}


def matmul_rates(machine: Machine, n: int, repeats: int) -> dict:
  """GFLOP/s of a jitted square matmul in each form of ``MATMULS``: what XLA's CPU backend makes
  of bfloat16 matmuls on this machine, apart from any model."""
  out = {}
  for name, (dtype, sums) in MATMULS.items():
    dot = jax.jit(lambda a, sums=sums: jnp.matmul(a, a, preferred_element_type=sums))
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    jax.block_until_ready(dot(a))
    samples = [machine.time(lambda a=a, dot=dot: jax.block_until_ready(dot(a)))
               for _ in range(repeats)]
    out[name] = summarise(samples, 2 * n ** 3 / 1e9, machine.quiet)["per_s"]
  return out


def main(argv=None) -> dict:
  args = parse_args(argv)
  names, num_steps = args.models.split(","), ints(args.steps)
  if len(num_steps) != len(names) or any(n not in (*STUDIES, "char_lstm") for n in names):
    raise SystemExit(f"--models from {', '.join([*STUDIES, 'char_lstm'])}, with one --steps "
                     f"each; got {names} and {num_steps}.")
  machine = Machine(args.quiet, args.max_wait)
  groups = []
  for name, steps in zip(names, num_steps):
    print(f"compiling {name} ({steps} steps per call) in {' and '.join(PRECISIONS)}", flush=True)
    groups.append({p: make_column(name, p, args.batch_size, steps) for p in PRECISIONS})
  samples = timed_rounds(machine, groups, repeats=args.repeats, max_rounds=2 * args.repeats)

  models = {}
  for name, steps, got in zip(names, num_steps, samples):
    columns = {p: summarise(got[p], steps, args.quiet) for p in PRECISIONS}
    step_ms = {p: 1000 / columns[p]["per_s"] for p in PRECISIONS}
    # Rounds pair the two precisions' calls back to back: the median of the per-round ratios
    # as well as the ratio of the medians.
    paired = median(b / f for (f, _), (b, _) in zip(got["float32"], got["bfloat16"]))
    models[name] = {"steps_per_call": steps, "batch_size": args.batch_size,
                    "step_ms": step_ms,
                    "ratio_bf16_over_f32": step_ms["bfloat16"] / step_ms["float32"],
                    "ratio_bf16_over_f32_paired_median": paired,
                    "columns": columns}
    print(f"{name}: float32 {step_ms['float32']:.1f} ms/step, bfloat16 "
          f"{step_ms['bfloat16']:.1f} ms/step, bf16/f32 {models[name]['ratio_bf16_over_f32']:.2f} "
          f"(quiet calls {columns['float32']['quiet_calls']}, "
          f"{columns['bfloat16']['quiet_calls']})", flush=True)

  result = {
      "what": "train-step time (forward, backward, optimiser update; fit's jitted epoch) in "
              "float32 and bfloat16 compute, float32 parameters; ratio = bf16 / f32 step time",
      "models": models,
      "ratios_bf16_over_f32": {n: m["ratio_bf16_over_f32"] for n, m in models.items()},
      "matmul_gflop_s": (matmul_rates(machine, args.matmul_size, args.repeats)
                         if args.matmul_size else None),
      "cpu": rundir.cpu_model(),  # Model name and widest vector units (avx512_bf16 or not).
      "machine_waited_s": machine.waited,
      "command": harness.command("benchmarks.precision", argv),
      # The data root relative to here: no machine's absolute path in a committed result.
      "environment": harness.environment(),
  }
  out = harness.write_json(args.out, result)
  if result["matmul_gflop_s"]:
    print(f"matmul {args.matmul_size}^2: " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in result["matmul_gflop_s"].items()))
  print(f"results in {out}")
  return result


if __name__ == "__main__":
  main()
