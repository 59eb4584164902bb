"""One run directory -> ``DIR/export/``: every format asked for, each checked against JAX."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from playbook.export import onnx, parity, report, saved_model, tflite
from playbook.export.exportable import ExportError, Exportable

FORMATS = ("saved_model", "tflite", "onnx")
# Every export's file name under DIR/export/, by report key.
FILES = {"saved_model": "saved_model", "tflite_float32": "model_float32.tflite",
         "tflite_dynamic": "model_dynamic.tflite", "tflite_int8": "model_int8.tflite",
         "onnx": "model.onnx"}
TFLITE_KEY = {"none": "tflite_float32", "dynamic": "tflite_dynamic", "int8": "tflite_int8"}


def loader(key: str):
  """``load(path, exportable, num_threads=None) -> predict`` of one export's runtime."""
  if key == "saved_model":
    return lambda path, exportable, num_threads=None: saved_model.load(path, exportable)
  if key.startswith("tflite"):
    return tflite.load
  return lambda path, exportable, num_threads=None: onnx.load(path, exportable, num_threads or 0)


def check_choices(formats, quantize) -> None:
  for name, given, known in (("format", formats, FORMATS), ("quantize", quantize,
                                                             tflite.QUANTIZATIONS)):
    unknown = sorted(set(given) - set(known))
    if unknown:
      raise ExportError(f"Unknown {name} {unknown}; known: {', '.join(known)}.")


def refuse_what_cannot_be_held(exportable: Exportable, formats, quantize) -> None:
  """Before any work: an export the model's adapter cannot provide for."""
  if "tflite" in formats and "int8" in quantize and exportable.representative is None:
    raise ExportError(f"Full-int8 TFLite needs a representative data set to calibrate the "
                      f"activations, and the {exportable.name} adapter gives none: use "
                      "--quantize=none,dynamic for it.")


def export_exportable(exportable: Exportable, out_dir: str | Path, *,
                      formats=FORMATS, quantize=("none",), log=print) -> dict:
  """Writes each format into ``out_dir``, checks it against JAX, writes ``report.json``."""
  check_choices(formats, quantize)
  refuse_what_cannot_be_held(exportable, formats, quantize)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  reference_predict = parity.jax_predict(exportable)
  reference = reference_predict(*exportable.parity_inputs)
  reference64 = parity.float64_reference(exportable)
  logit_scale = float(np.max(np.abs(reference[0])))  # The scale of the errors.
  # JAX's own float32 rounding: the scale of any float32 runtime's error.
  jax_error64 = None if reference64 is None else parity.max_abs_error(reference, reference64)
  log(f"{exportable.name}: JAX accuracy on {exportable.num_test} test examples ...")
  jax_accuracy = exportable.accuracy(reference_predict)

  written = {}
  if "saved_model" in formats:
    written["saved_model"] = saved_model.export(exportable, out_dir / FILES["saved_model"])
  if "tflite" in formats:  # Converted from a SavedModel of fixed batch (see playbook/export/tflite).
    fixed = out_dir / f"saved_model_batch{tflite.BATCH}.tmp"
    try:
      saved_model.export(exportable, fixed, batch_size=tflite.BATCH, fn=exportable.portable_fn)
      for q in quantize:
        key = TFLITE_KEY[q]
        written[key] = tflite.export(exportable, fixed, out_dir / FILES[key], q)
    finally:
      shutil.rmtree(fixed, ignore_errors=True)
  if "onnx" in formats:
    written["onnx"] = onnx.export(exportable, out_dir / FILES["onnx"])

  entries = {}
  for key, path in written.items():
    start = time.perf_counter()
    predict = loader(key)(path, exportable)
    entry = {"file": path.name, "size_bytes": report.size_bytes(path),
             **parity.compare(exportable, predict, reference, reference64),
             "accuracy": exportable.accuracy(predict), "jax_accuracy": jax_accuracy}
    entry["max_abs_error_relative"] = entry["max_abs_error"] / logit_scale
    if jax_error64:  # The error against JAX in units of JAX's own float32 error.
      entry["max_abs_error_over_jax_float32_error"] = entry["max_abs_error"] / jax_error64
    entries[key] = report.judge(entry, quantized=key in ("tflite_dynamic", "tflite_int8"))
    log(f"  {key}: max abs error {entry['max_abs_error']:.2e}, accuracy "
        f"{100 * entry['accuracy']:.2f} % (JAX {100 * jax_accuracy:.2f} %) "
        f"[{time.perf_counter() - start:.0f} s]")
  result = {"model": exportable.name, "description": exportable.description,
            "inputs": {s.name: {"shape": ["batch" if d is None else d for d in s.shape],
                                "dtype": str(s.dtype)} for s in exportable.inputs},
            "outputs": list(exportable.outputs), "num_test": exportable.num_test,
            "jax_accuracy": jax_accuracy, "formats": entries,
            "max_abs_logit": logit_scale, "jax_max_abs_error_vs_float64": jax_error64,
            "all_bars_met": all(e["passes"] for e in entries.values())}
  report.write(out_dir / "report.json", result)
  return result


def export_run(workdir: str | Path, exportable: Exportable, *, formats=FORMATS,
               quantize=("none",), log=print) -> dict:
  """A run's model (``tasks.exportable(DIR)``: its config and best checkpoint) -> ``DIR/export/``
  and its report."""
  return export_exportable(exportable, Path(workdir) / "export", formats=formats,
                           quantize=quantize, log=log)
