"""Go/no-go probe: Winograd F(2x2, 3x3) and F(4x4, 3x3) against XLA's convolution, VGG16 shapes.

    .venv/bin/python -m benchmarks.winograd_probe [--repeats=5] [--max_wait=20]   # table, no JSON

For style transfer (README, "Speed against PyTorch"): each of VGG16's 3x3 convolutions at a
192x256 input, batch 1, jitted, forward and forward + gradient to the input (what a style step
runs per layer; the kernel is frozen). The implementations are timed interleaved in one process,
in a rotating order, so they see the same machine load: only their ratios are meant to be read
on a shared machine. Each round first waits for a quiet machine (``harness.Machine``),
then times every implementation once; medians of the quiet calls (of all calls when none was).
Errors are max |winograd - lax| / max |lax| of the forward output and of the input gradient.
``dead convs`` counts convolution ops left in the compiled Winograd forward + input gradient:
0 means the custom VJP's kernel gradient (XLA's) was removed as dead code.

Page faults: XLA's CPU runtime takes fresh buffers from glibc malloc on every call, and buffers
above glibc's mmap threshold (at most 32 MB, and per-thread arenas of 64 MB) come back as new
pages each time: about 3 us per 4 KB page here, so writing a fresh 50 MB buffer costs ~45 ms
against ~9 ms when the memory is reused. Winograd's transformed tiles are 2.25-4x the
activations, so it pays that more than XLA's convolution; run the probe (and the style step)
under ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` (one arena,
no mmap, no trimming: freed memory stays mapped and is reused) to see it without that cost. The
style step at 192x256 takes ~57,000 minor faults (222 MB) per iteration by default, 0 with them.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.harness import Machine, positive_int, summarise
from playbook.models import winograd
from playbook.models.fast_conv import xla_conv

SHAPES = ((192, 256, 3, 64), (192, 256, 64, 64), (96, 128, 64, 128), (96, 128, 128, 128),
          (48, 64, 128, 256), (48, 64, 256, 256), (24, 32, 256, 512), (24, 32, 512, 512),
          (12, 16, 512, 512))
IMPLS = ("xla", "F2", "F4")


def conv_fn(impl: str):
  return xla_conv if impl == "xla" else lambda x, k: winograd.conv3x3(x, k, int(impl[1]))


def jitted(impl: str):
  """(forward, forward + input gradient), both jitted."""
  conv = conv_fn(impl)
  return jax.jit(conv), jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) ** 2)))


def relative_error(a, b) -> float:
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def count_convolutions(fn, *args) -> int:
  return fn.lower(*args).compile().as_text().count(" convolution(")


def probe_shape(shape, repeats: int, machine: Machine, timer: Machine) -> dict:
  h, w, c_in, c_out = shape
  x = jax.random.normal(jax.random.PRNGKey(0), (1, h, w, c_in))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, c_in, c_out)) * (2.0 / (9 * c_in)) ** 0.5
  fns = {impl: jitted(impl) for impl in IMPLS}
  out = {impl: [f(x, k).block_until_ready() for f in fns[impl]] for impl in IMPLS}  # Compile.
  samples = {(impl, mode): [] for impl in IMPLS for mode in (0, 1)}
  for r in range(repeats):
    machine.wait_for_quiet()  # Once per round: every implementation then runs back to back.
    order = IMPLS[r % len(IMPLS):] + IMPLS[:r % len(IMPLS)]
    for mode in (0, 1):
      for impl in order:
        f = fns[impl][mode]
        samples[impl, mode].append(timer.time(lambda: f(x, k).block_until_ready()))
  row = {"ms": {}, "quiet": {}, "err": {}}
  for (impl, mode), s in samples.items():
    summary = summarise(s, 1.0, machine.quiet)
    row["ms"][impl, mode] = 1e3 / summary["per_s"]
    row["quiet"][impl, mode] = summary["quiet_calls"]
  for impl in IMPLS[1:]:
    row["err"][impl] = tuple(relative_error(out[impl][m], out["xla"][m]) for m in (0, 1))
    row["dead_convs", impl] = count_convolutions(fns[impl][1], x, k)
  row["gflop"] = 2 * h * w * 9 * c_in * c_out / 1e9
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=positive_int, default=5)
  parser.add_argument("--quiet", type=float, default=0.2)
  parser.add_argument("--max_wait", type=float, default=20.0)
  args = parser.parse_args()
  machine = Machine(quiet=args.quiet, max_wait=args.max_wait)
  timer = Machine(quiet=args.quiet, max_wait=0.0)  # Records load only; the round already waited.
  print("shape (H, W, Cin, Cout)  mode     xla ms    F2 ms    F4 ms  xla/F2  xla/F4  "
        "err F2   err F4   quiet(x/F2/F4)  dead convs F2/F4")
  totals = {(impl, mode): 0.0 for impl in IMPLS for mode in (0, 1)}
  best = {0: 0.0, 1: 0.0}
  for shape in SHAPES:
    row = probe_shape(shape, args.repeats, machine, timer)
    for mode, name in ((0, "fwd"), (1, "fwd+dx")):
      ms = {impl: row["ms"][impl, mode] for impl in IMPLS}
      for impl in IMPLS:
        totals[impl, mode] += ms[impl]
      best[mode] += min(ms.values())
      print(f"{str(shape):24s} {name:7s}" + "".join(f"{ms[i]:9.2f}" for i in IMPLS)
            + f"{ms['xla'] / ms['F2']:8.2f}{ms['xla'] / ms['F4']:8.2f}"
            + "".join(f"{row['err'][i][mode]:9.1e}" for i in IMPLS[1:])
            + "   " + "/".join(str(row["quiet"][i, mode]) for i in IMPLS)
            + f"  {row['dead_convs', 'F2']}/{row['dead_convs', 'F4']}", flush=True)
  for mode, name in ((0, "fwd"), (1, "fwd+dx")):
    t = {impl: totals[impl, mode] for impl in IMPLS}
    print(f"sum over shapes, {name}: xla {t['xla']:.1f} ms, F2 {t['F2']:.1f} ms "
          f"({t['xla'] / t['F2']:.2f}x), F4 {t['F4']:.1f} ms ({t['xla'] / t['F4']:.2f}x), "
          f"best per shape {best[mode]:.1f} ms ({t['xla'] / best[mode]:.2f}x)")


if __name__ == "__main__":
  main()
