"""Training-step throughput of the three MNIST-family models: JAX (the library's own path) vs PyTorch.

    .venv/bin/pip install -r requirements-bench.txt
    PLAYBOOK_DATA_DIR=/work/shared/data .venv/bin/python -m benchmarks.train_throughput

What is timed (compile excluded by a warm-up call; every JAX timing ends in
``jax.block_until_ready``):

* ``jax_scan``: the trainer's path. ``playbook.train.loop.make_train_epoch``, the function
  ``loop.fit`` calls: ``steps.train_epoch`` (a ``lax.scan`` of ``train_step`` over on-device
  shuffled batches) jitted with the state donated and vmapped over seeds when there are several,
  on ``parallel.make_mesh()``; the model, loss, optimiser and state made by
  ``playbook.classify.build_model`` / ``make_preprocess``, ``playbook.train.losses``,
  ``playbook.train.optim.make_optimizer`` and ``playbook.train.loop.init_states(..., mesh)``, the
  rows placed by ``parallel.shard_rows``. One timed call is one "epoch" of ``--steps`` steps over
  the first ``steps * batch_size`` real training images (augmentation off).
* ``jax_dispatch``: the same ``train_step``, jitted (state donated) and called from Python once per
  batch; the batch gather and the step's key are inside that one jitted call, the epoch's shuffle
  is one more jitted call per timed epoch.
* ``torch``: the PyTorch peer: ``nn.Sequential`` of Linear/ReLU/Dropout of the same widths,
  ``torch.optim.AdamW`` with the same learning rate and weight decay, ``F.cross_entropy``, the
  images as a uint8 tensor in memory; per step: index a shuffled batch, standardise, forward,
  backward, step (the tutorial loop, default threads, eager). ``torch_threads1``: the same with one
  intra-op thread (an extra column).
* ``vmap``: ``init_states(..., num_seeds=8)`` and the vmapped ``train_epoch`` (as ``fit`` does
  with ``num_seeds=8``) against the one-seed epoch run 8 times, one seed after the other.
* ``roofline``: this machine's fp32 matmul rate, from a jitted ``jnp.dot`` and ``torch.mm`` of
  square matrices; each model's training FLOPs (nominal: 6 * sum(fan_in * fan_out) per example,
  forward 2x, backward 4x; needed: less the first layer's input gradient, which is never
  computed) at the largest batch as a fraction of the JAX matmul peak.

A shared machine: before each timed call the script waits (up to ``--max_wait`` s) until other
processes use less than ``--quiet`` cores, and it measures how many cores they used during the
call (``/proc/stat`` minus this process's own CPU time). A call is "quiet" when that stays under
``--quiet``. Rounds repeat, interleaving JAX and torch in a rotating order, until every column has
``--repeats`` quiet calls (or ``--time_budget`` runs out). Reported figures are medians of the
quiet calls (of all calls where none was quiet; ``quiet_calls`` says which), plus the best call;
every raw timing and its load are in the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from playbook import classify, parallel
from playbook.data import mnist
from playbook.train import loop, steps
from playbook.train.losses import classification_loss
from playbook.train.optim import make_optimizer

MODELS = ("mnist_dense", "mnist_mlp", "fashion_mlp")
NUM_CLASSES = 10


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default=",".join(MODELS),
                 help="Comma-separated experiment names (configs in experiments/).")
  p.add_argument("--batch_sizes", default="128,4096", help="Comma-separated batch sizes.")
  p.add_argument("--steps", default="100,13",
                 help="Steps per timed call: one number, or one per batch size (capped at the "
                      "steps of one epoch of the 55000 training images).")
  p.add_argument("--repeats", type=int, default=5,
                 help="Quiet timed calls wanted per column (median of them is reported).")
  p.add_argument("--max_rounds", type=int, default=0,
                 help="Most rounds of calls (default 3 * repeats).")
  p.add_argument("--quiet", type=float, default=0.2,
                 help="Cores other processes may use for a call to count as quiet.")
  p.add_argument("--max_wait", type=float, default=20.0,
                 help="Most seconds to wait for a quiet machine before each timed call.")
  p.add_argument("--time_budget", type=float, default=540.0,
                 help="Seconds after which no more repeats start (each column keeps >= 1 call).")
  p.add_argument("--num_seeds", type=int, default=8, help="Seeds of the vmap comparison.")
  p.add_argument("--vmap_batch_size", type=int, default=128,
                 help="Batch size of the vmap comparison (0 skips it).")
  p.add_argument("--vmap_steps", type=int, default=50, help="Steps per seed per timed call.")
  p.add_argument("--vmap_repeats", type=int, default=3,
                 help="Quiet timed calls wanted for each side of the vmap comparison.")
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


def ints(text: str) -> list[int]:
  return [int(v) for v in str(text).split(",") if v]


def median(values):
  return float(statistics.median(values))


# ----------------------------------------------------------------------------------------- JAX


class JaxModel:
  """One experiment's model, loss, optimiser, state and jitted epoch, made as ``classify.run`` and
  ``loop.fit`` make them (mesh over this machine's devices, rows placed by ``shard_rows``)."""

  def __init__(self, name: str, config, train_x: np.ndarray, train_y: np.ndarray):
    self.name, self.config = name, config
    self.train_x, self.train_y = train_x, train_y
    self.mesh = parallel.make_mesh(config.parallel.fsdp)
    self.model = classify.build_model(config.model, NUM_CLASSES)
    preprocess = classify.make_preprocess(config.data)
    self.loss_fn = classification_loss(self.model, preprocess=preprocess,
                                       label_smoothing=config.optim.label_smoothing)
    sample = jnp.zeros((1, *train_x.shape[1:]), jnp.float32)

    def init_fn(rng):
      variables = self.model.init(rng, sample, train=False)
      params = variables.pop("params")
      return params, dict(variables)

    self.init_fn = init_fn
    self._fns = {}

  def tx(self, batch_size: int):
    """One optimiser per batch size (it is static in the state, so jitted functions key on it)."""
    key = ("tx", batch_size)
    if key not in self._fns:
      steps_per_epoch = len(self.train_y) // batch_size
      self._fns[key] = make_optimizer(self.config.optim, steps_per_epoch,
                                      self.config.train.num_epochs, batch_size)
    return self._fns[key]

  def data(self, num_examples: int) -> parallel.RowSharded:
    """The first ``num_examples`` real training images and labels, on the devices."""
    return parallel.shard_rows({"image": self.train_x[:num_examples],
                                "label": self.train_y[:num_examples]}, self.mesh)

  def state(self, batch_size: int, seed: int = 0, num_seeds: int = 1):
    return loop.init_states(self.init_fn, self.tx(batch_size), seed, num_seeds, self.mesh)

  def epoch_fn(self, batch_size: int, num_examples: int, num_seeds: int = 1):
    """``fit``'s jitted epoch (``loop.make_train_epoch``): vmapped over seeds when
    ``num_seeds > 1``, state donated."""
    key = ("epoch", batch_size, num_examples, num_seeds)
    if key not in self._fns:
      self._fns[key] = loop.make_train_epoch(
          self.state(batch_size, 0, num_seeds), train_step=steps.make_train_step(self.loss_fn),
          batch_size=batch_size,
          num_examples=num_examples, mesh=self.mesh, num_seeds=num_seeds, augment_fn=None)
    return self._fns[key]

  def step_fns(self, batch_size: int, num_examples: int):
    """Per-step dispatch: (shuffle(rng, epoch) -> (indices, key), step(state, data, ...))."""
    key = ("step", batch_size, num_examples)
    if key not in self._fns:
      loss_fn = self.loss_fn

      @jax.jit
      def shuffle(rng, epoch):
        # The same keys and batches train_epoch derives from the state.
        shuffle_rng, steps_rng = jax.random.split(jax.random.fold_in(rng, epoch))
        return steps.epoch_batches(shuffle_rng, num_examples, batch_size), steps_rng

      @functools.partial(jax.jit, donate_argnums=(0,))
      def step(state, data, batches, i, steps_rng):
        batch = {k: v[batches[i]] for k, v in data.items()}
        _, step_rng = jax.random.split(jax.random.fold_in(steps_rng, i))
        return steps.make_train_step(loss_fn)(state, batch, step_rng)

      self._fns[key] = (shuffle, step)
    return self._fns[key]


def run_jax_scan(fn, state, data: dict, epoch: int):
  state, metrics = fn(state, data, epoch)
  jax.block_until_ready((state, metrics))
  return state


def run_jax_dispatch(shuffle, step, state, data: dict, epoch: int, num_steps: int):
  batches, steps_rng = shuffle(state.rng, epoch)
  metrics = None
  for i in range(num_steps):
    state, metrics = step(state, data, batches, i, steps_rng)
  jax.block_until_ready((state, metrics))
  return state


# --------------------------------------------------------------------------------------- torch


class TorchModel:
  """The PyTorch peer: same widths, dropout, optimiser; uint8 data standardised per batch."""

  def __init__(self, config, train_x: np.ndarray, train_y: np.ndarray, compile_model=False):
    import torch
    from torch import nn
    self.torch = torch
    torch.manual_seed(0)
    layers, width = [nn.Flatten()], int(np.prod(train_x.shape[1:]))
    for hidden in config.model.hidden:
      layers += [nn.Linear(width, hidden), nn.ReLU()]
      if config.model.dropout:
        layers.append(nn.Dropout(config.model.dropout))
      width = hidden
    layers.append(nn.Linear(width, NUM_CLASSES))
    self.model = nn.Sequential(*layers)
    self.model.train()
    self.forward = torch.compile(self.model) if compile_model else self.model
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.optim.learning_rate,
                                 weight_decay=config.optim.weight_decay)
    self.x = torch.from_numpy(np.ascontiguousarray(train_x))          # uint8 (N, 28, 28, 1)
    self.y = torch.from_numpy(train_y.astype(np.int64))
    self.mean, self.std = float(config.data.mean), float(config.data.std)

  def run_epoch(self, batch_size: int, num_steps: int):
    torch, F = self.torch, self.torch.nn.functional
    n = num_steps * batch_size
    order = torch.randperm(n)
    for i in range(num_steps):
      idx = order[i * batch_size:(i + 1) * batch_size]
      x = (self.x[idx].float() / 255.0 - self.mean) / self.std
      y = self.y[idx]
      loss = F.cross_entropy(self.forward(x), y)
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
    return float(loss.detach())


