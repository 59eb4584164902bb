"""Every runtime against the JAX function it was exported from."""

from __future__ import annotations

import jax
import numpy as np

from playbook.export.exportable import Exportable, Predict


def jax_predict(exportable: Exportable) -> Predict:
  """The reference: ``exportable.fn`` jitted, numpy in and out."""
  fn = jax.jit(exportable.fn)
  return lambda *inputs: tuple(np.asarray(o) for o in fn(*inputs))


def compare(exportable: Exportable, predict: Predict, reference: tuple[np.ndarray, ...]) -> dict:
  """Max abs error of each output on the parity batch, and how often the top-1 class (of the
  first output, the logits) agrees."""
  outputs = predict(*exportable.parity_inputs)
  errors = {name: float(np.max(np.abs(np.asarray(out, np.float64) - ref)))
            for name, out, ref in zip(exportable.outputs, outputs, reference)}
  agree = float(np.mean(np.asarray(outputs[0]).argmax(-1) == reference[0].argmax(-1)))
  return {"max_abs_error": max(errors.values()), "max_abs_error_per_output": errors,
          "top1_agreement": agree, "parity_batch": len(exportable.parity_inputs[0])}
