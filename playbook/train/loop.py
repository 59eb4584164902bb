"""``fit``: the one training loop every study uses (the scratch network aside).

Each epoch is one jitted call (a ``lax.scan`` over on-device shuffled batches); after it the host
checks the loss is finite, evaluates on the validation split, logs, checkpoints ``latest`` (and
``best`` when the validation metric improved), and stops early when it stops improving. With
``num_seeds > 1`` every function is ``jax.vmap``-ed over a leading seed axis of the state, so N
independent runs (own init, dropout and data order) train in one program.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook import parallel
from playbook.train import steps
from playbook.train.checkpoint import Checkpoints
from playbook.train.progress import progress_bar
from playbook.train.state import InitFn, TrainState, init_train_state
from playbook.train.writer import MetricWriter


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss."""


@dataclasses.dataclass
class FitResult:
  state: TrainState        # The best state (by validation metric), leading seed axis if vmapped.
  history: list[dict]      # One row per epoch: train and validation means, per seed.
  best_epoch: int
  train_seconds: float     # Wall time of the epochs run in this process (compile included).
  steps_per_second: float | None  # Training steps/s, first (compiling) epoch excluded.


def maybe_vmap(fn, num_seeds: int, in_axes):
  """``jax.vmap(fn)`` over the seed axis when there are several seeds, else ``fn`` itself."""
  return jax.vmap(fn, in_axes=in_axes) if num_seeds > 1 else fn


def init_states(init_fn: InitFn, tx: optax.GradientTransformation, seed: int,
                num_seeds: int) -> TrainState:
  """Seed ``s`` of ``num_seeds`` starts from ``fold_in(PRNGKey(seed), s)``."""
  init = functools.partial(init_train_state, init_fn, tx)
  if num_seeds == 1:
    return jax.jit(init)(jax.random.fold_in(jax.random.PRNGKey(seed), 0))
  rngs = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(seed), s))(
      jnp.arange(num_seeds))
  return jax.jit(jax.vmap(init))(rngs)


def make_evaluate(loss_fn, num_seeds: int):
  """A jitted ``evaluate(state, padded_batches) -> metrics`` (per seed when vmapped)."""
  fn = functools.partial(steps.eval_epoch, loss_fn=loss_fn)
  return jax.jit(maybe_vmap(fn, num_seeds, in_axes=(0, None)))


def evaluate(state: TrainState, data: dict, *, loss_fn, batch_size: int,
             num_seeds: int) -> dict[str, np.ndarray]:
  """Mean metrics of ``state`` on host arrays ``data``, every example counted once."""
  batches = jax.device_put(steps.pad_to_batches(data, batch_size))
  return jax.tree.map(np.asarray, make_evaluate(loss_fn, num_seeds)(state, batches))


def _summary(metrics: dict) -> dict:
  """Per-seed means over the steps of an epoch, as plain floats or lists of floats."""
  return {k: np.asarray(v).mean(axis=-1) for k, v in metrics.items()}


def _jsonable(tree):
  return jax.tree.map(lambda v: np.asarray(v).tolist(), tree)


