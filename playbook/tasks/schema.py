"""What config values must be: each task's ``RULES``, checked before anything is read or written.

A rule is ``(accepts(value) -> bool, "what is expected")``; ``check`` refuses the first value a
rule does not accept with one line naming the key, the value given and what is expected. Keys a
study's config does not have are skipped (a study only carries the keys its task reads).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import ml_collections

from playbook.tasks import ConfigError

Rule = tuple[Callable[[Any], bool], str]


def _number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v  # Not NaN.


def _integer(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


POSITIVE: Rule = (lambda v: _number(v) and 0 < v < float("inf"), "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: _number(v) and 0 <= v < float("inf"), "a finite number >= 0")
POSITIVE_INT: Rule = (lambda v: _integer(v) and v > 0, "an integer > 0")
NON_NEGATIVE_INT: Rule = (lambda v: _integer(v) and v >= 0, "an integer >= 0")
INTEGER: Rule = (_integer, "an integer")
FRACTION: Rule = (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
BOOL: Rule = (lambda v: isinstance(v, bool), "True or False")
OPTIONAL_POSITIVE_INT: Rule = (lambda v: v is None or (_integer(v) and v > 0),
                               "an integer > 0, or None")
WIDTHS: Rule = (lambda v: isinstance(v, (tuple, list)) and all(_integer(w) and w > 0 for w in v),
                "a tuple of integers > 0, e.g. (512, 512)")
WIDTH_OR_WIDTHS: Rule = (lambda v: POSITIVE_INT[0](v) or WIDTHS[0](v),
                         "an integer > 0 (one layer) or a tuple of them, e.g. (512, 512)")


def one_of(*choices) -> Rule:
  return (lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


# Every trained task's common keys (the ones it does not have are skipped).
TRAINING: dict[str, Rule] = {
    "seed": INTEGER, "num_seeds": POSITIVE_INT, "progress": BOOL, "tensorboard": BOOL,
    "precision": (lambda v: v in ("float32", "bfloat16"), "'float32' or 'bfloat16'"),
    "train.batch_size": POSITIVE_INT, "train.eval_batch_size": POSITIVE_INT,
    "train.num_epochs": POSITIVE_INT, "train.patience": NON_NEGATIVE_INT,
    "train.log_every_steps": POSITIVE_INT, "train.steps_per_call": OPTIONAL_POSITIVE_INT,
    "train.best_mode": one_of("max", "min"),
    "optim.learning_rate": POSITIVE, "optim.weight_decay": NON_NEGATIVE,
    "optim.momentum": FRACTION, "optim.label_smoothing": FRACTION, "optim.clip_norm": NON_NEGATIVE,
    "optim.warmup_epochs": NON_NEGATIVE, "optim.l2": NON_NEGATIVE,
    "optim.lr_scaling": one_of("none", "linear", "sqrt"),
    "optim.base_batch_size": POSITIVE_INT,
    "model.dropout": FRACTION,
    "data.train_limit": OPTIONAL_POSITIVE_INT, "data.test_limit": OPTIONAL_POSITIVE_INT,
    "parallel.fsdp": (lambda v: _integer(v) and (v == -1 or v > 0), "-1 or an integer > 0"),
}


def lookup(config: ml_collections.ConfigDict, key: str):
  """``config`` at the dotted ``key``; KeyError when a part is absent."""
  value = config
  for part in key.split("."):
    if not isinstance(value, ml_collections.ConfigDict) or part not in value:
      raise KeyError(key)
    value = value[part]
  return value


def check(config: ml_collections.ConfigDict, *rule_sets: dict[str, Rule]) -> None:
  """Raises ``ConfigError`` for the first value a rule refuses (rule sets in order)."""
  for rules in rule_sets:
    for key, (accepts, expected) in rules.items():
      try:
        value = lookup(config, key)
      except KeyError:
        continue
      if not accepts(value):
        raise ConfigError(f"config.{key}={value!r} is not accepted: expected {expected}.")


def check_sweep(config: ml_collections.ConfigDict, swept, uses: dict[str, tuple[str, ...]], *,
                refused: dict[str, str] | None = None,
                rules: dict[str, Rule] | None = None) -> None:
  """Refuses a sweep (``train.sweep.Sweep`` or None) the task cannot train: a name in
  ``refused`` (name -> why), an optimiser value the configured optimiser does not read
  (``uses``: name -> the optimisers that read it), and any swept value its config key's rule
  (``TRAINING``, then ``rules``) does not accept."""
  for name in swept.names if swept else ():
    if name in (refused or {}):
      raise ConfigError(f"config.sweep.{name}: {refused[name]}")
    if name in uses and config.optim.name not in uses[name]:
      raise ConfigError(f"config.sweep.{name}: the {config.optim.name!r} optimiser does not use "
                        f"{name} (it is used by {', '.join(uses[name])}).")
    key = swept.keys[name]
    rule = {**TRAINING, **(rules or {})}[key]
    for variant in swept.variants:
      if not rule[0](variant[name]):
        raise ConfigError(f"config.{key}={variant[name]!r} is not accepted: expected {rule[1]} "
                          f"(config.sweep.{name}).")
