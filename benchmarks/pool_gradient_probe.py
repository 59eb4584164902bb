"""Probe: the gradient of a 2x2 max-pool on (128, 30, 30, 32), ``nn.max_pool`` vs reshape + max.

    .venv/bin/python -m benchmarks.pool_gradient_probe

Same values; on this CPU XLA lowers ``nn.max_pool``'s gradient to select-and-scatter, the
reshape version to a compare and a broadcast (see benchmarks/README.md for the figures).
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def median_ms(fn, *args, repeats: int = 5) -> float:
  jax.block_until_ready(fn(*args))  # Compile.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)) * 1e3


def pool_by_reshape(x):
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def main():
  x = jax.random.normal(jax.random.PRNGKey(0), (128, 30, 30, 32))
  pools = {"nn.max_pool": lambda x: nn.max_pool(x, window_shape=(2, 2), strides=(2, 2)),
           "reshape_max": pool_by_reshape}
  for name, pool in pools.items():
    grad = jax.jit(jax.grad(lambda x, pool=pool: jnp.sum(pool(x) ** 2)))
    print(f"{name}: gradient {median_ms(grad, x):.1f} ms", flush=True)


if __name__ == "__main__":
  main()
