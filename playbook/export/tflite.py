"""SavedModel -> TFLite, run with LiteRT (``ai_edge_litert``, not the deprecated tf.lite one).

Three variants (``QUANTIZATIONS``): ``none`` (float32), ``dynamic`` (int8 weights, float
activations) and ``int8`` (weights and activations int8, calibrated on the exportable's
representative training images; the model keeps float32 inputs and outputs, so a client calls
every variant the same way).

**A fixed batch of one** (``BATCH``). The converter is given a SavedModel traced at batch 1, not
the polymorphic one: with a symbolic batch, every broadcast of a constant (BatchNorm's
per-channel statistics, an activation's bounds, a bias) becomes a runtime ``BROADCAST_TO`` of
the whole activation, and nothing folds into the convolutions. EfficientNet-Lite0 came out with
465 of them among 1,781 ops, took 0.7-1.8 s an image in LiteRT and ran out of 24 GB at batch 32;
with fixed shapes the converter folds BatchNorm and ReLU6 into ``CONV_2D``/``DEPTHWISE_CONV_2D``
(65 ops, about 23 ms an image; it also keeps full int8 accurate). A fixed-shape model is what
an edge runtime runs; ``load``'s predict takes any batch by calling it once per example.
(Resizing the input would not do: a flatten's ``RESHAPE`` keeps the traced batch.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from playbook.export.exportable import ExportError, Exportable, Predict
from playbook.export.tf_cpu import tensorflow

QUANTIZATIONS = ("none", "dynamic", "int8")
BATCH = 1  # The batch size every .tflite is traced at (see above).


def export(exportable: Exportable, saved_model_dir: str | Path, path: str | Path,
           quantize: str = "none") -> Path:
  """``saved_model_dir``: the exportable traced at batch ``BATCH`` (``saved_model.export(...,
  batch_size=BATCH)``)."""
  if quantize not in QUANTIZATIONS:
    raise ExportError(f"Unknown TFLite quantization {quantize!r}; known: {QUANTIZATIONS}.")
  if quantize == "int8" and exportable.representative is None:
    raise ExportError(f"Full-int8 TFLite of {exportable.name} needs a representative data set.")
  tf = tensorflow()
  converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "int8":
    converter.representative_dataset = exportable.representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  try:
    flatbuffer = converter.convert()
  except Exception as e:  # The converter raises ConverterError and friends.
    raise ExportError(f"TFLite ({quantize}) cannot hold {exportable.name}: the converter failed "
                      f"({type(e).__name__}: {e}).") from e
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(flatbuffer)
  os.replace(tmp, path)
  return path


def load(path: str | Path, exportable: Exportable, num_threads: int | None = None) -> Predict:
  from ai_edge_litert.interpreter import Interpreter
  runner = Interpreter(model_path=str(path), num_threads=num_threads).get_signature_runner(
      "serving_default")
  names = [s.name for s in exportable.inputs]

  def predict(*inputs):  # One call per BATCH examples (the model's fixed batch).
    calls = [runner(**{n: x[i:i + BATCH] for n, x in zip(names, inputs)})
             for i in range(0, len(inputs[0]), BATCH)]
    return tuple(np.concatenate([out[name] for out in calls]) for name in exportable.outputs)
  return predict
