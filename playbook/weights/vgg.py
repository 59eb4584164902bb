"""ImageNet VGG weights from Keras's legacy h5 files (or torchvision-layout ``.pth`` state dicts)
into ``playbook.models.vgg.VGG`` params.

The layer names are the same on both sides, so the import is a direct mapping with shape checks.
Verification policy: a file is used only when its tensor hash (``hashing.tensor_sha256`` in
Keras order) equals a reference hash. The reference is known for the VGG16 convolutional base
(``../shared/data/weights/SOURCE.md``); for VGG19 and the VGG16 top none is recorded here, so
``load_vgg`` refuses those unless the caller passes ``expected_sha256=`` (from a copy they trust)
or ``verify=False`` explicitly, which logs that the weights are unverified.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from playbook.data.paths import DataError
from playbook.models import vgg as vgg_model
from playbook.weights.hashing import tensor_sha256
from playbook.weights.keras_h5 import read_keras_h5
from playbook.weights.locate import locate, verify_tensors

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg{depth}/{file}"
# Reference tensor hashes, keyed (depth, include_top).
TENSOR_SHA256 = {
    (16, False): "d9a27cc1fc7f975ef8cff49180e794ccd7c4bc868ebb49740803b3bbaa8dbefd",
}


def keras_filename(depth: int, include_top: bool) -> str:
  return f"vgg{depth}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def weighted_layers(depth: int, include_top: bool) -> list[str]:
  return vgg_model.conv_layer_names(depth) + (list(vgg_model.TOP_LAYERS) if include_top else [])


def tensors(params: dict, depth: int, include_top: bool = False) -> list[np.ndarray]:
  """Kernel then bias of each weighted layer, in Keras order: what the tensor hash covers."""
  return [np.asarray(params[name][key]) for name in weighted_layers(depth, include_top)
          for key in ("kernel", "bias")]


def params_from_layers(layers: dict, depth: int, include_top: bool = False, *,
                       source: str = "weights") -> dict:
  """{layer: {"kernel", "bias"}} (from ``read_keras_h5``) -> VGG params, shapes checked."""
  expected = weighted_layers(depth, include_top)
  missing = [n for n in expected if n not in layers]
  if missing:
    raise DataError(f"{source} lacks VGG{depth} layer(s) {missing}; has {list(layers)}. "
                    f"Use the VGG{depth} file{' with the top' if include_top else ''}.")
  params = {}
  for name in expected:
    if set(layers[name]) != {"kernel", "bias"}:
      raise DataError(f"{source}: layer {name} has weights {list(layers[name])}, expected "
                      "kernel and bias.")
    params[name] = {k: np.asarray(layers[name][k], np.float32) for k in ("kernel", "bias")}
  _check_shapes(params, depth, include_top, source)
  return params


def params_from_torch(state_dict: dict, depth: int, include_top: bool = False, *,
                      source: str = "state dict") -> dict:
  """A torchvision-layout VGG state dict (``features.N.weight`` OIHW, ``classifier.{0,3,6}``)
  -> VGG params. The n-th conv of ``features`` is the n-th Keras conv layer."""
  convs = sorted((int(m.group(1)) for k in state_dict
                  if (m := re.fullmatch(r"features\.(\d+)\.weight", k))))
  names = vgg_model.conv_layer_names(depth)
  if len(convs) != len(names):
    raise DataError(f"{source} has {len(convs)} conv layers under features.*, VGG{depth} has "
                    f"{len(names)}.")
  layers = {name: {"kernel": np.transpose(state_dict[f"features.{i}.weight"], (2, 3, 1, 0)),
                   "bias": state_dict[f"features.{i}.bias"]} for name, i in zip(names, convs)}
  if include_top:
    # torchvision flattens NCHW (after a 7x7 adaptive pool); the module here flattens NHWC.
    fc1 = np.asarray(state_dict["classifier.0.weight"])
    layers["fc1"] = {"kernel": nchw_flatten_to_nhwc(fc1.T, channels=512, height=7, width=7),
                     "bias": state_dict["classifier.0.bias"]}
    for name, index in [("fc2", 3), ("predictions", 6)]:
      layers[name] = {"kernel": np.asarray(state_dict[f"classifier.{index}.weight"]).T,
                      "bias": state_dict[f"classifier.{index}.bias"]}
  return params_from_layers(layers, depth, include_top, source=source)


def nchw_flatten_to_nhwc(kernel: np.ndarray, *, channels: int, height: int,
                         width: int) -> np.ndarray:
  """Reorders the input rows of a dense kernel (in, out) from an NCHW flatten to an NHWC one."""
  out = kernel.shape[1]
  return (kernel.reshape(channels, height, width, out).transpose(1, 2, 0, 3)
          .reshape(channels * height * width, out))


def _check_shapes(params: dict, depth: int, include_top: bool, source: str) -> None:
  c_in = 3
  for name, width in zip(vgg_model.conv_layer_names(depth), _conv_widths(depth)):
    _expect(params, name, (3, 3, c_in, width), source)
    c_in = width
  if include_top:
    _expect(params, "fc1", (7 * 7 * 512, 4096), source)
    _expect(params, "fc2", (4096, 4096), source)


def _conv_widths(depth: int) -> list[int]:
  return [w for n, w in zip(vgg_model.BLOCK_DEPTHS[depth], vgg_model.BLOCK_WIDTHS)
          for _ in range(n)]


def _expect(params, name, kernel_shape, source):
  kernel, bias = params[name]["kernel"], params[name]["bias"]
  if kernel.shape != kernel_shape or bias.shape != (kernel_shape[-1],):
    raise DataError(f"{source}: {name} has kernel {kernel.shape} and bias {bias.shape}, expected "
                    f"{kernel_shape} and ({kernel_shape[-1]},).")


def load_vgg(depth: int = 16, include_top: bool = False, *, expected_sha256: str | None = None,
             verify: bool = True, path: str | Path | None = None, data_dir=None) -> dict:
  """Locates, reads and verifies the ImageNet VGG weights; returns the ``params`` collection.

  Use as ``VGG(depth).apply({"params": load_vgg(depth)}, vgg.preprocess(rgb))``. ``path`` skips
  the lookup. See the module docstring for the verification policy.
  """
  filename = keras_filename(depth, include_top)
  expected = expected_sha256 or TENSOR_SHA256.get((depth, include_top))
  if verify and expected is None:
    raise DataError(
        f"No reference tensor hash is recorded for {filename}, so it cannot be verified. Pass "
        "expected_sha256= (the playbook.weights.tensor_sha256 of a copy you trust) or "
        "verify=False to use it unverified.")
  if path is None:
    path = locate(filename, data_dir=data_dir, where_to_get=(
        f"{KERAS_URL.format(depth=depth, file=filename)} (the file "
        f"keras.applications.VGG{depth}(weights='imagenet') downloads)"))
  path = Path(path)
  params = params_from_layers(read_keras_h5(path), depth, include_top, source=str(path))
  if verify:
    verify_tensors(path, tensor_sha256(tensors(params, depth, include_top)), expected)
  else:
    logging.warning("Using %s without verifying its tensors (verify=False).", path)
  return params
