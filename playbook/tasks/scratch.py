"""Classifiers whose gradients are derived and coded by hand, trained by the common trainer.

The networks (``models/scratch.py``: the dense net of ``docs/backprop.md``) compute their loss and
gradients without autodiff; their update, SGD with momentum, is written by hand too
(``scratch.sgd_momentum_transform``). Everything else is the classification task's: data, ``fit``
(checkpoints, resume, NaN guard, progress, seeds with vmap), the test on the best checkpoint,
plots and ``results.json``; this module adds a plot of every layer's gradient norm.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook import models
from playbook.models import scratch
from playbook.run import plots, rundir
from playbook.run.writer import read_metrics
from playbook.tasks import classify, schema
from playbook.train import steps, sweep


def base_config(*, study: str, data: str) -> ml_collections.ConfigDict:
  """The classifier config, less the keys a scratch network does not implement (so overriding
  one is refused, not ignored), plus its own: activation, init, L2 and the SGD schedule."""
  config = classify.base_config(study=study, data=data)
  config.task = "scratch"
  del config.model.dropout
  for key in ("weight_decay", "label_smoothing", "clip_norm", "lr_scaling", "base_batch_size"):
    del config.optim[key]
  # Weight decay's L2 term enters the hand-derived gradient, not the update; no dropout or label
  # smoothing in the hand-derived networks.
  for key in ("weight_decay", "dropout", "label_smoothing"):
    del config.sweep[key]
  config.model.name = "scratch_mlp"
  config.model.activation = "relu"  # relu, sigmoid or tanh.
  config.model.init = "he"          # he or xavier.
  config.optim.name = "sgd_momentum"
  config.optim.learning_rate = 0.1  # Peak, after warm-up.
  config.optim.momentum = 0.9
  config.optim.l2 = 5e-4            # L2 weight decay: (l2 / 2) * sum ||w||^2 added to the loss.
  config.optim.schedule = "cosine"  # cosine or constant.
  config.optim.warmup_epochs = 1.0
  return config


def make_learner(config: ml_collections.ConfigDict, num_classes: int, train_x: np.ndarray,
                 steps_per_epoch: int) -> classify.Learner:
  """The scratch network ``config.model`` names, its hand gradients and hand SGD."""
  net = models.build(config.model, num_classes, dtype=models.precision.compute_dtype(config))
  preprocess = classify.make_preprocess(config.data)
  input_shape = tuple(train_x.shape[1:])
  schedule = functools.partial(
      scratch.learning_rate, warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
      total_steps=config.train.num_epochs * steps_per_epoch, schedule=config.optim.schedule)
  make_tx = lambda optim: scratch.sgd_momentum_transform(
      functools.partial(schedule, peak=optim.learning_rate), optim.momentum)
  swept = sweep.parse(config)  # Swept values live in the (injected) optimiser state.
  peak = lambda state: (state.opt_state.hyperparams["learning_rate"]
                        if swept and "learning_rate" in swept.names else config.optim.learning_rate)

  def loss_fn(params, model_state, batch, rng, train):
    """Evaluation: the plain cross-entropy and accuracy, padded examples masked out."""
    logits = net.logits(params, preprocess(batch["image"]))
    labels = batch["label"]
    weights = batch.get("mask", jnp.ones(labels.shape, jnp.float32))
    xent = -jnp.take_along_axis(scratch.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    mean = lambda v: jnp.sum(v * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    return mean(xent), (model_state, {"xent": mean(xent), "accuracy": mean(correct)})

  def grad_fn(params, model_state, batch, rng):
    loss, metrics, grads = net.loss_and_grads(params, preprocess(batch["image"]), batch["label"],
                                              l2=config.optim.l2)
    return (loss, (model_state, dict(metrics, **scratch.layer_grad_norms(grads)))), grads

  hand_step = steps.make_train_step(grad_fn=grad_fn)

  def train_step(state, batch, rng):
    new_state, metrics = hand_step(state, batch, rng)
    return new_state, dict(metrics, learning_rate=schedule(state.step, peak=peak(state)))

  return classify.Learner(
      init_fn=lambda rng: (net.init_params(rng, input_shape), {}), loss_fn=loss_fn,
      tx=sweep.injected(make_tx, config.optim, swept) if swept else make_tx(config.optim),
      train_step=train_step,
      logits_fn=lambda v, x: net.logits(v["params"], preprocess(x)))


def validate(config: ml_collections.ConfigDict) -> None:
  classify.validate(config, {
      "model.name": schema.one_of("scratch_mlp", "scratch_cnn"),
      "model.activation": schema.one_of(*scratch.ACTIVATIONS),
      "model.init": schema.one_of(*scratch.INIT_VARIANCE),
      "optim.name": schema.one_of("sgd_momentum"),
      "optim.schedule": schema.one_of("cosine", "constant")},
      {"learning_rate": ("sgd_momentum",), "momentum": ("sgd_momentum",)})


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  validate(config)
  if (done := rundir.finished(workdir, config)) is not None:
    return done  # Its figures are drawn: nothing to restore or plot again.
  results = classify.fit_and_test(config, workdir, make_learner=make_learner)
  if "wall_seconds" in results:  # Process 0, which writes the figures.
    plot_grad_norms(Path(workdir), Path(workdir) / "plots" / "gradient_norms.png")
    if config.model.name == "scratch_cnn":
      _, variables, _, _ = classify.restore_learner(config, workdir, make_learner=make_learner)
      plot_filters(np.asarray(variables["params"][0]["w"]),
                   Path(workdir) / "plots" / "first_layer_filters.png")
  return results


def predictor(config: ml_collections.ConfigDict, workdir: str | Path):
  return classify.predictor(config, workdir, make_learner=make_learner)


def plot_grad_norms(workdir: Path, path: Path) -> Path:
  """||dJ/dw_l||_F and ||dJ/db_l|| of every layer, per logged training step, log scale."""
  rows = [r for r in read_metrics(workdir) if r["split"] == "train_step"]
  fig, axes = plots.plt.subplots(1, 2, figsize=(11, 4), sharex=True)
  step = np.array([r["step"] for r in rows])
  for ax, name, symbol in ((axes[0], "w", "W"), (axes[1], "b", "b")):
    layers = sorted((k for k in rows[0] if k.startswith(f"grad_norm_{name}")),
                    key=lambda k: int(k[len(f"grad_norm_{name}"):]))
    for key in layers:
      values = np.array([np.mean(r[key]) for r in rows])  # Mean over seeds.
      ax.plot(step, values, lw=1.2, label=f"layer {key[len(f'grad_norm_{name}'):]}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(rf"$\|\partial J / \partial {symbol}_l\|$")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle("Gradient norms per layer (minibatch gradients, L2 term included)")
  return plots.save(fig, path)


def plot_filters(kernel: np.ndarray, path: Path) -> Path:
  """The first convolution's filters (HWIO, one input channel), each on its own symmetric grey
  scale: what each output channel responds to in the (standardised) image."""
  filters = kernel[:, :, 0, :].transpose(2, 0, 1)
  cols = 8
  rows = -(-len(filters) // cols)
  fig, axes = plots.plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
  for ax, i in zip(axes.flat, range(rows * cols)):
    ax.axis("off")
    if i < len(filters):
      scale = np.abs(filters[i]).max() or 1.0
      ax.imshow(filters[i], cmap="gray", vmin=-scale, vmax=scale)
  fig.suptitle("First-layer 3x3 filters (best checkpoint, seed 0)")
  return plots.save(fig, path)
