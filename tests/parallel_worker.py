"""A tiny training run for tests/test_parallel.py, in its own process (own device count).

    python tests/parallel_worker.py --out=OUT.json RUN_JSON [RUN_JSON ...]

Each RUN_JSON is ``{"workdir": ..., "fsdp": 1, "num_seeds": 1, "num_epochs": 2}``; every run
trains ``fit`` on the same small problem and OUT.json gets, per run, the history, the final
validation metrics of the best state and where the state lived. With ``--coordinator_address``,
``--num_processes`` and ``--process_id`` the process first joins the others with
``jax.distributed`` (CPU collectives) and loads only the training rows its devices hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Nothing that initialises a JAX backend may run before parallel.initialize_distributed.
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from playbook import parallel
from playbook.run import compile_cache  # noqa: E402
from playbook.models.mlp import MLP  # noqa: E402
from playbook.train import fit, loop  # noqa: E402
from playbook.train.losses import classification_loss  # noqa: E402
from playbook.run.writer import MetricWriter  # noqa: E402
from toy import blobs  # noqa: E402  (tests/ is this script's directory)

# Widths divisible by 8, so FSDP over 8 devices splits the kernels and most biases.
MODEL = MLP(hidden=(32, 16), num_classes=3, dropout=0.1)
LOSS_FN = classification_loss(MODEL, preprocess=lambda x: x.astype(jnp.float32))
NUM_TRAIN, NUM_VAL = 300, 64  # 300 is not a multiple of 8: the row-sharded set gets padding.


def init_fn(rng):
  return MODEL.init(rng, jnp.zeros((1, 4)), train=False)["params"], {}


def train_cfg(num_epochs=2):
  return ml_collections.ConfigDict(dict(batch_size=32, num_epochs=num_epochs, eval_batch_size=32,
                                        patience=0, best_metric="accuracy", best_mode="max",
                                        log_every_steps=1))


def run(workdir, *, fsdp=1, num_seeds=1, num_epochs=2, host_loader=False) -> dict:
  """One ``fit`` on this process's devices; what the test compares."""
  mesh = parallel.make_mesh(fsdp)
  train = blobs(NUM_TRAIN)
  requested = []
  if host_loader:  # A loader that reads only the rows this process's devices hold.
    def load(rows):
      requested.extend(rows.tolist())
      return {k: v[rows] for k, v in train.items()}
    train = parallel.shard_rows(load, mesh, num_examples=NUM_TRAIN)
  val = blobs(NUM_VAL, seed=1)
  result = fit(init_fn=init_fn, loss_fn=LOSS_FN, tx=optax.adam(1e-2), train_data=train,
               val_data=val, cfg=train_cfg(num_epochs), workdir=workdir, seed=0,
               num_seeds=num_seeds, progress=False, mesh=mesh,
               writer=MetricWriter(workdir, tensorboard=False))
  final = loop.evaluate(result.state, val, loss_fn=LOSS_FN, batch_size=32, num_seeds=num_seeds)
  kernel = result.state.params["Dense_0"]["kernel"]
  return {"history": result.history, "final_val": jax.tree.map(lambda v: v.tolist(), final),
          "mesh": dict(mesh.shape), "num_devices": jax.device_count(),
          "process_index": jax.process_index(), "process_count": jax.process_count(),
          "kernel_spec": str(kernel.sharding.spec),
          "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
          "rows_loaded": len(requested) if host_loader else NUM_TRAIN}


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--out", required=True)
  p.add_argument("--coordinator_address")
  p.add_argument("--num_processes", type=int)
  p.add_argument("--process_id", type=int)
  p.add_argument("runs", nargs="+")
  args = p.parse_args(argv)
  compile_cache.enable()
  distributed = parallel.initialize_distributed(
      coordinator_address=args.coordinator_address, num_processes=args.num_processes,
      process_id=args.process_id)
  out = [run(**json.loads(r), host_loader=distributed) for r in args.runs]
  Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
  main()
