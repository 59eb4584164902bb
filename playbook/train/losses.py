"""Loss functions in the trainer's form: (params, model_state, batch, rng, train) -> (loss, aux)."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from playbook.train import sweep


def classification_loss(model: nn.Module, *, preprocess: Callable[[jax.Array], jax.Array],
                        label_smoothing: float = 0.0):
  """Softmax cross-entropy of ``model`` on ``batch = {'image', 'label', ['mask']}``.

  Mutable collections in ``model_state`` (BatchNorm's ``batch_stats``) are updated in training
  mode and read-only in eval mode. The reported ``loss`` is the plain cross-entropy (what a reader
  compares across papers); label smoothing only shapes the training gradient.

  In a sweep, ``model_state['hparams']`` holds this model's own dropout rate and label smoothing
  (``train/sweep.py``): numbers in the program, where they override the fixed ones.
  """

  def loss_fn(params, model_state, batch, rng, train):
    x = preprocess(batch["image"])
    hparams = model_state.get(sweep.HPARAMS, {})
    if hparams:
      model_state = {k: v for k, v in model_state.items() if k != sweep.HPARAMS}
    net = model.clone(dropout=hparams["dropout"]) if "dropout" in hparams else model
    variables = {"params": params, **model_state}
    if train:
      logits, model_state = net.apply(variables, x, train=True, rngs={"dropout": rng},
                                      mutable=list(model_state))
    else:
      logits = net.apply(variables, x, train=False)
    if hparams:
      model_state = {**model_state, sweep.HPARAMS: hparams}
    labels = batch["label"]
    weights = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes),
                                  hparams.get("label_smoothing", label_smoothing))
    objective = optax.softmax_cross_entropy(logits, targets)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    mean = lambda v: jnp.sum(v * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    loss = mean(objective) if train else mean(xent)
    return loss, (model_state, {"accuracy": mean(correct), "xent": mean(xent)})

  return loss_fn
