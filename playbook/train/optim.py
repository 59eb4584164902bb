"""Optimisers and learning-rate schedules from a config block."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int) -> optax.Schedule:
  """``constant``, ``cosine`` (warmup then cosine decay to 0) or ``onecycle``."""
  total = steps_per_epoch * num_epochs
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  if cfg.schedule == "constant":
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, max(total, warmup + 1))
  if cfg.schedule == "onecycle":
    return optax.cosine_onecycle_schedule(total, cfg.learning_rate)
  raise ValueError(f"Unknown schedule {cfg.schedule!r}: use constant, cosine or onecycle.")


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   num_epochs: int) -> optax.GradientTransformation:
  """``adam``, ``adamw``, ``sgd`` (Nesterov momentum) or ``rmsprop``, with optional clipping."""
  lr = learning_rate_schedule(cfg, steps_per_epoch, num_epochs)
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
  if cfg.get("clip_norm"):
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
  return opt
