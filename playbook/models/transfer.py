"""Transfer learning from a pretrained backbone: the backbones, a new head, cached features.

``frozen`` mode computes the backbone's features once (cached under the workdir, resumable in
chunks) and trains only a head on them; ``finetune`` mode trains ``TransferNet`` end to end with
the lower blocks frozen (``playbook.train.freeze``) and BatchNorm statistics fixed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from playbook.data.images import image_batches
from playbook.models import efficientnet_lite, vgg
from playbook.models.dropout import Dropout
from playbook.train.progress import progress_bar
from playbook.weights import load_efficientnet_lite0, load_vgg


@dataclasses.dataclass(frozen=True)
class Backbone:
  name: str
  image_size: int
  # (frozen_bn, export, dtype) -> module(images, train) -> feature vectors (float32). export: the
  # same function and parameters from the ops export formats have kernels for (where training
  # uses faster ones); dtype: the compute dtype (models/precision.py), float32 by default.
  make: Callable[..., nn.Module]
  load: Callable[[], dict]           # -> pretrained {"params", ["batch_stats"]}.
  preprocess: Callable[[jax.Array], jax.Array]  # RGB 0..255 -> the backbone's input.
  top_blocks: tuple[str, ...]        # Parameter-name prefixes unfrozen in finetune mode.


BACKBONES = {
    # VGG16 conv base; features = global average and max of block5_conv3 (1024).
    "vgg16": Backbone("vgg16", 224,
                      lambda frozen_bn, export=False, dtype=jnp.float32: vgg.VGG(
                          16, pooling="avgmax", dtype=dtype),
                      lambda: {"params": load_vgg(16)}, vgg.preprocess,
                      top_blocks=("block5_",)),
    # EfficientNet-Lite0 up to its 1280-wide head conv, average-pooled.
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", 224,
        lambda frozen_bn, export=False, dtype=jnp.float32: efficientnet_lite.EfficientNetLite(
            "lite0", include_top=False, frozen_bn=frozen_bn, grouped_depthwise=export,
            dtype=dtype),
        lambda: load_efficientnet_lite0(include_top=False), efficientnet_lite.preprocess,
        top_blocks=("blocks_14", "blocks_15", "conv_head", "bn1")),
}


def get_backbone(name: str) -> Backbone:
  if name not in BACKBONES:
    raise ValueError(f"Unknown backbone {name!r}; known: {sorted(BACKBONES)}.")
  return BACKBONES[name]


class Head(nn.Module):
  """Dropout, then a linear classifier: what replaces the ImageNet classifier."""
  num_classes: int
  dropout: float = 0.0  # Or a traced scalar: one rate per model of a sweep (dropout.py).

  @nn.compact
  def __call__(self, features, train: bool = False):
    features = Dropout(self.dropout, deterministic=not train)(features)
    return nn.Dense(self.num_classes, name="classifier")(features)


class TransferNet(nn.Module):
  """A backbone (parameters under ``backbone/``) and a new head (under ``head/``)."""
  backbone: nn.Module
  num_classes: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, images, train: bool = False):
    return Head(self.num_classes, self.dropout, name="head")(self.backbone(images, train=train),
                                                             train)


class FrozenTransferNet(nn.Module):
  """Frozen mode as one model, ``images -> logits``, for export: the backbone's features (eval
  mode), standardised with the training features' mean and std (collection ``feature_stats``,
  from the run's ``feature_stats.npz``), then the trained head. Parameters as ``TransferNet``'s:
  ``backbone/`` (pretrained) and ``head/``."""
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, images, train: bool = False):
    if train:
      raise ValueError("FrozenTransferNet is the inference model of frozen mode: train the head "
                       "on cached features (experiments/cats_dogs.py), not through it.")
    features = self.backbone(images, train=False)
    stat = lambda name, init: self.variable("feature_stats", name, init, features.shape[-1:]).value
    return Head(self.num_classes, name="head")(
        (features - stat("mean", jnp.zeros)) / stat("std", jnp.ones))


def finetune_trainable(backbone: Backbone) -> Callable[[str], bool]:
  """``is_trainable(path)`` for ``freeze.frozen``: the head and the backbone's top blocks."""
  prefixes = ("head/",) + tuple(f"backbone/{p}" for p in backbone.top_blocks)
  return lambda path: path.startswith(prefixes)


