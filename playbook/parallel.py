"""Scale-out: the device mesh, shardings, per-host data and ``jax.distributed`` setup.

One program for one CPU, eight GPUs or a TPU pod slice. ``fit`` runs every jitted function on a
2-D mesh over every device of every process, axes ``("data", "fsdp")``:

* batches (and the training set's rows) are split over both axes: every device gets its own
  examples, so the global batch size is ``config.train.batch_size`` whatever the device count;
* parameters and optimiser state are replicated (``fsdp`` axis of size 1: plain data parallelism)
  or split along the ``fsdp`` axis (FSDP / ZeRO-3, or hybrid FSDP with ``data`` > 1): each array
  is cut along its largest dimension that the axis size divides, the rest stay replicated.

XLA's SPMD partitioner inserts every collective (gradient all-reduce or reduce-scatter, parameter
all-gather) itself: no pmap and no hand-written communication. On a single device every sharding
here is trivial and the compiled program is the one-device program.

Multi-host: :func:`initialize_distributed` joins the processes (arguments from flags, or detected
from SLURM / Open MPI / Cloud TPU by JAX); each process then loads only the rows of the training
set that its own devices hold (:func:`host_rows`, :func:`shard_rows`) and the global arrays are
assembled with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)  # A batch's leading axis is split over every device.


# ---------------------------------------------------------------------------------------------
# Processes.


def cluster_detected() -> str | None:
  """The multi-process launcher this process runs under, if any: 'slurm', 'openmpi' or 'tpu'.

  Only launchers that started more than one process count: a one-task SLURM job or a single TPU
  VM runs as a plain single process.
  """
  env = os.environ
  if "SLURM_JOB_ID" in env and "SLURM_STEP_NODELIST" in env and int(env.get("SLURM_NTASKS",
                                                                             "1")) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "openmpi"
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
  if len([h for h in hosts.split(",") if h]) > 1:
    return "tpu"
  return None


def initialize_distributed(mode: str = "auto", *, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> bool:
  """Joins this process to the others with ``jax.distributed.initialize``; True if it did.

  ``mode``: 'auto' initialises when any argument is given or :func:`cluster_detected` finds a
  multi-process launcher (JAX then reads the coordinator, process count and id from it); 'on'
  always initialises (on a Cloud TPU pod slice JAX finds everything from the TPU metadata);
  'off' never does. Must run before any JAX computation. CPU processes talk through gloo.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"distributed mode must be auto, on or off, got {mode!r}.")
  explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
  if mode == "off" or (mode == "auto" and not explicit and cluster_detected() is None):
    return False
  # Cross-process collectives between CPU devices (tests, CPU clusters); unused on GPU and TPU.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=local_device_ids)
  return True


def is_main_process() -> bool:
  """Process 0: the one that writes results, metrics, plots and logs."""
  return jax.process_index() == 0


# ---------------------------------------------------------------------------------------------
# Mesh and shardings.


