"""Train and eval steps, and whole epochs over on-device data as one ``lax.scan``.

A study supplies a loss function

    loss_fn(params, model_state, batch, rng, train) -> (loss, (new_model_state, metrics))

where ``batch`` is a dict of arrays (with an optional ``'mask'`` of example weights, used for the
padded last eval batch) and ``metrics`` a dict of batch-mean scalars, and a train step

    train_step(state, batch, rng) -> (state, metrics)

usually ``make_train_step(loss_fn)`` (autodiff), or one built from hand-derived gradients with
``make_train_step(grad_fn=...)`` (the scratch networks). Everything here is a pure function of its
arguments; ``fit`` jits these once.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from playbook.train import sweep
from playbook.train.state import TrainState

Batch = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]
# augment_fn(rng, batch) -> batch, applied to training batches on the device.
AugmentFn = Callable[[jax.Array, Batch], Batch]
# grad_fn(params, model_state, batch, rng) -> ((loss, (model_state, metrics)), grads): the form
# of jax.value_and_grad(loss_fn, has_aux=True) at train=True.
GradFn = Callable[..., tuple[tuple[jax.Array, tuple[Any, dict]], Any]]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn | None = None, *, grad_fn: GradFn | None = None) -> TrainStep:
  """``train_step(state, batch, rng) -> (state, metrics)``: one optimiser step.

  The gradients come from ``jax.value_and_grad`` of ``loss_fn``, or from ``grad_fn`` when a model
  computes its own; then an update by the state's optimiser and the new model state.
  """
  if grad_fn is None:
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
    grad_fn = lambda params, model_state, batch, rng: value_and_grad(params, model_state, batch,
                                                                     rng, True)

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    (loss, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, rng)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state), metrics

  return train_step


def _eval_sums(state: TrainState, model_state, batch: Batch, loss_fn: LossFn):
  loss, (model_state, metrics) = loss_fn(state.params, model_state, batch, None, False)
  weight = jnp.sum(batch["mask"])
  sums = {k: v * weight for k, v in dict(metrics, loss=loss).items()} | {"count": weight}
  return sums, model_state


def eval_step(state: TrainState, batch: Batch, *, loss_fn: LossFn) -> dict[str, jax.Array]:
  """Metrics of one batch in eval mode, weighted by its number of real examples."""
  return _eval_sums(state, state.model_state, batch, loss_fn)[0]


def zeroed_model_state(state: TrainState) -> TrainState:
  """``state`` with its model state (a recurrent carry) set to zeros: a fresh start of the
  streams. A sweep's hyperparameters (``model_state['hparams']``) are kept."""
  return state.replace(model_state={
      k: v if k == sweep.HPARAMS else jax.tree.map(jnp.zeros_like, v)
      for k, v in state.model_state.items()})


def epoch_batches(rng: jax.Array, num_examples: int, batch_size: int, *,
                  shuffle: bool = True) -> jax.Array:
  """Indices of an epoch, shape (steps, batch_size); the ragged remainder is dropped.

  Shuffled, or with ``shuffle=False`` in order: batch ``i`` is rows ``i*batch_size`` onwards
  (the layout of parallel text streams, where batch ``i+1`` continues batch ``i``).
  """
  steps = num_examples // batch_size
  if steps == 0:
    raise ValueError(f"batch_size {batch_size} is larger than the data ({num_examples}).")
  order = jax.random.permutation(rng, num_examples) if shuffle else jnp.arange(num_examples)
  return order[: steps * batch_size].reshape(steps, batch_size)


