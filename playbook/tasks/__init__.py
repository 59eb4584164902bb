"""Tasks: one module per kind of study, found by the name in ``config.task``.

Every task module has ``train(config, workdir) -> results``, and where it makes sense
``predictor(config, workdir) -> Predictor``, ``exporter(config, workdir, *, seed_index, data_dir)
-> Exportable``, ``sample(...)`` or ``stylize(...)``. Entry points never import a study or a task
by path: they ask ``get(config.task)`` (or ``for_workdir(DIR)``, from the run's stored config).

    classify   image classifiers (MLPs, CNNs, the fast CIFAR net), autodiff   tasks/classify.py
    scratch    the same studies with hand-derived gradients                    tasks/scratch.py
    transfer   an ImageNet backbone and a new head (frozen or fine-tuned)      tasks/transfer.py
    char_lm    a character-level language model over any UTF-8 text          tasks/char_lm.py
    stylize    Gatys style transfer, optax over the pixels                    tasks/stylize.py
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Callable

import ml_collections
import numpy as np


class ConfigError(ValueError):
  """A config argument or value is not one the study or task accepts; the message says which."""


def run_config(task: str, study: str, *, trains_seeds: bool = True) -> ml_collections.ConfigDict:
  """The keys every run's config starts with: its task and study, the seed, what it shows, and
  the compute precision. ``trains_seeds``: a task that trains seeds side by side (``num_seeds``)
  and writes TensorBoard summaries (every task but style transfer)."""
  config = ml_collections.ConfigDict()
  config.task = task
  config.study = study
  config.seed = 0
  if trains_seeds:
    config.num_seeds = 1  # >1 trains that many seeds at once with jax.vmap.
  config.progress = True
  if trains_seeds:
    # False: metrics.jsonl only, without the TensorBoard writer (which imports TensorFlow).
    config.tensorboard = True
  # Compute dtype: 'float32' or 'bfloat16' (parameters, optimiser state, losses, softmax and
  # normalisation statistics stay float32).
  config.precision = "float32"
  return config


@dataclasses.dataclass
class Predictor:
  """A trained classifier for images from outside: ``predict(uint8 (B, *input_shape)) -> class
  probabilities``; ``resize`` says how an image file is fitted to ``input_shape`` ('crop': shorter
  side scaled then centre-cropped; 'squash': the whole image scaled)."""
  predict: Callable[[np.ndarray], np.ndarray]
  class_names: list[str]
  input_shape: tuple[int, int, int]
  resize: str = "crop"


def _classify():
  from playbook.tasks import classify
  return classify


def _scratch():
  from playbook.tasks import scratch
  return scratch


def _transfer():
  from playbook.tasks import transfer
  return transfer


def _char_lm():
  from playbook.tasks import char_lm
  return char_lm


def _stylize():
  from playbook.tasks import stylize
  return stylize


# Imported on first use: a task's dependencies (TensorFlow for export, the weight readers) load
# only when a run of that task asks.
REGISTRY: dict[str, Callable[[], types.ModuleType]] = {
    "classify": _classify, "scratch": _scratch, "transfer": _transfer, "char_lm": _char_lm,
    "stylize": _stylize,
}


def get(name: str) -> types.ModuleType:
  """The task module registered as ``name``."""
  if name not in REGISTRY:
    raise ConfigError(f"config.task={name!r} is not a task; known: {', '.join(sorted(REGISTRY))}.")
  return REGISTRY[name]()


def for_workdir(workdir: str | Path) -> tuple[types.ModuleType, ml_collections.ConfigDict]:
  """(task module, stored config) of the run in ``workdir``."""
  from playbook.run import rundir
  config = rundir.read_config(workdir)
  if "task" not in config:
    raise rundir.RunDirError(f"{workdir} holds a run made before configs named their task; "
                             "train it again with the current code.")
  return get(config.task), config


def config_arg(arg: str, *valid: str) -> str:
  """The argument after ``experiments/<study>.py:``, checked: '' or one of ``valid``."""
  if arg and arg not in valid:
    choices = ", ".join(repr(v) for v in ("", *valid))
    raise ConfigError(f"unknown config argument {arg!r}; this study accepts {choices} "
                      f"(e.g. --config=experiments/<study>.py:{valid[0] if valid else ''}).")
  return arg


def exportable(workdir: str | Path, *, seed_index: int | None = None,
               data_dir: str | None = None):
  """The model of the run in ``workdir`` (its config and best checkpoint) as an ``Exportable``,
  built by its task's ``exporter``; ``seed_index`` (default: the task's choice, seed 0 or a
  sweep's best variant) picks one model of a vmapped run."""
  from playbook.run import rundir
  task, config = for_workdir(workdir)
  if not hasattr(task, "exporter"):
    raise rundir.RunDirError(f"{workdir} holds a run of task {config.task!r}, which has nothing "
                             "to export.")
  rundir.best_checkpoint_step(workdir)  # Fail before any data is read.
  chosen = {} if seed_index is None else {"seed_index": seed_index}
  return task.exporter(config, workdir, data_dir=data_dir, **chosen)
