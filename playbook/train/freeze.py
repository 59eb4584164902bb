"""Frozen parameters: a backbone that does not train while a new head does.

``frozen(tx, is_trainable)`` wraps an optimiser so that parameters whose path fails
``is_trainable`` get zero updates and no optimiser state (no Adam moments for a frozen VGG).
``stop_frozen_gradients(loss_fn, is_trainable)`` keeps the backward pass from computing their
gradients at all.
"""

from __future__ import annotations

from typing import Callable

import jax
import optax


def path_name(path) -> str:
  """'backbone/block5/conv1/kernel' for a pytree key path."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def frozen(tx: optax.GradientTransformation,
           is_trainable: Callable[[str], bool]) -> optax.GradientTransformation:
  """``tx`` on the parameters whose path name satisfies ``is_trainable``; the rest stay fixed."""

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if is_trainable(path_name(path)) else "freeze", params)

  return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def stop_frozen_gradients(loss_fn, is_trainable: Callable[[str], bool]):
  """``loss_fn(params, *args)`` with the frozen parameters behind ``lax.stop_gradient``.

  Why: zero updates alone (``frozen``) still leave the trainer computing every gradient (its
  ``grad_norm`` metric reads them all), so the backward pass would run through the whole
  backbone. Behind ``stop_gradient`` the frozen layers are constants to autodiff: the backward
  pass stops at the lowest trainable layer, and the frozen parameters' gradients are zeros.
  """
  def fn(params, *args):
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p if is_trainable(path_name(path)) else jax.lax.stop_gradient(p), params)
    return loss_fn(params, *args)

  return fn
