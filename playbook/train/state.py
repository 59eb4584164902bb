"""The training state: one explicit pytree, so it can be jitted, vmapped, sharded and saved."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, and nothing else.

  ``model_state`` holds the model's mutable collections: BatchNorm statistics
  (``{'batch_stats': ...}``), an LSTM's carried state, or ``{}`` for a plain MLP. ``rng`` is this
  run's (or this seed's) base key: every step's randomness is folded in from it, so a step is a
  pure function of the state and the step number.
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, params, model_state, tx, rng) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
               opt_state=tx.init(params), rng=rng, tx=tx)

  def saveable(self) -> dict:
    """The pytree that goes into a checkpoint (everything but the static optimiser)."""
    return dict(step=self.step, params=self.params, model_state=self.model_state,
                opt_state=self.opt_state, rng=self.rng)

  def replace_saved(self, saved: dict) -> "TrainState":
    return self.replace(**saved)


# init_fn(rng) -> (params, model_state): a study's model initialiser.
InitFn = Callable[[jax.Array], tuple[Any, Any]]


def init_train_state(init_fn: InitFn, tx: optax.GradientTransformation,
                     rng: jax.Array) -> TrainState:
  """A fresh state from ``rng``: one key for the parameters, one kept for the steps."""
  init_rng, run_rng = jax.random.split(rng)
  params, model_state = init_fn(init_rng)
  return TrainState.create(params=params, model_state=model_state, tx=tx, rng=run_rng)
