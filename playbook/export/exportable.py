"""What an exporter consumes: a pure inference function and the real data to check it on.

Every model family (MLP and CNN classifiers, the character LSTM's one step, transfer learning)
reduces to this one shape, so each format's exporter and the parity check are written once.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

import numpy as np

# predict(*inputs) -> outputs: one batch through a runtime (JAX, TF, LiteRT, onnxruntime), numpy
# in and out, outputs in ``Exportable.outputs`` order.
Predict = Callable[..., tuple[np.ndarray, ...]]


class ExportError(RuntimeError):
  """A run cannot be exported as asked; the message names what is missing and how to fix it."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """One input: its name in every format, its shape with ``None`` for the batch dimension (the
  first, and the only polymorphic one), its dtype."""
  name: str
  shape: tuple[int | None, ...]
  dtype: np.dtype = np.dtype(np.float32)

  def __post_init__(self):
    if not self.shape or self.shape[0] is not None or None in self.shape[1:]:
      raise ValueError(f"Input {self.name!r}: shape {self.shape} must be (None, fixed dims...): "
                       "only the leading batch dimension is polymorphic.")

  def symbolic(self, batch: str = "b") -> tuple[int | str, ...]:
    return (batch, *self.shape[1:])


@dataclasses.dataclass(frozen=True)
class Exportable:
  """A trained model, ready to export.

  fn: ``fn(*inputs) -> tuple of outputs``, a pure JAX function with the parameters closed over,
    in eval mode (BatchNorm on its running statistics, dropout off).
  inputs / outputs: the signature every format carries (input specs; output names).
  parity_inputs: one batch of real test inputs: the float32 exports must match ``fn`` on it.
  accuracy: ``accuracy(predict) -> float`` on the full test set through any runtime's predict.
  representative: yields calibration batches (lists of arrays in ``inputs`` order) drawn from the
    training data, for full-int8 TFLite; None when the family has none (then int8 is refused).
  fn64: optional, ``fn`` computed in float64 (run under ``jax.enable_x64``): the truth every
    float32 runtime, JAX's included, rounds away from. It tells a runtime that differs from JAX
    by float32 rounding (both equally far from float64) from one that computes something else.
  export_fn: optional, ``fn`` built from other ops for the runtimes with kernels of their own,
    TFLite and ONNX (EfficientNet-Lite's depthwise convolutions: a shifted sum in ``fn``, fast
    on XLA's CPU, and grouped convolutions here, which they run as depthwise kernels). The
    SavedModel, which XLA runs, holds ``fn``. Parity and accuracy compare every runtime with
    ``fn``, the model as trained.
  """
  name: str
  fn: Callable[..., tuple]
  inputs: tuple[TensorSpec, ...]
  outputs: tuple[str, ...]
  parity_inputs: tuple[np.ndarray, ...]
  accuracy: Callable[[Predict], float]
  num_test: int
  representative: Callable[[], Iterator[Sequence[np.ndarray]]] | None = None
  description: str = ""
  fn64: Callable[..., tuple] | None = None
  export_fn: Callable[..., tuple] | None = None

  @property
  def portable_fn(self) -> Callable[..., tuple]:
    """What TFLite and ONNX hold: ``export_fn``, or else ``fn``."""
    return self.export_fn or self.fn

  def __post_init__(self):
    if len(self.parity_inputs) != len(self.inputs):
      raise ValueError(f"{self.name}: {len(self.parity_inputs)} parity inputs for "
                       f"{len(self.inputs)} input specs.")