def fit(*, init_fn: InitFn, loss_fn, tx: optax.GradientTransformation, train_data: dict,
        val_data: dict, cfg: ml_collections.ConfigDict, workdir: str | Path, seed: int,
        num_seeds: int = 1, augment_fn=None, progress: bool = True,
        writer: MetricWriter | None = None) -> FitResult:
  """Trains, or resumes from ``workdir/checkpoints/latest``, to ``cfg.num_epochs``.

  ``cfg`` is the config's ``train`` block: batch_size, num_epochs, eval_batch_size, patience
  (epochs without improvement before stopping; 0 = never), best_metric, best_mode ('max'/'min'),
  log_every_steps.
  """
  mesh = parallel.make_mesh()
  num_train = len(next(iter(train_data.values())))
  steps_per_epoch = num_train // cfg.batch_size
  state = init_states(init_fn, tx, seed, num_seeds)

  epoch_fn = functools.partial(steps.train_epoch, loss_fn=loss_fn, batch_size=cfg.batch_size,
                               augment_fn=augment_fn,
                               constrain_batch=parallel.batch_constraint(mesh))
  train_epoch = jax.jit(maybe_vmap(epoch_fn, num_seeds, in_axes=(0, None, None)),
                        donate_argnums=(0,))
  evaluate_fn = make_evaluate(loss_fn, num_seeds)
  train_on_device = jax.device_put(train_data, parallel.replicated(mesh))
  val_batches = jax.device_put(steps.pad_to_batches(val_data, cfg.eval_batch_size))

  ckpt = Checkpoints(workdir)
  writer = writer or MetricWriter(workdir)
  sign = 1.0 if cfg.best_mode == "max" else -1.0
  meta = {"epoch": 0, "history": [], "best": None, "best_epoch": -1, "bad_epochs": 0}
  restored = ckpt.restore("latest", state.saveable())
  if restored is not None:
    saved, meta = restored
    state = state.replace_saved(saved)
  writer.truncate_after(meta["epoch"] * steps_per_epoch)

  bar = progress_bar(cfg.num_epochs * steps_per_epoch, meta["epoch"] * steps_per_epoch,
                     enabled=progress, desc=f"train {Path(workdir).name}")
  train_seconds, timed_steps, timed_seconds = 0.0, 0, 0.0
  first_epoch = meta["epoch"]
  for epoch in range(first_epoch, cfg.num_epochs):
    if cfg.patience and meta["bad_epochs"] >= cfg.patience:
      break
    start = time.perf_counter()
    state, step_metrics = train_epoch(state, train_on_device, epoch)
    step_metrics = jax.tree.map(np.asarray, step_metrics)
    elapsed = time.perf_counter() - start
    train_seconds += elapsed
    if epoch > first_epoch:  # The first epoch of a process includes compilation.
      timed_steps, timed_seconds = timed_steps + steps_per_epoch, timed_seconds + elapsed

    losses = step_metrics["loss"]
    if not np.all(np.isfinite(losses)):
      finite_per_step = np.isfinite(losses).reshape(-1, steps_per_epoch).all(axis=0)
      bad_step = epoch * steps_per_epoch + int(np.argmin(finite_per_step)) + 1
      bar.close()
      raise NonFiniteLossError(
          f"Loss became {float(losses[~np.isfinite(losses)].flat[0])} in epoch {epoch + 1} "
          f"(first at step {bad_step}). Training stopped; the last good checkpoint "
          f"(epoch {meta['epoch']}) is kept in {Path(workdir) / 'checkpoints/latest'}. Lower the "
          "learning rate, add gradient clipping, or check the inputs for NaN.")

    global_step = (epoch + 1) * steps_per_epoch
    first_step = epoch * steps_per_epoch
    for i in range(0, steps_per_epoch, cfg.log_every_steps):
      writer.write(first_step + i + 1, "train_step",
                   {k: np.asarray(v)[..., i] for k, v in step_metrics.items()})
    train_summary = _summary(step_metrics)
    val_metrics = jax.tree.map(np.asarray, evaluate_fn(state, val_batches))
    writer.write(global_step, "train", train_summary)
    writer.write(global_step, "val", val_metrics)
    meta["history"].append({"epoch": epoch + 1, "step": global_step,
                            "train": _jsonable(train_summary), "val": _jsonable(val_metrics)})

    score = float(np.mean(val_metrics[cfg.best_metric]))
    meta["epoch"] = epoch + 1
    if meta["best"] is None or sign * score > sign * meta["best"]:
      meta.update(best=score, best_epoch=epoch + 1, bad_epochs=0)
      # best before latest: a kill between the two replays this epoch and rewrites the same best.
      if global_step not in ckpt.best.all_steps():
        ckpt.save("best", global_step, state.saveable(), {"epoch": epoch + 1, "val": score})
    else:
      meta["bad_epochs"] += 1
    ckpt.save("latest", global_step, state.saveable(), meta)

    bar.update(steps_per_epoch)
    bar.set_postfix(loss=f"{np.mean(train_summary['loss']):.4f}",
                    **{f"val_{cfg.best_metric}": f"{score:.4f}"})
  bar.close()

  best = ckpt.restore("best", state.saveable())
  if best is not None:
    state = state.replace_saved(best[0])
  ckpt.close()
  steps_per_second = timed_steps / timed_seconds if timed_seconds else None
  return FitResult(state=state, history=meta["history"], best_epoch=meta["best_epoch"],
                   train_seconds=train_seconds, steps_per_second=steps_per_second)
