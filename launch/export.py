"""Exports a trained run: ``python -m launch.export --workdir=DIR --formats=saved_model,tflite,onnx
[--quantize=none,dynamic,int8]``.

Reads ``DIR/config.json`` and ``DIR/checkpoints/best`` (never a live training process), writes
``DIR/export/`` (saved_model/, model_*.tflite, model.onnx) and ``DIR/export/report.json``: per
format its file, size, max abs logit error against JAX on a batch of real test inputs, and its
accuracy on the full test set beside JAX's. TFLite is converted from a SavedModel of the same
function traced at a fixed batch of one (``playbook/export/tflite.py``), not kept. Exits 1 on
bad input, 2 when an export misses its bar.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter, not its errors.

from absl import app, flags, logging  # noqa: E402

from playbook import tasks  # noqa: E402
from playbook.data import DataError  # noqa: E402
from playbook.export import pipeline, report, tflite  # noqa: E402
from playbook.export.exportable import ExportError  # noqa: E402
from playbook.run.rundir import RunDirError  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a trained run.")
_FORMATS = flags.DEFINE_list("formats", list(pipeline.FORMATS),
                             f"Formats to write, from {','.join(pipeline.FORMATS)}.")
_QUANTIZE = flags.DEFINE_list("quantize", ["none"],
                              "TFLite variants, from none (float32), dynamic (dynamic-range "
                              "int8 weights), int8 (full int8, calibrated on training images).")
_SEED_INDEX = flags.DEFINE_integer("seed_index", None,
                                   "Which model of a vmapped run to export (default: seed 0; "
                                   "in a sweep, its best variant's first seed).")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Data root for the test and calibration data "
                                "(default: the run's config, then $PLAYBOOK_DATA_DIR).")
flags.mark_flags_as_required(["workdir"])


def _validator(known, what):
  def valid(values):
    unknown = [v for v in values if v not in known]
    if unknown or not values:
      raise flags.ValidationError(f"unknown {what} {unknown or values}; known: {','.join(known)}")
    return True
  return valid


flags.register_validator("formats", _validator(pipeline.FORMATS, "format"))
flags.register_validator("quantize", _validator(tflite.QUANTIZATIONS, "quantization"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    exportable = tasks.exportable(_WORKDIR.value, seed_index=_SEED_INDEX.value,
                                  data_dir=_DATA_DIR.value)
    result = pipeline.export_run(_WORKDIR.value, exportable, formats=_FORMATS.value,
                                 quantize=_QUANTIZE.value)
  except (ExportError, DataError, RunDirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(report.table(result))
  print(f"report: {os.path.join(_WORKDIR.value, 'export', 'report.json')}")
  if not result["all_bars_met"]:
    print("error: an export missed its bar (see 'bar met' above).", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
