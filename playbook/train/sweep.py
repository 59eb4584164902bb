"""Hyperparameter sweeps in one compiled program.

``--config.sweep.learning_rate=3e-4,1e-3,3e-3`` (crossed with the other swept values and with
``num_seeds``) trains every combination at once: the models are stacked on the leading axis that
``fit`` already vmaps over seeds, and each one's hyperparameters are data in its optimiser state
(``optax.inject_hyperparams``), so one jitted step trains them all. The loss's and model's numbers
(dropout's rate, label smoothing) are data too: each model carries its own in its model state's
``hparams`` collection, where the loss function reads them. Only values that enter the step as
numbers can be swept this way; a value that changes shapes (a layer width) needs separate runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Callable

import ml_collections
import numpy as np
import optax

from playbook.run import rundir

# Sweepable name -> the config key it sets (a task may map a name elsewhere: ``parse(keys=)``).
SWEEPABLE = {"learning_rate": "optim.learning_rate", "weight_decay": "optim.weight_decay",
             "momentum": "optim.momentum", "dropout": "model.dropout",
             "label_smoothing": "optim.label_smoothing"}
# Those the optimiser reads (injected into its state); the others are the model's and the loss's,
# carried in ``model_state[HPARAMS]``.
OPTIMISER = ("learning_rate", "weight_decay", "momentum")
# Which of ``optim.make_optimizer``'s optimisers read each of them (a sweep of a value the
# configured optimiser ignores is refused).
USED_BY = {"learning_rate": ("adam", "adamw", "sgd", "rmsprop"),
           "weight_decay": ("adamw", "sgd"), "momentum": ("sgd",)}
HPARAMS = "hparams"


@dataclasses.dataclass(frozen=True)
class Sweep:
  """The variants of a sweep, each trained with ``seeds`` seeds: model ``i`` of the program is
  variant ``i // seeds``, seed ``i % seeds``."""
  names: tuple[str, ...]                 # Swept hyperparameters, e.g. ('learning_rate',).
  variants: tuple[dict[str, float], ...]  # One {name: value} per variant, in product order.
  seeds: int
  keys: dict[str, str] = dataclasses.field(default_factory=lambda: dict(SWEEPABLE))  # -> config.

  @property
  def num_models(self) -> int:
    return len(self.variants) * self.seeds

  def hparams(self) -> dict[str, np.ndarray]:
    """{name: one value per model}, for ``fit(hparams=...)``."""
    return {n: np.repeat([v[n] for v in self.variants], self.seeds).astype(np.float32)
            for n in self.names}

  @property
  def optimiser_names(self) -> tuple[str, ...]:
    return tuple(n for n in self.names if n in OPTIMISER)

  @property
  def model_names(self) -> tuple[str, ...]:
    return tuple(n for n in self.names if n not in OPTIMISER)

  def label(self, variant: dict[str, float]) -> str:
    return ",".join(f"{n}={variant[n]:g}" for n in self.names)

  def describe(self) -> str:
    """What trained, for a run's closing line: '3 variants x 2 seeds in one program'."""
    return f"{len(self.variants)} variants x {self.seeds} seeds in one program"


def config_block(names=tuple(SWEEPABLE)) -> ml_collections.ConfigDict:
  """A task's ``config.sweep``: one empty entry per name it can sweep (an entry not there is
  refused on the command line as a value that cannot be swept)."""
  return ml_collections.ConfigDict({name: "" for name in names})


def parse(config: ml_collections.ConfigDict, keys: dict[str, str] | None = None) -> Sweep | None:
  """The sweep ``config.sweep`` asks for, or None. Values are comma-separated numbers; ``keys``
  (default ``SWEEPABLE``) names the config key each swept name sets."""
  swept = {name: text for name, text in config.get("sweep", {}).items() if text}
  if not swept:
    return None
  from playbook.tasks import ConfigError  # Here: playbook.tasks imports this module.
  values = {}
  for name, text in swept.items():
    try:
      values[name] = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
      raise ConfigError(f"config.sweep.{name}={text!r}: expected comma-separated numbers, e.g. "
                        "0.0003,0.001,0.003.") from None
    repeated = sorted({v for v in values[name] if values[name].count(v) > 1})
    if repeated:  # Two variants of one name: their results, checkpoints and plot points collide.
      raise ConfigError(f"config.sweep.{name}={text!r} lists {repeated[0]:g} more than once: "
                        "give each value once (for repeats of a value, raise "
                        "--config.num_seeds).")
  names = tuple(values)
  variants = tuple(dict(zip(names, combo)) for combo in itertools.product(*values.values()))
  return Sweep(names=names, variants=variants, seeds=config.get("num_seeds", 1),
               keys=dict(SWEEPABLE, **(keys or {})))


