"""JAX -> ONNX through ``jax2onnx`` (tf2onnx cannot read the XlaCallModule that jax2tf writes),
checked with ``onnx.checker`` and run with onnxruntime.

jax2onnx annotates some intermediate values with NHWC shapes where its graph holds NCHW (around
convolutions); the graph itself is right, but ONNX's strict check rejects the wrong hints. The
check therefore drops the intermediate ``value_info`` hints and lets ONNX infer every shape again
from the graph, strictly: a graph that does not type-check still fails. The file saved is that
hint-free graph (onnxruntime infers the same shapes, without warning about the wrong hints).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from playbook.export.exportable import ExportError, Exportable, Predict

OPSET = 21


def check(model):
  """``model`` without its intermediate shape hints, checked strictly."""
  import onnx
  onnx.checker.check_model(model)
  bare = onnx.ModelProto()
  bare.CopyFrom(model)
  del bare.graph.value_info[:]
  onnx.checker.check_model(bare, full_check=True)
  return bare


def export(exportable: Exportable, path: str | Path) -> Path:
  import jax
  import jax2onnx
  import onnx

  scope = jax.export.SymbolicScope()  # One scope: every input's "B" is the same batch size.
  inputs = [jax.ShapeDtypeStruct(
      jax.export.symbolic_shape(",".join(map(str, s.symbolic("B"))), scope=scope), s.dtype)
      for s in exportable.inputs]
  try:
    model = jax2onnx.to_onnx(exportable.portable_fn, inputs, model_name=exportable.name,
                             opset=OPSET, input_names=[s.name for s in exportable.inputs],
                             output_names=list(exportable.outputs))
    model = check(model)
  except Exception as e:  # Unsupported primitives, failed checks: jax2onnx raises many types.
    raise ExportError(f"ONNX cannot hold {exportable.name}: {type(e).__name__}: {e}") from e
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  onnx.save_model(model, str(tmp))
  os.replace(tmp, path)
  return path


def load(path: str | Path, exportable: Exportable, num_threads: int = 0) -> Predict:
  import onnxruntime as ort
  options = ort.SessionOptions()
  options.intra_op_num_threads = num_threads  # 0: onnxruntime's default.
  session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
  names = [s.name for s in exportable.inputs]

  def predict(*inputs):
    return tuple(session.run(list(exportable.outputs),
                             {n: np.asarray(x) for n, x in zip(names, inputs)}))
  return predict
