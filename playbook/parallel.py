"""Device mesh and shardings: batches split along ``data``, parameters replicated.

On one CPU this is the identity; on N devices XLA's SPMD partitioner splits every batch across
them and inserts the gradient all-reduce itself. No pmap, no hand-written communication.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, axis ``data``."""
  return jax.make_mesh((jax.device_count(),), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_constraint(mesh: Mesh):
  """A function that pins a batch dict's leading axis to the ``data`` mesh axis."""
  if mesh.size == 1:
    return lambda batch: batch
  sharding = NamedSharding(mesh, P("data"))
  return lambda batch: jax.lax.with_sharding_constraint(batch, {k: sharding for k in batch})
