"""JAX -> TF SavedModel through ``jax2tf``: the batch dimension polymorphic, no gradients.

The StableHLO of ``fn`` (params inlined as constants) is wrapped in one ``XlaCallModule`` op, so
the SavedModel computes what XLA computes for JAX. Signature ``serving_default``: inputs by the
exportable's input names, outputs a dict by its output names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from playbook.export.exportable import ExportError, Exportable, Predict
from playbook.export.tf_cpu import tensorflow


def export(exportable: Exportable, directory: str | Path, batch_size: int | None = None,
           fn=None) -> Path:
  """``batch_size``: None, the batch dimension polymorphic; a number, fixed to it. ``fn``: the
  function to hold, ``exportable.fn`` by default. (What the TFLite converter is given: fixed
  batch, ``portable_fn``; see ``playbook/export/tflite.py``.)"""
  tf = tensorflow()
  from jax.experimental import jax2tf

  directory = Path(directory)
  polymorphic = None if batch_size else [
      "(" + ", ".join(map(str, s.symbolic())) + ")" for s in exportable.inputs]
  converted = jax2tf.convert(fn or exportable.fn, with_gradient=False,
                             polymorphic_shapes=polymorphic)
  signature = [tf.TensorSpec((batch_size, *s.shape[1:]), tf.as_dtype(s.dtype), name=s.name)
               for s in exportable.inputs]

  @tf.function(autograph=False, input_signature=signature)
  def serve(*inputs):
    return dict(zip(exportable.outputs, converted(*inputs)))

  module = tf.Module()
  module.serve = serve
  tmp = directory.with_name(directory.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
  except Exception as e:  # jax2tf raises many types for "this function does not convert".
    shutil.rmtree(tmp, ignore_errors=True)
    raise ExportError(f"SavedModel cannot hold {exportable.name}: jax2tf failed "
                      f"({type(e).__name__}: {e}).") from e
  shutil.rmtree(directory, ignore_errors=True)
  tmp.rename(directory)  # Whole or absent: a crash leaves only the .tmp behind.
  return directory


def load(directory: str | Path, exportable: Exportable) -> Predict:
  tf = tensorflow()
  serve = tf.saved_model.load(str(directory)).signatures["serving_default"]
  names = [s.name for s in exportable.inputs]

  def predict(*inputs):
    out = serve(**{n: tf.constant(x) for n, x in zip(names, inputs)})
    return tuple(np.asarray(out[name]) for name in exportable.outputs)
  return predict
