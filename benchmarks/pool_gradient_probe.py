"""Probe: the gradient of a 2x2 max-pool on (128, 30, 30, 32), ``nn.max_pool`` vs reshape + max.

    .venv/bin/python -m benchmarks.pool_gradient_probe

Same values; on this CPU XLA lowers ``nn.max_pool``'s gradient to select-and-scatter, the
reshape version to a compare and a broadcast (see benchmarks/README.md for the figures). Median
of 5 calls after a warm-up, each once the machine is quiet (``harness.median_seconds``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.harness import Machine, median_seconds


def pool_by_reshape(x):
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def main():
  machine = Machine(quiet=0.2, max_wait=10.0)
  x = jax.random.normal(jax.random.PRNGKey(0), (128, 30, 30, 32))
  pools = {"nn.max_pool": lambda x: nn.max_pool(x, window_shape=(2, 2), strides=(2, 2)),
           "reshape_max": pool_by_reshape}
  for name, pool in pools.items():
    grad = jax.jit(jax.grad(lambda x, pool=pool: jnp.sum(pool(x) ** 2)))
    ms = 1e3 * median_seconds(machine, lambda grad=grad: jax.block_until_ready(grad(x)))
    print(f"{name}: gradient {ms:.1f} ms", flush=True)


if __name__ == "__main__":
  main()
