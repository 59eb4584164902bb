"""Models, built by name from ``config.model``: ``build(config.model, num_classes, dtype=...)``.

Flax linen modules, used only through init/apply; the scratch networks are plain functions with
hand-derived gradients, wrapped in a small dataclass (``scratch.ScratchMLP``). Adding a model: its
module here and one entry in ``REGISTRY``; its config keys are the builder's arguments.

``dtype`` is the compute dtype (``precision.compute_dtype(config)``: float32 or bfloat16); the
parameters are float32 either way and the logits come back in float32 (``precision.py``).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import ml_collections

from playbook.models import precision  # noqa: F401 (models.precision.compute_dtype for tasks)


def _mlp(cfg, num_classes: int, dtype):
  from playbook.models.mlp import MLP
  return MLP(hidden=tuple(cfg.hidden), num_classes=num_classes, dropout=cfg.dropout, dtype=dtype)


def _seed_cnn(cfg, num_classes: int, dtype):
  from playbook.models.cnn import SeedCNN
  return SeedCNN(num_classes=num_classes, widths=tuple(cfg.widths), hidden=cfg.hidden,
                 conv_dropout=cfg.conv_dropout, dropout=cfg.dropout, fast_conv=cfg.fast_conv,
                 dtype=dtype)


def _fast_resnet(cfg, num_classes: int, dtype):
  from playbook.models.resnet_fast import FastResNet
  return FastResNet(num_classes=num_classes, widths=tuple(cfg.widths),
                    bn_momentum=cfg.bn_momentum, tta_flip=cfg.tta_flip, fast_conv=cfg.fast_conv,
                    dtype=dtype)


def _char_lstm(cfg, num_classes: int, dtype):
  from playbook.models.lstm import CharLSTM
  return CharLSTM(vocab_size=num_classes, hidden=cfg.hidden, num_layers=cfg.num_layers,
                  dropout=cfg.dropout, unroll=cfg.unroll, dtype=dtype)


def _scratch_mlp(cfg, num_classes: int, dtype):
  from playbook.models.scratch import ScratchMLP
  return ScratchMLP(hidden=tuple(cfg.hidden), num_classes=num_classes,
                    activation=cfg.activation, init=cfg.init, dtype=dtype)


def _scratch_cnn(cfg, num_classes: int, dtype):
  from playbook.models.scratch_cnn import ScratchCNN
  return ScratchCNN(widths=tuple(cfg.widths), hidden=tuple(cfg.hidden), num_classes=num_classes,
                    init=cfg.init, dtype=dtype)


REGISTRY: dict[str, Callable] = {
    "mlp": _mlp, "seed_cnn": _seed_cnn, "fast_resnet": _fast_resnet, "char_lstm": _char_lstm,
    "scratch_mlp": _scratch_mlp, "scratch_cnn": _scratch_cnn,
}


def build(cfg: ml_collections.ConfigDict, num_classes: int, dtype=jnp.float32):
  """The model ``cfg.name`` names, with ``num_classes`` outputs (the vocabulary, for an LM),
  computing in ``dtype`` (float32 parameters either way)."""
  if cfg.name not in REGISTRY:
    raise ValueError(f"Unknown model {cfg.name!r}; known: {', '.join(sorted(REGISTRY))}.")
  return REGISTRY[cfg.name](cfg, num_classes, dtype)