def with_pretrained(variables: dict, pretrained: dict) -> dict:
  """``TransferNet`` variables with the backbone's collections replaced by ``pretrained``."""
  out = {k: dict(v) for k, v in variables.items()}
  for collection, tree in pretrained.items():
    out[collection]["backbone"] = tree
  return out


# ---- frozen-backbone features, computed once and cached ------------------------------------

CHUNK = 200  # Images per cached file: a killed extraction resumes from the last whole chunk.


def features_fn(backbone: Backbone, variables: dict, flip: bool, dtype=jnp.float32):
  """A jitted ``images (uint8) -> features`` (float32; rows: the images, then, with ``flip``,
  their mirror images), the backbone computing in ``dtype``."""
  module = backbone.make(True, dtype=dtype)

  @jax.jit
  def fn(images):
    x = backbone.preprocess(images)
    if flip:
      x = jnp.concatenate([x, x[:, :, ::-1]])
    return module.apply(variables, x)

  return fn


def cached_features(backbone: Backbone, variables: dict, paths: Sequence[Path], cache_dir: Path,
                    *, flip: bool = False, image_size: int | None = None,
                    batch_size: int = 25, progress: bool = True,
                    resize: str = "crop", dtype=jnp.float32) -> np.ndarray:
  """Backbone features of ``paths``, shape (n, d), or (n, 2, d) with ``flip`` (original,
  mirrored), read from ``cache_dir`` when a previous run computed them for the same files (and
  the same compute ``dtype``)."""
  image_size = image_size or backbone.image_size
  dtype = jnp.dtype(dtype)
  manifest = {"backbone": backbone.name, "image_size": image_size, "flip": flip,
              **({"resize": resize} if resize != "crop" else {}),
              **({"dtype": dtype.name} if dtype != jnp.float32 else {}),
              "files": [str(p) for p in paths]}
  manifest_path = cache_dir / "manifest.json"
  if manifest_path.exists() and json.loads(manifest_path.read_text()) != manifest:
    shutil.rmtree(cache_dir)  # Features of other files or another backbone: recompute.
  cache_dir.mkdir(parents=True, exist_ok=True)
  manifest_path.write_text(json.dumps(manifest))
  fn = None
  chunks = []
  starts = range(0, len(paths), CHUNK)
  bar = progress_bar(len(paths), 0, enabled=progress, desc=f"{backbone.name} {cache_dir.name}")
  for start in starts:
    chunk_file = cache_dir / f"{start:06d}.npy"
    n = min(CHUNK, len(paths) - start)
    if chunk_file.exists():
      chunks.append(np.load(chunk_file))
      bar.update(n)
      continue
    fn = fn or features_fn(backbone, variables, flip, dtype)
    rows = []
    for images in image_batches(paths[start:start + n], image_size, batch_size, resize=resize):
      real = len(images)
      if real < batch_size:  # One compiled shape: pad the last batch.
        images = np.concatenate([images, np.zeros((batch_size - real, *images.shape[1:]),
                                                  images.dtype)])
      out = np.asarray(fn(images))
      rows.append(np.stack([out[:real], out[batch_size:batch_size + real]], 1) if flip
                  else out[:real])
      bar.update(real)
    chunk = np.concatenate(rows)
    tmp = chunk_file.with_suffix(".tmp.npy")
    np.save(tmp, chunk)
    tmp.replace(chunk_file)  # Atomic: a chunk file is whole or absent.
    chunks.append(chunk)
  bar.close()
  return np.concatenate(chunks)


@functools.lru_cache(maxsize=2)
def pretrained_variables(name: str) -> dict:
  """The located, verified pretrained weights of a backbone (read once per process)."""
  return get_backbone(name).load()
