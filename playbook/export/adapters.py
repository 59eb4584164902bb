"""The generic pieces a task's ``exporter`` builds its ``Exportable`` from.

Each task (``playbook/tasks/``) turns a run's config + best checkpoint into an ``Exportable`` with
one of these; export itself never imports a task (``launch/export.py`` asks the task registry).

Two shapes of model are provided for:

* ``classifier_exportable``: ``images -> logits`` (for the CIFAR CNNs built with the plain ops,
  ``plain_ops``; flip test-time augmentation, where the model has it, inside). The images are float32 pixels on 0..255, NHWC,
  exactly the uint8 files cast to float: the data set's standardisation is inside the exported
  model, so a client feeds raw pixels. Eval mode: ``train=False`` (BatchNorm uses its running
  statistics from ``model_state``, dropout is off).
* ``step_exportable``: one step of a recurrent model with its state explicit,
  ``step(token, *state) -> (logits, *state)`` (the character LSTM, a ``lax.scan`` over a cell:
  export the cell, not the scan). A client samples by feeding back the state and the sampled
  token; the state is ordinary inputs and outputs (names ``h``, ``c``...), so every format holds
  it. Accuracy is next-token accuracy stepping through the test text with the state carried by
  the runtime under test. The character-LSTM study's adapter restores its cell's params and calls
  this with its text.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook.data.splits import ImageDataset
from playbook.export.exportable import Exportable, Predict, TensorSpec

EVAL_BATCH = 500


def classification_accuracy(predict: Predict, x: np.ndarray, y: np.ndarray,
                            batch_size: int = EVAL_BATCH) -> float:
  correct = sum(int((predict(x[i:i + batch_size])[0].argmax(-1) == y[i:i + batch_size]).sum())
                for i in range(0, len(x), batch_size))
  return correct / len(x)


def classifier_exportable(*, name: str, model, variables: dict, preprocess,
                          data: ImageDataset, parity_batch: int = 256,
                          num_calibration: int = 200, seed: int = 0,
                          eval_batch: int = EVAL_BATCH, description: str = "",
                          export_model=None) -> Exportable:
  """``images (B, H, W, C) float32 on 0..255 -> (logits (B, classes),)`` of a linen classifier
  called as ``model.apply(variables, x, train=False)``. ``eval_batch``: test images per call
  when measuring accuracy (smaller for large images). ``export_model``: the same network from
  other ops, with the same variables, for the formats to hold (``Exportable.export_fn``)."""
  variables = jax.tree.map(jnp.asarray, variables)

  def fn(images, model=model):
    return (model.apply(variables, preprocess(images), train=False),)

  def fn64(images):  # Float64 from the standardised pixels on (every runtime standardises in f32).
    variables64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    return (model.apply(variables64, preprocess(images).astype(jnp.float64), train=False),)

  test_x = data.test.x.astype(np.float32)
  train_x = data.train.x
  calibration = np.random.default_rng(seed).choice(len(train_x), min(num_calibration,
                                                                     len(train_x)), replace=False)

  def representative():
    for i in calibration:  # One training image per calibration step, as the converter expects.
      yield [train_x[i:i + 1].astype(np.float32)]

  return Exportable(
      name=name, fn=fn, inputs=(TensorSpec("images", (None, *test_x.shape[1:])),),
      outputs=("logits",), parity_inputs=(test_x[:parity_batch],),
      accuracy=lambda predict: classification_accuracy(predict, test_x, data.test.y,
                                                       eval_batch),
      num_test=len(test_x), representative=representative, description=description, fn64=fn64,
      export_fn=None if export_model is None else functools.partial(fn, model=export_model))


def plain_ops(model_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model config with ``fast_conv`` off: the CIFAR CNNs' fast path (im2col-matmul
  convolutions with a custom VJP, pooling as reshape + max) computes the same function to float
  rounding with the same parameters, so the export holds the plain ops every runtime has kernels
  for (CONV_2D and MAX_POOL_2D, not patch concatenations, a 6-D reshape and a reduction)."""
  model_config = ml_collections.ConfigDict(model_config.to_dict())
  if "fast_conv" in model_config:
    model_config.fast_conv = False
  return model_config


def next_token_accuracy(predict: Predict, tokens: np.ndarray,
                        initial_state: Sequence[np.ndarray]) -> float:
  """Steps ``predict(token, *state) -> (logits, *state)`` through ``tokens`` (B, T), the state
  carried by the runtime itself, and scores the prediction of each next token."""
  state, correct = tuple(initial_state), 0
  for t in range(tokens.shape[1] - 1):
    logits, *state = predict(tokens[:, t], *state)
    correct += int((logits.argmax(-1) == tokens[:, t + 1]).sum())
  return correct / (tokens.shape[0] * (tokens.shape[1] - 1))


def step_exportable(*, name: str, step: Callable, state_specs: Sequence[TensorSpec],
                    test_tokens: np.ndarray, warmup: int = 16, step64: Callable | None = None,
                    description: str = "") -> Exportable:
  """One step of a recurrent model: ``step(token (B,) int32, *state) -> (logits, *state)`` with
  the params closed over. ``state_specs`` name and shape the state (e.g. ``h``, ``c``: (None, H),
  zeros at the start of a sequence). ``test_tokens`` (B, T) are real test sequences: the parity
  batch is step ``warmup`` of them, reached from the zero state in JAX (a state worth checking);
  accuracy is ``next_token_accuracy`` over all of them. No representative data set: full int8
  of integer token inputs and a carried float state is not offered. ``step64``, optional: the
  same step in float64 (``Exportable.fn64``)."""
  test_tokens = np.asarray(test_tokens, np.int32)
  zeros = tuple(np.zeros((len(test_tokens), *s.shape[1:]), s.dtype) for s in state_specs)
  jitted = jax.jit(step)
  state = zeros
  for t in range(warmup):
    _, *state = jitted(test_tokens[:, t], *state)
  parity = (test_tokens[:, warmup], *(np.asarray(s) for s in state))
  return Exportable(
      name=name, fn=lambda token, *s: tuple(step(token, *s)),
      inputs=(TensorSpec("token", (None,), np.dtype(np.int32)), *state_specs),
      outputs=("logits", *(s.name + "_out" for s in state_specs)), parity_inputs=parity,
      accuracy=lambda predict: next_token_accuracy(predict, test_tokens, zeros),
      num_test=test_tokens.size - len(test_tokens), description=description,
      fn64=None if step64 is None else lambda token, *s: tuple(step64(token, *s)))
