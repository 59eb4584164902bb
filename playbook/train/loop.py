"""``fit``: the one training loop every study uses, scratch networks included.

Each epoch is one jitted call (a ``lax.scan`` over on-device shuffled batches); after it the host
checks the loss is finite, evaluates on the validation split, logs, checkpoints ``latest`` (and
``best`` when the validation metric improved), and stops early when it stops improving. With
``num_seeds > 1`` every function is ``jax.vmap``-ed over a leading seed axis of the state, so N
independent runs (own init, dropout and data order) train in one program.

Every jitted function runs on ``parallel.make_mesh``'s device mesh: the training set's rows and
every batch are split over all devices (of all processes), the state is replicated or FSDP-sharded
(the mesh's ``fsdp`` axis). ``cfg.batch_size`` is the global batch, the same on any device count,
and so are the shuffle and every random draw: N devices train the 1-device trajectory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook import parallel
from playbook.train import steps, sweep
from playbook.train.checkpoint import Checkpoints
from playbook.train.progress import progress_bar
from playbook.train.state import InitFn, TrainState, init_train_state
from playbook.run.writer import MetricWriter


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss."""


class Interrupted(RuntimeError):
  """SIGTERM or Ctrl-C stopped training at a call boundary; ``signum`` is the signal."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


@contextlib.contextmanager
def stop_requests():
  """Turns SIGTERM and SIGINT into a request (a list that gets the signal number) that ``fit``
  honours between jitted calls, so no checkpoint is cut in half. A second Ctrl-C stops at once."""
  requested: list[int] = []
  if threading.current_thread() is not threading.main_thread():
    yield requested  # Signal handlers can only be set from the main thread.
    return

  def handler(signum, frame):
    if requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    requested.append(signum)

  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield requested
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


@dataclasses.dataclass
class FitResult:
  state: TrainState        # The best state (by validation metric), leading seed axis if vmapped.
  history: list[dict]      # One row per epoch: train and validation means, per seed.
  best_epoch: int
  train_seconds: float     # Wall time of the epochs run in this process (compile included).
  steps_per_second: float | None  # Training steps/s, first (compiling) epoch excluded.
  mesh: jax.sharding.Mesh | None = None  # The devices it trained on; ``state`` lives there.
  epoch_seconds: list[float] = dataclasses.field(default_factory=list)  # Cumulative, per epoch.
  best_epochs: list[int] | None = None  # Per model, when each keeps its own best (a sweep).


def maybe_vmap(fn, num_seeds: int, in_axes):
  """``jax.vmap(fn)`` over the seed axis when there are several seeds, else ``fn`` itself."""
  return jax.vmap(fn, in_axes=in_axes) if num_seeds > 1 else fn


def init_states(init_fn: InitFn, tx: optax.GradientTransformation, seed: int,
                num_seeds: int, mesh: jax.sharding.Mesh | None = None, *,
                seed_cycle: int | None = None) -> TrainState:
  """Model ``s`` of ``num_seeds`` starts from ``fold_in(PRNGKey(seed), s % seed_cycle)``.

  ``seed_cycle`` (default: ``num_seeds``): in a sweep, the variants' models come in blocks of
  ``seed_cycle`` seeds, and seed ``k`` of every variant starts from the same key (the same init,
  dropout and data order), so variants differ only in their hyperparameters. With a ``mesh`` the
  state is created directly in its shardings (``parallel.state_shardings``).
  """
  single = functools.partial(init_train_state, init_fn, tx)
  cycle = seed_cycle or num_seeds
  key = lambda s: jax.random.fold_in(jax.random.PRNGKey(seed), s % cycle)
  if num_seeds == 1:
    init = lambda: single(key(0))
  else:
    init = lambda: jax.vmap(single)(jax.vmap(key)(jnp.arange(num_seeds)))
  if mesh is None:
    return jax.jit(init)()
  shardings = parallel.state_shardings(jax.eval_shape(init), mesh, seed_axis=num_seeds > 1)
  return jax.jit(init, out_shardings=shardings)()


def _state_mesh(state: TrainState) -> jax.sharding.Mesh | None:
  sharding = getattr(state.step, "sharding", None)
  return sharding.mesh if isinstance(sharding, jax.sharding.NamedSharding) else None


def make_evaluate(loss_fn, num_seeds: int, mesh: jax.sharding.Mesh | None = None, *,
                  carry_state: bool = False):
  """A jitted ``evaluate(state, padded_batches) -> metrics`` (per seed when vmapped)."""
  fn = functools.partial(steps.eval_epoch, loss_fn=loss_fn, carry_state=carry_state)
  out = parallel.replicated(mesh) if mesh is not None else None
  return jax.jit(maybe_vmap(fn, num_seeds, in_axes=(0, None)), out_shardings=out)


def put_eval_batches(data: dict, batch_size: int, mesh: jax.sharding.Mesh | None):
  """Host arrays -> padded batches on the devices (every process passes the whole split)."""
  batches = steps.pad_to_batches(data, batch_size)
  if mesh is None:
    return jax.device_put(batches)
  return parallel.put(batches, parallel.eval_sharding(mesh, batch_size))


def evaluate(state: TrainState, data: dict, *, loss_fn, batch_size: int,
             num_seeds: int, mesh: jax.sharding.Mesh | None = None,
             carry_state: bool = False) -> dict[str, np.ndarray]:
  """Mean metrics of ``state`` on host arrays ``data``, every example counted once.

  ``carry_state``: ``data`` is parallel streams (rows in batch order); the model state is
  carried from batch to batch, from zeros, as ``fit`` evaluates with ``cfg.carry_state``.

  ``mesh`` defaults to the one the state lives on (``fit``'s); with several processes each one
  passes the whole of ``data`` and calls this together.
  """
  mesh = mesh if mesh is not None else _state_mesh(state)
  batches = put_eval_batches(data, batch_size, mesh)
  evaluate_fn = make_evaluate(loss_fn, num_seeds, mesh, carry_state=carry_state)
  return jax.tree.map(np.asarray, evaluate_fn(state, batches))


def _summary(metrics: dict) -> dict:
  """Per-seed means over the steps of an epoch, as plain floats or lists of floats."""
  return {k: np.asarray(v).mean(axis=-1) for k, v in metrics.items()}


def _jsonable(tree):
  return jax.tree.map(lambda v: np.asarray(v).tolist(), tree)


def make_train_epoch(state: TrainState, *, train_step: steps.TrainStep, batch_size: int, num_examples: int,
                     mesh: jax.sharding.Mesh, num_seeds: int = 1, augment_fn=None,
                     shuffle: bool = True, carry_state: bool = False, calls_per_epoch: int = 1):
  """``fit``'s jitted ``train_epoch(state, data, epoch) -> (state, metrics)`` on ``mesh``.

  The state keeps the shardings it has (``init_states(..., mesh)``) and is donated; every batch
  is split over the devices; the metrics come back replicated. ``calls_per_epoch``: see
  ``steps.train_epoch`` (``epoch`` then counts calls).
  """
  if batch_size % mesh.size:
    raise ValueError(f"train.batch_size={batch_size} is the global batch; it must be a "
                     f"multiple of the {mesh.size} devices, which each take an equal share.")
  epoch_fn = functools.partial(steps.train_epoch, train_step=train_step, batch_size=batch_size,
                               augment_fn=augment_fn, num_examples=num_examples,
                               constrain_batch=parallel.batch_constraint(mesh),
                               shuffle=shuffle, carry_state=carry_state,
                               calls_per_epoch=calls_per_epoch)
  state_shardings = jax.tree.map(lambda a: a.sharding, state)
  return jax.jit(maybe_vmap(epoch_fn, num_seeds, in_axes=(0, None, None)),
                 out_shardings=(state_shardings, parallel.replicated(mesh)),
                 donate_argnums=(0,))


def calls_per_epoch(steps_per_epoch: int, steps_per_call: int | None) -> int:
  """Into how many jitted calls ``fit`` splits an epoch: the fewest whose equal share of the
  steps is at most ``steps_per_call`` (None or 0: one call, the fastest). More calls mean more
  progress-bar updates inside a long epoch, at the cost of one dispatch each."""
  if not steps_per_call or steps_per_call >= steps_per_epoch:
    return 1
  return next(k for k in range(-(-steps_per_epoch // steps_per_call), steps_per_epoch + 1)
              if steps_per_epoch % k == 0)


def first_nonfinite_step(losses: np.ndarray, first_step: int) -> int | None:
  """The global step (1-based) of an epoch's first NaN/inf loss, or None if all are finite.

  ``losses`` is the epoch's per-step losses, shape (steps,) or (seeds, steps); ``first_step`` is
  the number of steps before this epoch.
  """
  finite_per_step = np.isfinite(losses).reshape(-1, losses.shape[-1]).all(axis=0)
  return None if finite_per_step.all() else first_step + int(np.argmin(finite_per_step)) + 1


def fit(*, init_fn: InitFn, loss_fn, tx: optax.GradientTransformation,
        train_data: dict | parallel.RowSharded, val_data: dict,
        cfg: ml_collections.ConfigDict, workdir: str | Path, seed: int, num_seeds: int = 1,
        augment_fn=None, progress: bool = True, writer: MetricWriter | None = None,
        mesh: jax.sharding.Mesh | None = None,
        curve_data: dict[str, dict] | None = None,
        train_step: steps.TrainStep | None = None,
        hparams: dict[str, np.ndarray] | None = None,
        seed_cycle: int | None = None) -> FitResult:
  """Trains, or resumes from ``workdir/checkpoints/latest``, to ``cfg.num_epochs``.

  ``train_step(state, batch, rng) -> (state, metrics)`` is the pure step every batch goes through
  (default: ``steps.make_train_step(loss_fn)``, autodiff); ``loss_fn`` evaluates.

  A sweep: ``hparams`` ({name: one value per model}) sets the hyperparameters of that name in
  the optimiser state (``optax.inject_hyperparams``) and in the model state's ``hparams``
  collection (``with_hyperparams``) model by model, so every model of the vmapped
  program trains with its own; ``seed_cycle`` is the number of seeds per variant
  (``init_states``). Each model then keeps its own best epoch (``best`` holds every model at
  its best validation score), and early stopping waits until no model improves.

  ``cfg`` is the config's ``train`` block: batch_size (global, over all devices), num_epochs,
  eval_batch_size, patience (epochs without improvement before stopping; 0 = never), best_metric,
  best_mode ('max'/'min'), log_every_steps; optional: shuffle (default True) and carry_state
  (default False; True: truncated BPTT, ``model_state`` is a recurrent carry zeroed at the start
  of every epoch and every evaluation, the batches taken in order, needs
  eval_batch_size == batch_size), steps_per_call (default: the whole epoch in one jitted call;
  a number: at most that many steps per call, ``calls_per_epoch``, so the progress bar moves
  inside long epochs; the same numbers either way). ``mesh`` (default: every device, parameters
  replicated) is where it trains. ``train_data`` is a dict of host arrays holding the whole
  training set, or a ``parallel.RowSharded`` whose rows each process loaded for itself; with
  several processes, every process calls ``fit`` and only process 0 logs and shows progress.
  ``curve_data`` ({name: host arrays}, e.g. the test set) is evaluated after every epoch for the
  learning curves only (history rows and metrics under that name); it never selects a model.
  ``FitResult.epoch_seconds`` is the training wall time up to each epoch, over resumptions (kept
  out of ``history``, which is a deterministic function of the config).
  """
  mesh = mesh if mesh is not None else parallel.make_mesh()
  if not isinstance(train_data, parallel.RowSharded):
    train_data = parallel.shard_rows(train_data, mesh)
  num_train = train_data.num_examples
  steps_per_epoch = num_train // cfg.batch_size
  carry_state = cfg.get("carry_state", False)
  if carry_state and cfg.eval_batch_size != cfg.batch_size:
    raise ValueError(f"carry_state=True carries one state per stream: eval_batch_size "
                     f"({cfg.eval_batch_size}) must equal batch_size ({cfg.batch_size}).")
  state = init_states(init_fn, tx, seed, num_seeds, mesh, seed_cycle=seed_cycle)
  per_model = hparams is not None
  if per_model:
    state = with_hyperparams(state, hparams)
  calls = calls_per_epoch(steps_per_epoch, cfg.get("steps_per_call"))
  train_step = train_step or steps.make_train_step(loss_fn)
  train_epoch = make_train_epoch(state, train_step=train_step, batch_size=cfg.batch_size,
                                 num_examples=num_train, mesh=mesh, num_seeds=num_seeds,
                                 augment_fn=augment_fn, shuffle=cfg.get("shuffle", True),
                                 carry_state=carry_state, calls_per_epoch=calls)
  evaluate_fn = make_evaluate(loss_fn, num_seeds, mesh, carry_state=carry_state)
  train_on_device = train_data.arrays
  val_batches = put_eval_batches(val_data, cfg.eval_batch_size, mesh)
  curve_batches = {name: put_eval_batches(split, cfg.eval_batch_size, mesh)
                   for name, split in (curve_data or {}).items()}

  ckpt = Checkpoints(workdir)
  writer = writer or MetricWriter(workdir)  # Inactive on every process but 0.
  sign = 1.0 if cfg.best_mode == "max" else -1.0
  meta = {"epoch": 0, "history": [], "best": None, "best_epoch": -1, "bad_epochs": 0}
  restored = ckpt.restore("latest", state.saveable())
  if restored is not None:
    saved, meta = restored
    state = state.replace_saved(saved)
  best_state = None  # Per model: every model at its own best epoch.
  if per_model and restored is not None:
    best_saved = ckpt.restore("best", state.saveable())
    best_state = state.replace_saved(best_saved[0]) if best_saved else None
  writer.truncate_after(meta["epoch"] * steps_per_epoch)

  bar = progress_bar(cfg.num_epochs * steps_per_epoch, meta["epoch"] * steps_per_epoch,
                     enabled=progress and parallel.is_main_process(),
                     desc=f"train {Path(workdir).name}")
  train_seconds, timed_steps, timed_seconds = 0.0, 0, 0.0
  first_epoch = meta["epoch"]
  with stop_requests() as stop:
    for epoch in range(first_epoch, cfg.num_epochs):
      if cfg.patience and meta["bad_epochs"] >= cfg.patience:
        break
      start = time.perf_counter()
      parts = []
      for call in range(epoch * calls, (epoch + 1) * calls):
        if stop:  # Between calls: the state is whole, every checkpoint written is complete.
          bar.close()
          name = signal.Signals(stop[0]).name
          kept = (f"the checkpoint of epoch {meta['epoch']} is kept in "
                  f"{Path(workdir) / 'checkpoints/latest'}" if meta["epoch"] else
                  "no epoch had finished, so nothing was saved")
          raise Interrupted(
              f"{name}: training stopped in epoch {epoch + 1} of {cfg.num_epochs}; {kept}. Run "
              "the same command again to resume: it ends with the same metrics as an "
              "uninterrupted run.", stop[0])
        state, call_metrics = train_epoch(state, train_on_device, call)
        parts.append(jax.tree.map(np.asarray, call_metrics))
        bar.update(steps_per_epoch // calls)
      step_metrics = jax.tree.map(lambda *m: np.concatenate(m, axis=-1), *parts)
      elapsed = time.perf_counter() - start
      train_seconds += elapsed
      if epoch > first_epoch:  # The first epoch of a process includes compilation.
        timed_steps, timed_seconds = timed_steps + steps_per_epoch, timed_seconds + elapsed

      losses = step_metrics["loss"]
      bad_step = first_nonfinite_step(losses, epoch * steps_per_epoch)
      if bad_step is not None:
        bar.close()
        kept = (f"the last good checkpoint (epoch {meta['epoch']}) is kept in "
                f"{Path(workdir) / 'checkpoints/latest'} and a re-run resumes from it"
                if ckpt.latest.latest_step() is not None else
                "no checkpoint was saved (it failed in the first epoch run here), so a re-run "
                "starts from the beginning")
        raise NonFiniteLossError(
            f"Loss became {float(losses[~np.isfinite(losses)].flat[0])} in epoch {epoch + 1} "
            f"(first at step {bad_step}). Training stopped; {kept}. Lower the learning rate, add "
            "gradient clipping, or check the inputs for NaN.")

      global_step = (epoch + 1) * steps_per_epoch
      first_step = epoch * steps_per_epoch
      for i in range(0, steps_per_epoch, cfg.log_every_steps):
        writer.write(first_step + i + 1, "train_step",
                     {k: np.asarray(v)[..., i] for k, v in step_metrics.items()})
      train_summary = _summary(step_metrics)
      val_metrics = jax.tree.map(np.asarray, evaluate_fn(state, val_batches))
      writer.write(global_step, "train", train_summary)
      writer.write(global_step, "val", val_metrics)
      row = {"epoch": epoch + 1, "step": global_step, "train": _jsonable(train_summary),
             "val": _jsonable(val_metrics)}
      for name, batches in curve_batches.items():
        curve_metrics = jax.tree.map(np.asarray, evaluate_fn(state, batches))
        writer.write(global_step, name, curve_metrics)
        row[name] = _jsonable(curve_metrics)
      meta["history"].append(row)
      seconds = meta.setdefault("seconds", [])
      seconds.append((seconds[-1] if seconds else 0.0) + elapsed)

      score = float(np.mean(val_metrics[cfg.best_metric]))
      meta["epoch"] = epoch + 1
      if per_model:
        best_state = _keep_per_model_best(ckpt, meta, state, best_state, sign, global_step,
                                          np.asarray(val_metrics[cfg.best_metric]))
      elif meta["best"] is None or sign * score > sign * meta["best"]:
        meta.update(best=score, best_epoch=epoch + 1, bad_epochs=0)
        # best before latest: a kill between the two replays this epoch and rewrites the same best.
        if global_step not in ckpt.best.all_steps():
          ckpt.save("best", global_step, state.saveable(), {"epoch": epoch + 1, "val": score})
      else:
        meta["bad_epochs"] += 1
      ckpt.save("latest", global_step, state.saveable(), meta)

      bar.set_postfix(loss=f"{np.mean(train_summary['loss']):.4f}",
                      **{f"val_{cfg.best_metric}": f"{score:.4f}"})
  bar.close()

  best = ckpt.restore("best", state.saveable())
  if best is not None:
    state = state.replace_saved(best[0])
  ckpt.close()
  steps_per_second = timed_steps / timed_seconds if timed_seconds else None
  return FitResult(state=state, history=meta["history"], best_epoch=meta["best_epoch"],
                   train_seconds=train_seconds, steps_per_second=steps_per_second, mesh=mesh,
                   epoch_seconds=meta.get("seconds", []),
                   best_epochs=meta.get("best_epochs"))


def with_hyperparams(state: TrainState, hparams: dict[str, np.ndarray]) -> TrainState:
  """``state`` with every hyperparameter leaf named like a key of ``hparams`` (one value per
  model) set to that key's values, in the leaf's own sharding and dtype: the optimiser's
  (``optax.inject_hyperparams``) and the model's and loss's (``model_state['hparams']``)."""
  def set_leaf(path, leaf):
    name = getattr(path[-1], "key", None) if path else None
    if name not in hparams:
      return leaf
    values = jnp.asarray(hparams[name], leaf.dtype).reshape(leaf.shape)
    return jax.device_put(values, leaf.sharding) if hasattr(leaf, "sharding") else values
  held = {"opt_state": state.opt_state,
          "model_state": {sweep.HPARAMS: state.model_state.get(sweep.HPARAMS, {})}}
  found = {getattr(p[-1], "key", None) for p, _ in jax.tree_util.tree_flatten_with_path(held)[0]}
  missing = set(hparams) - found
  if missing:
    raise ValueError(f"The state has no hyperparameter {sorted(missing)} to sweep (optimiser "
                     "values must be injected, the model's be in model_state['hparams']).")
  held = jax.tree_util.tree_map_with_path(set_leaf, held)
  model_state = state.model_state
  if sweep.HPARAMS in model_state:
    model_state = {**model_state, **held["model_state"]}
  return state.replace(opt_state=held["opt_state"], model_state=model_state)


@jax.jit
def _select(improved: jax.Array, new, old):
  """Per model (leading axis): ``new`` where ``improved``, else ``old``."""
  pick = lambda n, o: jnp.where(improved.reshape(-1, *([1] * (n.ndim - 1))), n, o)
  return jax.tree.map(pick, new, old)


def _keep_per_model_best(ckpt, meta, state, best_state, sign, global_step, scores):
  """Updates ``meta`` and the per-model best state with this epoch's validation ``scores``
  (one per model) and saves ``best`` when any model improved; returns the best state."""
  scores = scores.reshape(-1).astype(np.float64)
  previous = np.asarray(meta["best"] if meta["best"] is not None else [np.nan] * len(scores))
  improved = np.isnan(previous) | (sign * scores > sign * previous)
  epoch = meta["epoch"]
  epochs = np.asarray(meta.get("best_epochs") or [0] * len(scores))
  meta["best"] = np.where(improved, scores, previous).tolist()
  meta["best_epochs"] = np.where(improved, epoch, epochs).tolist()
  meta["bad_epochs"] = 0 if improved.any() else meta["bad_epochs"] + 1
  if not improved.any():
    return best_state
  meta["best_epoch"] = epoch
  best_state = jax.tree.map(jnp.copy, state) if best_state is None else _select(
      jnp.asarray(improved), state, best_state)
  if global_step not in ckpt.best.all_steps():
    ckpt.save("best", global_step, best_state.saveable(),
              {"epoch": epoch, "val": meta["best"], "epochs": meta["best_epochs"]})
  return best_state
