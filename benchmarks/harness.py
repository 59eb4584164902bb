"""What the benchmarks share: timing on a shared machine, the PyTorch MLP peer, the fp32 matmul
roofline and the JSON report (the trainer's jitted epoch is ``benchmarks/jax_epoch.py``).

Timing: ``Machine.time`` waits (up to ``max_wait`` s) for other processes to use fewer than
``quiet`` cores, times one call and notes the cores they used meanwhile. ``timed_rounds`` runs
the columns in a rotating order, round after round, until each has ``repeats`` quiet calls;
``summarise`` gives the median of the quiet calls (of all when none was), the best call, and
every raw time with its load. Warm-up calls (compilation) are never timed.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from playbook.run import rundir

NUM_CLASSES = 10
Sample = tuple[float, "float | None"]  # (seconds, cores other processes used during the call)


def ints(text: str) -> list[int]:
  return [int(v) for v in str(text).split(",") if v]


def positive_int(text: str) -> int:
  """argparse type: an int >= 1 (a median of no calls is no measurement)."""
  if (value := int(text)) < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def add_timing_args(parser: argparse.ArgumentParser, *, repeats: int = 5,
                    max_wait: float = 5.0) -> None:
  """The flags every timed benchmark shares: how many quiet calls, what counts as quiet."""
  parser.add_argument("--repeats", type=positive_int, default=repeats,
                      help="Quiet timed calls wanted per column (the median is reported).")
  parser.add_argument("--quiet", type=float, default=0.2,
                      help="Cores other processes may use for a call to count as quiet.")
  parser.add_argument("--max_wait", type=float, default=max_wait,
                      help="Most seconds to wait for a quiet machine before each timed call.")


def median(values) -> float | None:
  """The median, or None for no values (a measurement that was skipped, not a crash)."""
  values = list(values)
  return float(statistics.median(values)) if values else None


# ---------------------------------------------------------------------------------------- timing


class Machine:
  """Times calls on a shared machine, noting how many cores other processes used meanwhile.
  Other processes' use is the machine's busy CPU time (``/proc/stat``) minus this process's own
  (``os.times``, all threads), over wall time: 0.0 on a quiet machine, 1.0 when another process
  held one core throughout. None where ``/proc/stat`` is missing.
  """

  def __init__(self, quiet: float, max_wait: float):
    self.quiet, self.max_wait, self.waited = quiet, max_wait, 0.0

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
    start = time.perf_counter()
    while time.perf_counter() < start + self.max_wait:
      before = self._read()
      time.sleep(0.3)
      load = self._other_cores(before, self._read())
      if load is None or load < self.quiet:
        break
    self.waited += time.perf_counter() - start

  def time(self, fn) -> Sample:
    """(seconds, cores other processes used) of one call of ``fn``, after waiting for quiet."""
    self.wait_for_quiet()
    before, start = self._read(), time.perf_counter()
    fn()
    return time.perf_counter() - start, self._other_cores(before, self._read())


def quiet_count(samples: list[Sample], quiet: float) -> int:
  return sum(1 for _, load in samples if load is not None and load < quiet)


def summarise(samples: list[Sample], work: float, quiet: float) -> dict | None:
  """Rate (``work`` per second) from timed calls: median of the quiet ones, else of all. None
  when there are no calls."""
  if not samples:
    return None
  quiet_s = [s for s, load in samples if load is not None and load < quiet]
  return {"per_s": work / median(quiet_s or [s for s, _ in samples]),
          "best_per_s": work / min(s for s, _ in samples),
          "calls": len(samples), "quiet_calls": len(quiet_s), "seconds": [s for s, _ in samples],
          "other_cores_busy": [None if load is None else round(load, 3) for _, load in samples]}


def median_seconds(machine: Machine, call, repeats: int = 5) -> float:
  """Median seconds of one call of ``call`` (quiet calls, else all), after a warm-up call."""
  call()
  return 1.0 / summarise([machine.time(call) for _ in range(repeats)], 1.0, machine.quiet)["per_s"]


def timed_rounds(machine: Machine, groups: list[dict], *, repeats: int, max_rounds: int,
                 deadline: float = math.inf) -> list[dict[str, list[Sample]]]:
  """Rounds of interleaved timed calls. ``groups``: one ``{column: fn(round)}`` per cell; each
  round calls every cell's columns in an order rotated by one per round, a column until it has
  ``repeats`` quiet calls (after ``deadline``, a ``perf_counter`` time, only columns with no
  call yet). Returns one ``{column: [(seconds, other cores), ...]}`` per group."""
  samples = [{column: [] for column in group} for group in groups]
  started = time.perf_counter()
  for r in range(max_rounds):
    pending = 0
    for group, got in zip(groups, samples):
      names = list(group)
      for name in names[r % len(names):] + names[:r % len(names)]:
        if quiet_count(got[name], machine.quiet) >= repeats or (
            got[name] and time.perf_counter() > deadline):
          continue
        pending += 1
        got[name].append(machine.time(functools.partial(group[name], r + 1)))
    print(f"  round {r + 1}: {pending} calls ({time.perf_counter() - started:.0f} s)", flush=True)
    if not pending:
      break
  return samples


# --------------------------------------------------------------------------- the PyTorch peer


class TorchModel:
  """The PyTorch MLP peer: same widths, dropout, optimiser; uint8 data standardised per batch."""

  def __init__(self, config, train_x: np.ndarray, train_y: np.ndarray, compile_model=False):
    import torch
    from torch import nn
    self.torch = torch
    torch.manual_seed(0)
    layers, width = [nn.Flatten()], int(np.prod(train_x.shape[1:]))
    for hidden in config.model.hidden:
      layers += [nn.Linear(width, hidden), nn.ReLU()]
      layers += [nn.Dropout(config.model.dropout)] if config.model.dropout else []
      width = hidden
    self.model = nn.Sequential(*layers, nn.Linear(width, NUM_CLASSES)).train()
    self.forward = torch.compile(self.model) if compile_model else self.model
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.optim.learning_rate,
                                 weight_decay=config.optim.weight_decay)
    self.x = torch.from_numpy(np.ascontiguousarray(train_x))          # uint8 (N, 28, 28, 1)
    self.y = torch.from_numpy(train_y.astype(np.int64))
    self.mean, self.std = float(config.data.mean), float(config.data.std)

  def run_epoch(self, batch_size: int, num_steps: int):
    F = self.torch.nn.functional
    order = self.torch.randperm(num_steps * batch_size)
    for i in range(num_steps):
      idx = order[i * batch_size:(i + 1) * batch_size]
      x = (self.x[idx].float() / 255.0 - self.mean) / self.std
      loss = F.cross_entropy(self.forward(x), self.y[idx])
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
    return float(loss.detach())


# -------------------------------------------------------------------------------- roofline


def training_flops_per_example(config, input_size: int = 784) -> tuple[int, int]:
  """(nominal, needed) matmul FLOPs of one MLP training example. Nominal: 6 * sum(fan_in *
  fan_out), forward 2x, backward 4x (input and weight gradients). Needed: less the first layer's
  input gradient, which nobody computes (what XLA and torch run). Biases, elementwise ignored."""
  widths = [input_size, *config.model.hidden, NUM_CLASSES]
  macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  return 6 * macs, 6 * macs - 2 * widths[0] * widths[1]


def matmul_roofline(machine: Machine, sizes: list[int], repeats: int) -> dict:
  """fp32 GFLOP/s of a jitted ``jnp.dot`` and ``torch.mm`` of square matrices, interleaved."""
  import torch
  result, dot = {}, jax.jit(jnp.dot)
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
    jax.block_until_ready(dot(a, b))  # Compile, warm up.
    torch.mm(ta, tb)
    samples = {"jax": [], "torch": []}
    for _ in range(repeats):
      samples["jax"].append(machine.time(lambda: jax.block_until_ready(dot(a, b))))
      samples["torch"].append(machine.time(lambda: torch.mm(ta, tb)))
    row = result[str(n)] = {k: summarise(v, 2 * n ** 3 / 1e9, machine.quiet)
                            for k, v in samples.items()}
    print(f"  matmul {n}x{n}: jax {row['jax']['per_s']:.1f}, torch {row['torch']['per_s']:.1f} "
          f"GFLOP/s (quiet calls {row['jax']['quiet_calls']}/{repeats})", flush=True)
  return result


# ------------------------------------------------------------------------------------ report


def data_root() -> str:
  """``PLAYBOOK_DATA_DIR`` relative to the working directory (a result names no machine's
  folders), or "" when the data came from the cache."""
  root = os.environ.get("PLAYBOOK_DATA_DIR", "")
  return os.path.relpath(root) if root else ""


def environment(**extra) -> dict:
  """Where a figure was measured: date, CPU model and widest vector units, library versions."""
  import flax
  import jaxlib
  import optax
  env = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
      "flax": flax.__version__, "optax": optax.__version__,
      "platform": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
      "cpu_count": os.cpu_count(), "cpu_model": rundir.cpu_model(),
      "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "PLAYBOOK_DATA_DIR": data_root(),
      "load_average": [round(v, 2) for v in os.getloadavg()],
  }
  if "torch" in sys.modules:  # Only where a benchmark ran the PyTorch peer.
    torch = sys.modules["torch"]
    env.update(torch=torch.__version__, torch_num_threads=torch.get_num_threads())
  return env | extra


def command(module: str, argv=None) -> str:
  """The command line that reproduces this run."""
  return " ".join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def write_json(path: str | Path, report: dict) -> Path:
  """Writes ``report`` (indented JSON) to ``path``, making its folder."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + "\n")
  return path