def train_epoch(state: TrainState, data: Batch, epoch: jax.Array, *, train_step: TrainStep,
                batch_size: int, augment_fn: AugmentFn | None = None,
                constrain_batch: Callable[[Batch], Batch] = lambda b: b,
                num_examples: int | None = None, shuffle: bool = True,
                carry_state: bool = False, calls_per_epoch: int = 1):
  """One pass over shuffled in-memory ``data``, as a ``lax.scan`` of ``train_step``.

  Returns the new state and the per-step metrics, stacked (steps, ...). The shuffle and every
  step's randomness come from ``fold_in(state.rng, epoch)``, so an epoch is reproducible from the
  state alone: resuming from a checkpoint replays exactly what an uninterrupted run would do.
  With ``calls_per_epoch = k > 1`` (so that a long epoch can report progress) one call runs a
  k-th of the epoch, and ``epoch`` counts calls: call ``c`` runs steps ``(c % k) * steps / k``
  onwards of epoch ``c // k``; the k calls of an epoch do exactly what one call of it would.
  ``num_examples`` (default: all rows) is the number of real rows when ``data`` ends in padding
  (a data set split over devices); the shuffle only draws from them, so the batches are the same
  on any number of devices. ``batch_size`` is the global batch: ``constrain_batch`` splits it.

  Truncated backpropagation through time: ``shuffle=False`` takes the batches in order and
  ``carry_state=True`` zeroes ``model_state`` at the start of the epoch; each step's loss gets the
  state the previous step returned, so a recurrent carry flows from batch to batch.
  """
  epoch, part = epoch // calls_per_epoch, epoch % calls_per_epoch
  epoch_rng = jax.random.fold_in(state.rng, epoch)
  shuffle_rng, steps_rng = jax.random.split(epoch_rng)
  if num_examples is None:
    num_examples = jax.tree.leaves(data)[0].shape[0]
  batches = epoch_batches(shuffle_rng, num_examples, batch_size, shuffle=shuffle)
  if len(batches) % calls_per_epoch:
    raise ValueError(f"calls_per_epoch={calls_per_epoch} must divide the {len(batches)} steps.")
  steps_per_call = len(batches) // calls_per_epoch
  first_step = part * steps_per_call
  batches = jax.lax.dynamic_slice_in_dim(batches, first_step, steps_per_call)
  if carry_state:  # From zeros at the start of the epoch, carried on from the previous call.
    zeroed = zeroed_model_state(state).model_state
    state = state.replace(model_state=jax.tree.map(lambda z, s: jnp.where(part == 0, z, s),
                                                   zeroed, state.model_state))

  def body(state, step_and_indices):
    i, indices = step_and_indices
    batch = constrain_batch({k: v[indices] for k, v in data.items()})
    aug_rng, step_rng = jax.random.split(jax.random.fold_in(steps_rng, i))
    if augment_fn is not None:
      batch = augment_fn(aug_rng, batch)
    return train_step(state, batch, step_rng)

  return jax.lax.scan(body, state, (first_step + jnp.arange(steps_per_call), batches))


def pad_to_batches(data: dict, batch_size: int) -> dict:
  """Pads host arrays to whole batches, shape (num_batches, batch_size, ...), with a 0/1 mask."""
  import numpy as np  # Host-side helper: runs once per data set, not in a step.
  n = len(next(iter(data.values())))
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  out = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in data.items()}
  out["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return {k: v.reshape(num_batches, batch_size, *v.shape[1:]) for k, v in out.items()}


def eval_epoch(state: TrainState, batches: Batch, *, loss_fn: LossFn,
               carry_state: bool = False) -> dict[str, jax.Array]:
  """Mean metrics over pre-batched eval data (from ``pad_to_batches``), as one ``lax.scan``.

  ``carry_state=True``: the batches are consecutive pieces of parallel streams; the model state
  starts from zeros and each batch gets the one the previous batch returned (as in training).
  """
  def body(totals_and_carry, batch):
    totals, carry = totals_and_carry  # carry: the model state, or {} when not carried.
    sums, model_state = _eval_sums(state, carry if carry_state else state.model_state, batch,
                                   loss_fn)
    return (jax.tree.map(jnp.add, totals, sums), model_state if carry_state else carry), None

  shapes = jax.eval_shape(lambda b: eval_step(state, b, loss_fn=loss_fn),
                          jax.tree.map(lambda a: a[0], batches))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  first_state = zeroed_model_state(state).model_state if carry_state else {}
  (totals, _), _ = jax.lax.scan(body, (zeros, first_state), batches)
  count = totals.pop("count")
  return {k: v / count for k, v in totals.items()}
