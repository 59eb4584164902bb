"""Every runtime against the JAX function it was exported from."""

from __future__ import annotations

import jax
import numpy as np

from playbook.export.exportable import Exportable, Predict


def jax_predict(exportable: Exportable) -> Predict:
  """The reference: ``exportable.fn`` jitted, numpy in and out."""
  fn = jax.jit(exportable.fn)
  return lambda *inputs: tuple(np.asarray(o) for o in fn(*inputs))


def float64_reference(exportable: Exportable) -> tuple[np.ndarray, ...] | None:
  """``exportable.fn64`` on the parity batch, in float64; None when the adapter gives none."""
  if exportable.fn64 is None:
    return None
  with jax.enable_x64(True):
    return tuple(np.asarray(o, np.float64) for o in exportable.fn64(*exportable.parity_inputs))


def max_abs_error(outputs, reference) -> float:
  return max(float(np.max(np.abs(np.asarray(o, np.float64) - r)))
             for o, r in zip(outputs, reference))


def compare(exportable: Exportable, predict: Predict, reference: tuple[np.ndarray, ...],
            reference64: tuple[np.ndarray, ...] | None = None) -> dict:
  """Max abs error of each output on the parity batch against JAX (and against float64, when
  given), and how often the top-1 class (of the first output, the logits) agrees with JAX."""
  outputs = predict(*exportable.parity_inputs)
  errors = {name: max_abs_error([out], [ref])
            for name, out, ref in zip(exportable.outputs, outputs, reference)}
  agree = float(np.mean(np.asarray(outputs[0]).argmax(-1) == reference[0].argmax(-1)))
  result = {"max_abs_error": max(errors.values()), "max_abs_error_per_output": errors,
            "top1_agreement": agree, "parity_batch": len(exportable.parity_inputs[0])}
  if reference64 is not None:
    result["max_abs_error_vs_float64"] = max_abs_error(outputs, reference64)
  return result
