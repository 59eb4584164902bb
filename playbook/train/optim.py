"""Optimisers and learning-rate schedules from a config block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from playbook.train.freeze import path_name


def peak_learning_rate(cfg: ml_collections.ConfigDict, batch_size: int | None = None) -> float:
  """``cfg.learning_rate``, scaled to the global ``batch_size`` by ``cfg.lr_scaling``.

  'none' (default) uses it as is; 'linear' multiplies it by ``batch_size / cfg.base_batch_size``
  (Goyal et al. 2017), 'sqrt' by the square root of that ratio (a common choice for Adam).
  """
  scaling = cfg.get("lr_scaling", "none")
  if scaling == "none":
    return cfg.learning_rate
  if batch_size is None:
    raise ValueError(f"lr_scaling={scaling!r} needs the global batch size.")
  ratio = batch_size / cfg.base_batch_size
  if scaling == "linear":
    return cfg.learning_rate * ratio
  if scaling == "sqrt":
    return cfg.learning_rate * ratio ** 0.5
  raise ValueError(f"Unknown lr_scaling {scaling!r}: use none, linear or sqrt.")


def _with(cfg, **values) -> ml_collections.ConfigDict:
  """A copy of the config block ``cfg`` (or a sweep's overlay of one) with ``values`` set."""
  out = ml_collections.ConfigDict({k: cfg.get(k) for k in ("schedule", "warmup_epochs",
                                                              "warmup_fraction", "start_factor",
                                                              "end_factor") if k in cfg})
  out.update(values)
  return out


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int, batch_size: int | None = None) -> optax.Schedule:
  """``constant``, ``cosine`` (warmup then cosine decay to 0) or ``onecycle``, peaking at
  :func:`peak_learning_rate`."""
  total = steps_per_epoch * num_epochs
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  peak = peak_learning_rate(cfg, batch_size)
  if isinstance(peak, jax.Array):  # Swept (a traced value, playbook/train/sweep.py): the
    # schedule's shape at peak 1, scaled; optax's schedules branch on their peak in Python.
    unit = learning_rate_schedule(_with(cfg, learning_rate=1.0, lr_scaling="none"),
                                  steps_per_epoch, num_epochs, batch_size)
    return lambda step: peak * unit(step)
  if cfg.schedule == "constant":
    return optax.constant_schedule(peak)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total, warmup + 1))
  if cfg.schedule == "onecycle":
    return optax.cosine_onecycle_schedule(total, peak)
  if cfg.schedule == "triangle":  # airbench94's: linear from start_factor up, then down.
    top = max(int(cfg.warmup_fraction * total), 1)
    return optax.join_schedules(
        [optax.linear_schedule(cfg.start_factor * peak, peak, top),
         optax.linear_schedule(peak, cfg.end_factor * peak, max(total - top, 1))], [top])
  raise ValueError(f"Unknown schedule {cfg.schedule!r}: use constant, cosine, onecycle or "
                   "triangle.")


def lookahead(every: int, step_size: float, ramp_power: float = 0.0,
              total_steps: int = 1) -> optax.GradientTransformation:
  """Lookahead of the weights (Zhang et al. 2019), as airbench94 uses it: every ``every`` steps
  the slow weights move part of the way to the fast ones and the fast weights are reset to them.
  Chained after an optimiser, it rewrites that step's updates; no trainer change needed.

  The slow weights keep ``(1 - step_size) * (step / total_steps) ** ramp_power`` of themselves:
  with ``ramp_power`` 0 a constant ``step_size``; airbench94 ramps with power 3, so early on the
  slow weights simply follow the fast ones and the averaging only bites late in training.
  """

  def init(params):
    return {"count": jnp.zeros((), jnp.int32), "slow": jax.tree.map(jnp.asarray, params)}

  def update(updates, state, params):
    count = state["count"] + 1
    sync = count % every == 0
    fast = optax.apply_updates(params, updates)
    keep = (1.0 - step_size) * jnp.minimum(count / total_steps, 1.0) ** ramp_power
    moved = jax.tree.map(lambda s, f: f + keep * (s - f), state["slow"], fast)
    slow = jax.tree.map(lambda m, s: jnp.where(sync, m, s), moved, state["slow"])
    updates = jax.tree.map(lambda u, s, p: jnp.where(sync, s - p, u), updates, slow, params)
    return updates, {"count": count, "slow": slow}

  return optax.GradientTransformation(init, update)


def norm_bias_mask(params):
  """True for the ``bias`` of every BatchNorm / LayerNorm / GroupNorm layer in ``params``."""
  def is_norm_bias(path, _):
    *layers, leaf = path_name(path).split("/")
    return leaf == "bias" and any("Norm" in n or "norm" in n for n in layers)
  return jax.tree_util.tree_map_with_path(is_norm_bias, params)


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int,
                   batch_size: int | None = None) -> optax.GradientTransformation:
  """``adam``, ``adamw``, ``sgd`` (Nesterov momentum) or ``rmsprop``, with optional clipping.

  ``batch_size`` is the global batch size, for ``cfg.lr_scaling``. ``cfg.lookahead_every`` > 0
  adds :func:`lookahead` of the weights.
  """
  lr = learning_rate_schedule(cfg, steps_per_epoch, num_epochs, batch_size)
  if cfg.name == "adam":
    opt = optax.adam(lr)
  elif cfg.name == "adamw":
    opt = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.name == "sgd":
    opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                      optax.sgd(lr, momentum=cfg.momentum, nesterov=True))
  elif cfg.name == "rmsprop":
    opt = optax.rmsprop(lr)
  else:
    raise ValueError(f"Unknown optimizer {cfg.name!r}: use adam, adamw, sgd or rmsprop.")
  if cfg.get("norm_bias_lr_scale", 1.0) != 1.0:
    # Scaling the gradient (before weight decay is added) is a learning rate x s with weight
    # decay / s for these parameters: airbench94's "bias_scaler" for BatchNorm biases.
    opt = optax.chain(optax.masked(optax.scale(cfg.norm_bias_lr_scale), norm_bias_mask), opt)
  if cfg.get("clip_norm"):
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
  if cfg.get("lookahead_every"):
    opt = optax.chain(opt, lookahead(cfg.lookahead_every, cfg.lookahead_step_size,
                                     cfg.get("lookahead_ramp_power", 0.0),
                                     steps_per_epoch * num_epochs))
  return opt
