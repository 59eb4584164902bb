"""Frozen parameters: a backbone that does not train while a new head does.

``frozen(tx, is_trainable)`` wraps an optimiser so that parameters whose path fails
``is_trainable`` get zero updates and no optimiser state (no Adam moments for a frozen VGG).
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
