"""Real-image sanity check of the imported EfficientNet-Lite0: does its own ImageNet classifier
put the cats vs dogs validation images in the right species group?

    PLAYBOOK_DATA_DIR=/path/to/data .venv/bin/python -m benchmarks.lite0_species \
        [--cache_dir=runs/cats_dogs_lite0_frozen/features/test]
    # -> benchmarks/results/lite0_species.json

Cats count as right when the top ImageNet class is 281-285 (tabby, tiger cat, Persian, Siamese,
Egyptian cat), dogs when it is 151-268 (the dog breeds). Bar: >= 90 % of the 1,000 images.

The pooled 1280-wide features are the ones ``experiments/cats_dogs.py`` caches (the same images,
224 px, the reference package's ImageNet normalisation); pointing ``--cache_dir`` at that run's
``features/test`` reuses them, otherwise they are computed (about 1,000 Lite0 forward passes).
The logits are the pretrained classifier applied to them, exactly the model's top.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from playbook.data.image_folder import image_folder_split
from playbook.models import efficientnet_lite, transfer
from playbook.models.efficientnet_lite import MEAN_RGB, STD_RGB
from playbook.tasks.transfer import subsample
from playbook.weights import load_efficientnet_lite0

GROUPS = {"cats": range(281, 286), "dogs": range(151, 269)}
RESIZE_TEXT = {
    "crop": "resize shorter side to 224 (bicubic), centre crop 224, then ",
    "squash": "resize the whole image to 224x224 (bicubic, aspect ratio not kept), then ",
    "eval_crop": "central square of 87.5 % of the shorter side resized to 224x224 (bicubic), then ",
}
RESULTS = Path(__file__).parent / "results" / "lite0_species.json"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache_dir", default="runs/benchmarks/lite0_species_features")
  parser.add_argument("--out", default=str(RESULTS))
  parser.add_argument("--normalization", default="imagenet", choices=sorted(MEAN_RGB),
                      help="imagenet: what efficientnet-lite-pytorch documents; tf: (x - 127) / "
                           "128, what the official TF EfficientNet-Lite code feeds its models")
  parser.add_argument("--resize", default="crop", choices=["crop", "squash", "eval_crop"],
                      help="crop: shorter side to 224, centre crop; squash: whole image to 224x224; "
                           "eval_crop: the central 87.5 %% of the shorter side scaled to 224 (the "
                           "official EfficientNet evaluation crop)")
  parser.add_argument("--flip", action="store_true",
                      help="test-time augmentation: average the logits of each image and its "
                           "mirror image")
  parser.add_argument("--limit", type=harness.positive_int, default=None,
                      help="only this many images (a fixed shuffle of both classes): smoke runs")
  args = parser.parse_args()
  start = time.perf_counter()
  split = subsample(image_folder_split("validation"), args.limit, seed=0)
  backbone = transfer.get_backbone("efficientnet_lite0")
  variables = transfer.pretrained_variables(backbone.name)
  if args.normalization != "imagenet":
    backbone = dataclasses.replace(
        backbone, name=f"{backbone.name}_{args.normalization}",
        preprocess=functools.partial(efficientnet_lite.preprocess,
                                     normalization=args.normalization))
  features = transfer.cached_features(backbone, variables, split.paths, Path(args.cache_dir),
                                      resize=args.resize, flip=args.flip)
  fc = load_efficientnet_lite0()["params"]["fc"]
  logits = features @ fc["kernel"] + fc["bias"]  # (n, 1000), or (n, 2, 1000) with --flip.
  top = (logits.mean(1) if args.flip else logits).argmax(-1)
  per_class = {}
  for label, name in enumerate(split.class_names):
    rows = split.labels == label
    in_group = np.isin(top[rows], list(GROUPS[name]))
    other = {int(c): int(n) for c, n in zip(*np.unique(top[rows][~in_group], return_counts=True))}
    per_class[name] = {"images": int(rows.sum()), "in_group": int(in_group.sum()),
                       "fraction": float(in_group.mean()),
                       "other_top_classes": dict(sorted(other.items(), key=lambda kv: -kv[1])[:10])}
  right = sum(c["in_group"] for c in per_class.values())
  results = {
      "what": "EfficientNet-Lite0 (efficientnet-lite0-57934424.pth, imported by playbook.weights) "
              "ImageNet top-1 class of each cats_and_dogs/validation image, in the right "
              "species group (cats 281-285, dogs 151-268)",
      "preprocessing": RESIZE_TEXT[args.resize] +
                       f"(x - {MEAN_RGB[args.normalization]}) / {STD_RGB[args.normalization]} "
                       f"({args.normalization!r} normalisation)" +
                       ("; logits averaged with the mirror image's" if args.flip else ""),
      "fraction_in_right_group": right / len(split), "in_right_group": right,
      "images": len(split), "bar": 0.90, "per_class": per_class,
      "wall_seconds": time.perf_counter() - start,
      "load_average_1min": os.getloadavg()[0], "environment": harness.environment(),
      "command": harness.command("benchmarks.lite0_species"),
  }
  harness.write_json(args.out, results)
  print(f"Lite0 ImageNet head: {right}/{len(split)} = {right / len(split):.1%} of validation "
        f"images in the right species group; {args.out}")


if __name__ == "__main__":
  main()
