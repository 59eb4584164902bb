"""Keras's legacy HDF5 weights, read with h5py: no Keras, no TensorFlow, no code in the file.

Two layouts share one structure. The official application files
(``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``) keep a root attribute ``layer_names`` and
one group per layer whose ``weight_names`` attribute lists its datasets (``block1_conv1_W_1:0``,
``block1_conv1_b_1:0``). A model Keras 3 saves whole to ``.h5`` (``model.save("x.h5")``) has the
same thing under ``model_weights/``, with names like ``block1_conv1/kernel`` that are paths inside
the layer's group. (Keras 3's own ``.weights.h5`` format numbers its variables instead of naming
them, and is not read here.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from playbook.data.paths import DataError

# Keras 1 named a Dense/Conv kernel ``W`` and its bias ``b`` (``block1_conv1_W_1:0``).
_KERAS1_NAMES = {"W": "kernel", "b": "bias"}


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def weight_key(layer: str, weight_name: str) -> str:
  """The short name of one weight: 'kernel' for 'block1_conv1/kernel:0' or 'block1_conv1_W_1:0'."""
  name = weight_name.split("/")[-1].split(":")[0]
  keras1 = re.fullmatch(re.escape(layer) + r"_([A-Za-z]+)(?:_\d+)?", name)
  if keras1:
    name = _KERAS1_NAMES.get(keras1.group(1), keras1.group(1))
  return name


def read_keras_h5(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
  """{layer_name: {"kernel": ..., "bias": ...}} in the file's layer order, layers with weights only.

  Raises ``DataError`` for a file that is not HDF5 or lacks the legacy ``layer_names`` layout.
  """
  import h5py  # Only the importers need it.

  path = Path(path)
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise DataError(f"{path} is not a readable HDF5 file ({e}); replace it with the original "
                    "Keras weight file.") from e
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
      raise DataError(
          f"{path} has no 'layer_names' attribute, so it is not Keras's legacy h5 weight layout "
          "(a Keras 3 '.weights.h5' file is a different format; save with model.save('x.h5') or "
          "use the official application weight file).")
    layers = {}
    for layer in map(_text, root.attrs["layer_names"]):
      group = root[layer]
      weights = {}
      for weight_name in map(_text, group.attrs.get("weight_names", [])):
        key = weight_key(layer, weight_name)
        if key in weights:
          raise DataError(f"{path}: layer {layer} has two weights named {key!r}.")
        weights[key] = np.asarray(group[weight_name][()])
      if weights:
        layers[layer] = weights
  return layers