# ---------------------------------------------------------------------- timing, machine, roofline


class Machine:
  """Times calls on a shared machine, noting how many cores other processes used meanwhile.

  Other processes' use is the machine's busy CPU time (``/proc/stat``) minus this process's own
  (``os.times``, all threads), over wall time: 0.0 on a quiet machine, 1.0 when another process
  held one core throughout. None where ``/proc/stat`` is missing.
  """

  def __init__(self, quiet: float, max_wait: float):
    self.quiet, self.max_wait = quiet, max_wait
    self.waited = 0.0

  @staticmethod
  def _read():
    try:
      fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
      return None
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # Not idle, iowait.
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.perf_counter()

  @staticmethod
  def _other_cores(start, end):
    if start is None or end is None:
      return None
    (b0, o0, w0), (b1, o1, w1) = start, end
    return max(0.0, ((b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9))

  def wait_for_quiet(self) -> None:
    """Returns once other processes used < ``quiet`` cores over 0.3 s, or after ``max_wait``."""
    deadline = time.perf_counter() + self.max_wait
    start = time.perf_counter()
    while time.perf_counter() < deadline:
      before = self._read()
      time.sleep(0.3)
      load = self._other_cores(before, self._read())
      if load is None or load < self.quiet:
        break
    self.waited += time.perf_counter() - start

  def time(self, fn) -> tuple[float, float | None]:
    """(seconds, cores other processes used) of one call of ``fn``, after waiting for quiet."""
    self.wait_for_quiet()
    before = self._read()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, self._other_cores(before, self._read())


def summarise(samples: list[tuple[float, float | None]], work: float, quiet: float) -> dict:
  """Rate (``work`` per second) from timed calls: median of the quiet ones, else of all."""
  quiet_s = [s for s, load in samples if load is not None and load < quiet]
  use = quiet_s or [s for s, _ in samples]
  return {"per_s": work / median(use), "best_per_s": work / min(s for s, _ in samples),
          "calls": len(samples), "quiet_calls": len(quiet_s),
          "seconds": [s for s, _ in samples],
          "other_cores_busy": [None if load is None else round(load, 3) for _, load in samples]}


def quiet_count(samples, quiet: float) -> int:
  return sum(1 for _, load in samples if load is not None and load < quiet)


def training_flops_per_example(config, input_size: int = 784) -> tuple[int, int]:
  """(nominal, needed) matmul FLOPs of one training example.

  Nominal: 6 * sum(fan_in * fan_out): forward 2x, backward 4x (input and weight gradients).
  Needed: the same without the first layer's input gradient, which nobody computes (the images
  need no gradient); that is what XLA and torch actually run. Biases and elementwise ops ignored.
  """
  widths = [input_size, *config.model.hidden, NUM_CLASSES]
  macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  return 6 * macs, 6 * macs - 2 * widths[0] * widths[1]


def matmul_roofline(machine: Machine, sizes: list[int], repeats: int) -> dict:
  import torch
  result = {}
  dot = jax.jit(jnp.dot)
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    jax.block_until_ready(dot(a, b))
    ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
    torch.mm(ta, tb)
    samples = {"jax": [], "torch": []}
    for _ in range(repeats):  # Interleaved.
      samples["jax"].append(machine.time(lambda: jax.block_until_ready(dot(a, b))))
      samples["torch"].append(machine.time(lambda: torch.mm(ta, tb)))
    gflop = 2 * n ** 3 / 1e9
    result[str(n)] = {k: summarise(v, gflop, machine.quiet) for k, v in samples.items()}
    print(f"  matmul {n}x{n}: jax {result[str(n)]['jax']['per_s']:.1f} GFLOP/s, "
          f"torch {result[str(n)]['torch']['per_s']:.1f} GFLOP/s "
          f"(quiet calls {result[str(n)]['jax']['quiet_calls']}/{repeats})", flush=True)
  return result


def environment() -> dict:
  import flax
  import jaxlib
  import optax
  import torch
  cpu_model = ""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
      "flax": flax.__version__, "optax": optax.__version__, "torch": torch.__version__,
      "platform": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
      "cpu_count": os.cpu_count(), "cpu_model": cpu_model,
      "torch_num_threads": torch.get_num_threads(),
      "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
      "PLAYBOOK_DATA_DIR": os.environ.get("PLAYBOOK_DATA_DIR", ""),
  }