def make_mesh(fsdp: int = 1, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ``(data, fsdp)`` mesh over every device of every process.

  ``fsdp`` is the size of the ``fsdp`` axis: 1 replicates parameters (data parallelism), -1 puts
  every device on it (full FSDP), k shards over groups of k devices and replicates across the
  ``n / k`` groups (hybrid). Consecutive devices, the devices of one host first, share a group.
  """
  devices = list(devices) if devices is not None else jax.devices()
  n = len(devices)
  size = n if fsdp == -1 else fsdp
  if size < 1 or n % size:
    raise ValueError(f"parallel.fsdp={fsdp} must be -1, or a positive divisor of the {n} "
                     "devices.")
  return jax.make_mesh((n // size, size), (DATA, FSDP), axis_types=(AxisType.Auto,) * 2,
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis split over every device."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_constraint(mesh: Mesh) -> Callable[[dict], dict]:
  """A function that pins a batch dict's leading axis to the batch axes (identity on 1 device)."""
  if mesh.size == 1:
    return lambda batch: batch
  sharding = batch_sharding(mesh)
  return lambda batch: jax.lax.with_sharding_constraint(batch, {k: sharding for k in batch})


def fsdp_spec(shape: Sequence[int], fsdp_size: int) -> P:
  """Split the largest dimension that ``fsdp_size`` divides over ``fsdp``; else replicate."""
  if fsdp_size > 1:
    for dim in sorted(range(len(shape)), key=lambda d: (-shape[d], d)):
      if shape[dim] % fsdp_size == 0:
        return P(*([None] * dim), FSDP)
  return P()


def state_shardings(state: Any, mesh: Mesh, *, seed_axis: bool = False) -> Any:
  """Shardings for a ``TrainState`` (arrays or ``jax.ShapeDtypeStruct`` leaves).

  ``params``, ``model_state`` and ``opt_state`` follow :func:`fsdp_spec` (replicated when the
  ``fsdp`` axis has size 1); ``step`` and ``rng`` are always replicated. With ``seed_axis`` the
  leading seed axis of every leaf stays unsplit and the rule applies to the rest.
  """
  fsdp_size = mesh.shape[FSDP]

  def leaf(x):
    shape = tuple(x.shape)[1:] if seed_axis else tuple(x.shape)
    spec = fsdp_spec(shape, fsdp_size)
    return NamedSharding(mesh, P(None, *spec) if seed_axis and spec else spec)

  rep = lambda tree: jax.tree.map(lambda _: replicated(mesh), tree)
  return state.replace(step=rep(state.step), rng=rep(state.rng),
                       params=jax.tree.map(leaf, state.params),
                       model_state=jax.tree.map(leaf, state.model_state),
                       opt_state=jax.tree.map(leaf, state.opt_state))


# ---------------------------------------------------------------------------------------------
# Data.


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Host arrays that every process holds in full -> global arrays with ``sharding``."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)),
      tree)


def padded_size(num_examples: int, mesh: Mesh) -> int:
  """Rows of a row-sharded data set: ``num_examples`` rounded up to a multiple of the devices."""
  return -(-num_examples // mesh.size) * mesh.size


def host_rows(num_examples: int, mesh: Mesh) -> np.ndarray:
  """Indices of the rows this process's devices hold, sorted; those >= num_examples are padding."""
  shape = (padded_size(num_examples, mesh),)
  index_map = batch_sharding(mesh).addressable_devices_indices_map(shape)
  rows = {i for index in index_map.values() for i in range(*index[0].indices(shape[0]))}
  return np.array(sorted(rows), dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class RowSharded:
  """A data set as global arrays whose rows are split over every device.

  Each process holds only its own rows. The arrays have ``padded_size`` rows; rows from
  ``num_examples`` on are zero padding, and the trainer's shuffle never draws them.
  """
  arrays: dict[str, jax.Array]
  num_examples: int


def shard_rows(data: Mapping[str, np.ndarray] | Callable[[np.ndarray], Mapping[str, np.ndarray]],
               mesh: Mesh, num_examples: int | None = None) -> RowSharded:
  """Places a data set's rows on the devices, each process loading only its own.

  ``data`` is either a dict of host arrays holding the whole set (each process keeps its rows
  only), or a loader ``rows -> dict of arrays`` that reads just the given row indices (then
  ``num_examples`` is required). The 1-device case is a plain ``device_put``.
  """
  if num_examples is None:
    if callable(data):
      raise ValueError("shard_rows needs num_examples when data is a loader.")
    num_examples = len(next(iter(data.values())))
  load = data if callable(data) else (lambda rows: {k: v[rows] for k, v in data.items()})
  rows = host_rows(num_examples, mesh)
  real = rows[rows < num_examples]
  local = {k: np.asarray(v) for k, v in load(real).items()}
  pad = len(rows) - len(real)
  if pad:
    local = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
             for k, v in local.items()}
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    arrays = jax.device_put(local, sharding)
  else:
    total = padded_size(num_examples, mesh)
    arrays = {k: jax.make_array_from_process_local_data(sharding, v, (total, *v.shape[1:]))
              for k, v in local.items()}
  return RowSharded(arrays=arrays, num_examples=num_examples)


def eval_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
  """Pre-batched eval data ``(num_batches, batch_size, ...)``: each batch split over the devices
  when they divide it, else replicated."""
  if mesh.size > 1 and batch_size % mesh.size == 0:
    return NamedSharding(mesh, P(None, BATCH_AXES))
  return replicated(mesh)


def to_host(tree: Any) -> Any:
  """Global arrays -> full numpy arrays on every process (a collective: every process calls it)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