class _Overlay:
  """A config block read through, with some values replaced (traced ones, in a sweep)."""

  def __init__(self, base: ml_collections.ConfigDict, values: dict):
    self._base, self._values = base, values

  def __getattr__(self, name):
    return self._values[name] if name in self._values else getattr(self._base, name)

  def __contains__(self, name):
    return name in self._values or name in self._base

  def get(self, name, default=None):
    return self._values[name] if name in self._values else self._base.get(name, default)


def injected(make: Callable[..., optax.GradientTransformation],
             optim: ml_collections.ConfigDict, sweep: Sweep) -> optax.GradientTransformation:
  """``make(optim_block)`` with the swept values as ``inject_hyperparams`` hyperparameters: the
  same optimiser, its swept numbers data in its state (``make(optim)`` itself when the sweep
  sets no optimiser value)."""
  if not sweep.optimiser_names:
    return make(optim)
  def factory(learning_rate=None, weight_decay=None, momentum=None):  # OPTIMISER's names:
    swept = {"learning_rate": learning_rate, "weight_decay": weight_decay,  # optax injects
             "momentum": momentum}                                          # named arguments.
    return make(_Overlay(optim, {n: v for n, v in swept.items() if v is not None}))
  return optax.inject_hyperparams(factory)(**{n: float(optim[n]) for n in sweep.optimiser_names})


def model_hparams(config: ml_collections.ConfigDict, sweep: Sweep | None) -> dict:
  """The model state's ``hparams`` collection for the swept model/loss values (the config's
  values; ``fit`` then sets each model's own), or {} when none is swept."""
  if sweep is None or not sweep.model_names:
    return {}
  from playbook.tasks.schema import lookup  # The config's dotted keys; tasks import this module.
  return {HPARAMS: {n: np.float32(lookup(config, sweep.keys[n])) for n in sweep.model_names}}


def per_variant(values: np.ndarray, sweep: Sweep) -> np.ndarray:
  """Per-model values (models,) -> (variants, seeds)."""
  return np.asarray(values).reshape(len(sweep.variants), sweep.seeds)


def mean_std(values) -> dict:
  """{mean, std (ddof=1; 0 for one value), per_seed} of per-seed values."""
  values = np.atleast_1d(np.asarray(values, np.float64))
  return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "per_seed": values.tolist()}


def at_best_epochs(history: list[dict], best_epochs, split: str, metric: str) -> np.ndarray:
  """Per model, ``history[split][metric]`` at that model's own best epoch (1-based)."""
  return np.asarray([np.atleast_1d(history[e - 1][split][metric])[i]
                     for i, e in enumerate(best_epochs)])


def variants(sweep: Sweep, metrics: dict[str, np.ndarray], best_epochs, *, select: str,
             mode: str) -> dict:
  """``results.json``'s view of a sweep: per variant its values and, for every per-model array
  of ``metrics``, the mean ± std over its seeds; the best variant: the best mean of ``select``
  (``mode`` 'max' or 'min'), a validation figure, never the test set's."""
  per = {name: per_variant(values, sweep) for name, values in metrics.items()}
  epochs = per_variant(np.asarray(best_epochs), sweep)
  rows = [{"name": sweep.label(v), "values": {sweep.keys[n]: v[n] for n in sweep.names},
           **{name: mean_std(values[k]) for name, values in per.items()},
           "best_epochs": epochs[k].tolist()} for k, v in enumerate(sweep.variants)]
  sign = 1.0 if mode == "max" else -1.0
  return {"variants": rows, "best_index": int(np.argmax(sign * per[select].mean(axis=1)))}


def stored_model(sweep: Sweep | None, num_seeds: int, workdir: str | Path,
                 seed_index: int | None) -> tuple[int, int]:
  """(models stacked in the run's checkpoints in ``workdir``, the one to restore). A sweep
  stores every variant's seeds, variant-major; by default its best variant's first seed (named
  in the run's ``results.json``), else seed 0."""
  if sweep is None:
    return num_seeds, seed_index or 0
  if seed_index is None:
    best = json.loads(rundir.run_file(workdir, rundir.RESULTS_FILE).read_text())["best_variant"]
    seed_index = [sweep.label(v) for v in sweep.variants].index(best) * sweep.seeds
  return sweep.num_models, seed_index
