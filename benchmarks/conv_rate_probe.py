"""One VGG-shaped 3x3 convolution at a time: XLA's own against PyTorch's (oneDNN), GFLOP/s.

    .venv/bin/python -m benchmarks.conv_rate_probe   # prints a table; no JSON

For the style-transfer speed analysis (README, "Speed against PyTorch"): the forward convolution
and forward + gradient to the input (what style transfer runs per layer), on the feature-map
shapes of VGG16 at 192x256, batch 1, NHWC for JAX and NCHW for PyTorch. Median of 5 calls each,
each timed once the machine is quiet (``harness.Machine``, ``harness.median_seconds``; median of
all calls when none was).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Machine, median_seconds
from playbook.models.fast_conv import xla_conv

SHAPES = ((192, 256, 64, 64), (96, 128, 128, 128), (48, 64, 256, 256), (24, 32, 512, 512))


def main():
  import torch
  machine = Machine(quiet=0.2, max_wait=20.0)
  forward = jax.jit(xla_conv)
  input_grad = jax.jit(jax.grad(lambda x, w: jnp.sum(xla_conv(x, w) ** 2)))
  print("shape (H, W, C_in, C_out)   XLA fwd  XLA fwd+dx   torch fwd  torch fwd+dx   GFLOP/s")
  for h, w, c_in, c_out in SHAPES:
    x = jax.random.normal(jax.random.PRNGKey(0), (1, h, w, c_in))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, c_in, c_out)) * 0.05
    tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    tk = torch.from_numpy(np.array(k)).permute(3, 2, 0, 1).contiguous()
    gflop = 2 * h * w * 9 * c_in * c_out / 1e9

    def torch_grad():
      tx.grad = None
      (torch.nn.functional.conv2d(tx, tk, padding=1) ** 2).sum().backward()

    with torch.no_grad():
      t_fwd = median_seconds(machine, lambda: torch.nn.functional.conv2d(tx, tk, padding=1))
    rates = (gflop / median_seconds(machine, lambda: forward(x, k).block_until_ready()),
             2 * gflop / median_seconds(machine, lambda: input_grad(x, k).block_until_ready()),
             gflop / t_fwd, 2 * gflop / median_seconds(machine, torch_grad))
    print(f"{str((h, w, c_in, c_out)):26s}" + "".join(f"{r:11.1f}" for r in rates), flush=True)


if __name__ == "__main__":
  main()