# ---------------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
  args = parse_args(argv)
  import torch
  if args.data_dir:
    os.environ["PLAYBOOK_DATA_DIR"] = args.data_dir
  models = [m for m in args.models.split(",") if m]
  batch_sizes = ints(args.batch_sizes)
  steps_arg = ints(args.steps)
  if len(steps_arg) == 1:
    steps_arg *= len(batch_sizes)
  if len(steps_arg) != len(batch_sizes):
    raise SystemExit("--steps needs one value, or one per batch size.")
  max_rounds = args.max_rounds or 3 * args.repeats
  machine = Machine(args.quiet, args.max_wait)
  load_before = os.getloadavg()
  started = time.perf_counter()
  deadline = started + args.time_budget

  print("roofline (fp32 matmul):", flush=True)
  roofline = {"matmul": matmul_roofline(machine, ints(args.matmul_sizes), args.repeats)}
  peak_jax = max(v["jax"]["per_s"] for v in roofline["matmul"].values())
  peak_torch = max(v["torch"]["per_s"] for v in roofline["matmul"].values())
  roofline.update(jax_peak_gflops=peak_jax, torch_peak_gflops=peak_torch)

  # Data and models: one load per data set.
  datasets, jax_models, torch_models, configs = {}, {}, {}, {}
  for name in models:
    config = importlib.import_module(f"experiments.{name}").get_config()
    configs[name] = config
    if config.data.name not in datasets:
      datasets[config.data.name] = mnist.load(config.data).train
    train = datasets[config.data.name]
    jax_models[name] = JaxModel(name, config, train.x, train.y)
    torch_models[name] = TorchModel(config, train.x, train.y)

  # Warm-up: compiles, excluded from every timing.
  default_threads = torch.get_num_threads()
  extra = f"torch_threads{args.torch_extra_threads}"
  kinds = ["jax_scan", "torch"] + ([] if args.no_dispatch else ["jax_dispatch"])
  if args.torch_extra_threads and args.torch_extra_threads != default_threads:
    kinds.append(extra)
  if args.torch_compile:
    kinds.append("torch_compile")
  cells = []
  for name in models:
    for bs, n_steps in zip(batch_sizes, steps_arg):
      jm = jax_models[name]
      n_steps = min(n_steps, len(jm.train_y) // bs)
      rows = jm.data(n_steps * bs)
      cell = dict(name=name, bs=bs, steps=n_steps, data=rows.arrays, n=rows.num_examples,
                  compile={},
                  samples={k: [] for k in kinds})
      t0 = time.perf_counter()
      cell["jax_scan"] = run_jax_scan(jm.epoch_fn(bs, cell["n"]), jm.state(bs), cell["data"], 0)
      cell["compile"]["jax_scan"] = time.perf_counter() - t0
      if "jax_dispatch" in kinds:
        t0 = time.perf_counter()
        cell["jax_dispatch"] = run_jax_dispatch(*jm.step_fns(bs, cell["n"]), jm.state(bs),
                                                cell["data"], 0, n_steps)
        cell["compile"]["jax_dispatch"] = time.perf_counter() - t0
      torch_models[name].run_epoch(bs, min(n_steps, 3))
      if args.torch_compile:
        cell["compiled"] = TorchModel(configs[name], jm.train_x, jm.train_y, compile_model=True)
        t0 = time.perf_counter()
        cell["compiled"].run_epoch(bs, min(n_steps, 3))
        cell["compile"]["torch_compile"] = time.perf_counter() - t0
      cells.append(cell)
      print(f"  warm-up {name} batch {bs}: compile + first call "
            + ", ".join(f"{k} {v:.1f} s" for k, v in cell["compile"].items()), flush=True)

  def call(cell, kind, epoch):
    jm, tm, bs, n_steps = jax_models[cell["name"]], torch_models[cell["name"]], cell["bs"], \
        cell["steps"]
    if kind == "jax_scan":
      cell[kind] = run_jax_scan(jm.epoch_fn(bs, cell["n"]), cell[kind], cell["data"], epoch)
    elif kind == "jax_dispatch":
      cell[kind] = run_jax_dispatch(*jm.step_fns(bs, cell["n"]), cell[kind], cell["data"], epoch,
                                    n_steps)
    elif kind == "torch":
      tm.run_epoch(bs, n_steps)
    elif kind == "torch_compile":
      cell["compiled"].run_epoch(bs, n_steps)
    else:
      torch.set_num_threads(args.torch_extra_threads)
      try:
        tm.run_epoch(bs, n_steps)
      finally:
        torch.set_num_threads(default_threads)

  # Rounds of interleaved calls until every column has enough quiet calls.
  for r in range(max_rounds):
    pending = 0
    for cell in cells:
      order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
      for kind in order:
        samples = cell["samples"][kind]
        if quiet_count(samples, args.quiet) >= args.repeats or (
            samples and time.perf_counter() > deadline):
          continue
        pending += 1
        samples.append(machine.time(functools.partial(call, cell, kind, r + 1)))
    print(f"  round {r + 1}: {pending} calls ({time.perf_counter() - started:.0f} s)", flush=True)
    if not pending:
      break

  results, summary = {}, []
  for cell in cells:
    name, bs, n_steps = cell["name"], cell["bs"], cell["steps"]
    flops, needed = training_flops_per_example(configs[name])
    row = {"steps_per_call": n_steps, "flops_per_example": flops,
           "needed_flops_per_example": needed,
           "compile_and_first_call_seconds": cell["compile"]}
    for kind, samples in cell["samples"].items():
      s = summarise(samples, n_steps, args.quiet)
      s["steps_per_s"] = s.pop("per_s")
      s["best_steps_per_s"] = s.pop("best_per_s")
      s["examples_per_s"] = s["steps_per_s"] * bs
      s["gflops"] = s["examples_per_s"] * flops / 1e9
      s["fraction_of_jax_matmul_peak"] = s["gflops"] / peak_jax
      s["needed_gflops"] = s["examples_per_s"] * needed / 1e9
      s["needed_fraction_of_jax_matmul_peak"] = s["needed_gflops"] / peak_jax
      row[kind] = s
    for kind in kinds:
      if kind != "jax_scan" and kind.startswith("torch"):
        row[f"ratio_jax_scan_over_{kind}"] = row["jax_scan"]["steps_per_s"] / row[kind][
            "steps_per_s"]
    if "jax_dispatch" in row:
      row["ratio_jax_dispatch_over_torch"] = (row["jax_dispatch"]["steps_per_s"]
                                              / row["torch"]["steps_per_s"])
    row["ratio_best_jax_scan_over_best_torch"] = (row["jax_scan"]["best_steps_per_s"]
                                                  / row["torch"]["best_steps_per_s"])
    results.setdefault(name, {"hidden": list(configs[name].model.hidden),
                              "dropout": configs[name].model.dropout,
                              "learning_rate": configs[name].optim.learning_rate})[str(bs)] = row
    line = {"model": name, "batch_size": bs}
    line.update({f"{k}_steps_per_s": round(row[k]["steps_per_s"], 2) for k in kinds})
    line["ratio_jax_scan_over_torch"] = round(row["ratio_jax_scan_over_torch"], 3)
    line["jax_scan_fraction_of_matmul_peak"] = round(row["jax_scan"][
        "fraction_of_jax_matmul_peak"], 3)
    line["jax_scan_needed_fraction_of_matmul_peak"] = round(row["jax_scan"][
        "needed_fraction_of_jax_matmul_peak"], 3)
    line["quiet_calls"] = {k: f"{row[k]['quiet_calls']}/{row[k]['calls']}" for k in kinds}
    summary.append(line)
    print(f"{name:12s} batch {bs:5d}: "
          + ", ".join(f"{k} {row[k]['steps_per_s']:.1f}" for k in kinds)
          + f" steps/s; jax_scan/torch {row['ratio_jax_scan_over_torch']:.2f}x; jax_scan "
          + f"{row['jax_scan']['gflops']:.1f} GFLOP/s "
          + f"({100 * row['jax_scan']['fraction_of_jax_matmul_peak']:.0f} % of matmul peak, "
          + f"{100 * row['jax_scan']['needed_fraction_of_jax_matmul_peak']:.0f} % counting "
          + "needed FLOPs); "
          + "quiet calls " + " ".join(f"{v}" for v in line["quiet_calls"].values()), flush=True)
  cells.clear()

  vmap = {}
  if args.vmap_batch_size:
    bs, k = args.vmap_batch_size, args.num_seeds
    for name in models:
      jm = jax_models[name]
      n_steps = min(args.vmap_steps, len(jm.train_y) // bs)
      rows = jm.data(n_steps * bs)
      data = rows.arrays
      fn_k, fn_1 = jm.epoch_fn(bs, rows.num_examples, k), jm.epoch_fn(bs, rows.num_examples, 1)
      live = {"vmapped": run_jax_scan(fn_k, jm.state(bs, 0, k), data, 0),
              "sequential": [run_jax_scan(fn_1, jm.state(bs, s, 1), data, 0) for s in range(k)]}

      def run_vmapped(epoch):
        live["vmapped"] = run_jax_scan(fn_k, live["vmapped"], data, epoch)

      def run_sequential(epoch):
        live["sequential"] = [run_jax_scan(fn_1, st, data, epoch) for st in live["sequential"]]

      samples = {"vmapped": [], "sequential": []}
      for r in range(3 * args.vmap_repeats):
        if min(quiet_count(v, args.quiet) for v in samples.values()) >= args.vmap_repeats or (
            samples["vmapped"] and time.perf_counter() > deadline + 120):
          break
        pair = [("vmapped", run_vmapped), ("sequential", run_sequential)]
        for label, fn in (pair if r % 2 == 0 else pair[::-1]):
          samples[label].append(machine.time(functools.partial(fn, r + 1)))
      examples = k * n_steps * bs
      entry = {"batch_size": bs, "num_seeds": k, "steps_per_seed": n_steps}
      for label, s in samples.items():
        entry[label] = summarise(s, examples, args.quiet)
        entry[label]["examples_per_s"] = entry[label].pop("per_s")
        entry[label]["best_examples_per_s"] = entry[label].pop("best_per_s")
      entry["speedup_vmapped_over_sequential"] = (entry["vmapped"]["examples_per_s"]
                                                  / entry["sequential"]["examples_per_s"])
      vmap[name] = entry
      print(f"{name:12s} vmap {k} seeds batch {bs}: "
            f"{entry['vmapped']['examples_per_s']:.0f} examples/s vmapped vs "
            f"{entry['sequential']['examples_per_s']:.0f} sequential "
            f"({entry['speedup_vmapped_over_sequential']:.2f}x; quiet calls "
            f"{entry['vmapped']['quiet_calls']}/{entry['vmapped']['calls']}, "
            f"{entry['sequential']['quiet_calls']}/{entry['sequential']['calls']})", flush=True)

  largest = str(max(batch_sizes))
  roofline["at_batch"] = int(largest)
  roofline["flops_model"] = (
      "nominal: 6 * sum(fan_in * fan_out) per example (forward 2x, backward 4x); needed: the same "
      "less 2 * fan_in * fan_out of the first layer, whose input gradient is never computed")
  roofline["models"] = {
      name: {"flops_per_example": results[name][largest]["flops_per_example"],
             "needed_flops_per_example": results[name][largest]["needed_flops_per_example"],
             **{f"{k}_gflops": results[name][largest][k]["gflops"] for k in kinds},
             **{f"{k}_fraction_of_jax_matmul_peak":
                results[name][largest][k]["fraction_of_jax_matmul_peak"] for k in kinds},
             **{f"{k}_needed_fraction_of_jax_matmul_peak":
                results[name][largest][k]["needed_fraction_of_jax_matmul_peak"] for k in kinds}}
      for name in models}

  bar = None
  if "mnist_mlp" in results and "128" in results["mnist_mlp"]:
    ratio = results["mnist_mlp"]["128"]["ratio_jax_scan_over_torch"]
    bar = {"criterion": "mnist_mlp (784-512-512-10) at batch 128: jax_scan >= 2x torch",
           "ratio": ratio, "met": bool(ratio >= 2.0)}

  out = {
      "command": " ".join([os.path.relpath(sys.executable), "-m", "benchmarks.train_throughput",
                           *(sys.argv[1:] if argv is None else argv)]),
      "environment": environment(),
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
      "seconds_waiting_for_quiet": machine.waited,
      "total_seconds": time.perf_counter() - started,
      "settings": {"repeats": args.repeats, "batch_sizes": batch_sizes, "steps": steps_arg,
                   "quiet_cores": args.quiet, "max_wait": args.max_wait,
                   "statistic": "median over the quiet timed calls (all calls if none was quiet) "
                                "of one call: one scan epoch of steps_per_call steps (torch: the "
                                "same number of steps)"},
      "bar": bar, "summary": summary, "results": results, "vmap": vmap, "roofline": roofline,
  }
  path = Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=2) + "\n")
  print(f"wrote {path} ({out['total_seconds']:.0f} s, {machine.waited:.0f} s of it waiting for "
        "a quiet machine)")
  return out


if __name__ == "__main__":
  main()
