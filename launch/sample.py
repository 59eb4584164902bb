"""Writes text with a trained character-language-model run: its config, vocabulary and best
checkpoint.

    python -m launch.sample --workdir=runs/char_lstm --prime="Anna" --length=1000 \
        --temperature=0.8 --top_k=5 --seed=0 [--output=FILE]

The same seed gives the same text. A prime with characters outside the run's vocabulary is
refused with the characters named.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

from playbook import tasks
from playbook.data import DataError
from playbook.data.text import VocabError
from playbook.run.rundir import RunDirError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a char_lstm run.")
_PRIME = flags.DEFINE_string("prime", "Anna", "Text the sample starts from.")
_LENGTH = flags.DEFINE_integer("length", 1000, "Characters to generate after the prime.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature (> 0).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Draw among the k likeliest characters (0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the draws.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the text to this file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    task, _ = tasks.for_workdir(_WORKDIR.value)
    if not hasattr(task, "sample"):
      raise RunDirError(f"{_WORKDIR.value} holds a run of task {task.__name__.split('.')[-1]!r}, "
                        "which does not write text; pass the --workdir of a char_lstm run.")
    text = task.sample(Path(_WORKDIR.value), prime=_PRIME.value, length=_LENGTH.value,
                       temperature=_TEMPERATURE.value, top_k=_TOP_K.value, seed=_SEED.value)
  except (DataError, VocabError, RunDirError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(text)
  if _OUTPUT.value:
    Path(_OUTPUT.value).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
  app.run(main)
