"""Stylizes one photo: ``python -m launch.stylize --content=A.jpg --style=B.jpg --out=out.png``.

    python -m launch.stylize --content=$PLAYBOOK_DATA_DIR/style/tubingen.jpg \\
        --style=$PLAYBOOK_DATA_DIR/style/starry_night.jpg --size=512 --steps=300 --out=out.png \\
        [--optimizer=lbfgs] [--sizes=256,512] [--gif=progress.gif] [--preserve_colors]

Writes ``out.png``, ``<out>_side_by_side.png`` (content | style | result) and, with ``--gif``, the
optimisation as a GIF. Every other number comes from the stylize task's ``base_config()``; the
flags below override the usual ones, and ``experiments/style_transfer.py`` exposes all of them.
"""

from __future__ import annotations

import sys

from absl import app, flags

from playbook import tasks
from playbook.data import DataError
from playbook.run import compile_cache
from playbook.tasks import stylize
from playbook.train import NonFiniteLossError

_CONTENT = flags.DEFINE_string("content", None, "Content image (JPEG/PNG).")
_STYLE = flags.DEFINE_string("style", None, "Style image (JPEG/PNG).")
_OUT = flags.DEFINE_string("out", "out.png", "Where the result is written.")
_SIZE = flags.DEFINE_integer("size", 512, "Longer side of the result, in pixels.")
_SIZES = flags.DEFINE_list("sizes", None, "Coarse-to-fine schedule, e.g. 256,512 (overrides --size).")
_STEPS = flags.DEFINE_list("steps", ["300"], "Steps per scale: one number, or one per --sizes.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "lbfgs", ["lbfgs", "adam"], "Optimiser over pixels.")
_LR = flags.DEFINE_float("learning_rate", None, "Adam's step in pixel units (default: config's).")
_INIT = flags.DEFINE_enum("init", "content", ["content", "style", "noise"], "Start image.")
_CONTENT_WEIGHT = flags.DEFINE_float("content_weight", None, "Weight of the content loss.")
_STYLE_WEIGHT = flags.DEFINE_float("style_weight", None, "Weight of the style loss.")
_TV_WEIGHT = flags.DEFINE_float("tv_weight", None, "Weight of the total-variation loss.")
_STYLE_SCALE = flags.DEFINE_float("style_scale", 1.0, "Style image size relative to --size.")
_PRESERVE = flags.DEFINE_bool("preserve_colors", False, "Keep the content's colours.")
_COLOR_METHOD = flags.DEFINE_enum("color_method", "luminance", ["luminance", "histogram"],
                                  "With --preserve_colors: YIQ luminance-only transfer, or the "
                                  "style recoloured to the content's colour statistics.")
_GIF = flags.DEFINE_string("gif", None, "Also write the optimisation as a GIF here.")
_GIF_EVERY = flags.DEFINE_integer("gif_every", 10, "Steps between GIF frames.")
_DEPTH = flags.DEFINE_enum("depth", "16", ["16", "19"], "VGG depth (19 needs its weights).")
_CONV_IMPL = flags.DEFINE_enum("conv_impl", "xla", ["xla", "winograd"],
                               "VGG's 3x3 convolutions: XLA's, or Winograd in jax.numpy.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise init.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar with the loss.")
flags.mark_flags_as_required(["content", "style"])


def config_from_flags():
  config = stylize.base_config()
  config.content, config.style = _CONTENT.value, _STYLE.value
  config.sizes = tuple(int(s) for s in _SIZES.value) if _SIZES.value else (_SIZE.value,)
  steps = [int(s) for s in _STEPS.value]
  if len(steps) == 1:
    steps *= len(config.sizes)
  config.steps = tuple(steps)
  config.optim.name = _OPTIMIZER.value
  if _LR.value is not None:
    config.optim.learning_rate = _LR.value
  config.init, config.seed = _INIT.value, _SEED.value
  for flag, key in ((_CONTENT_WEIGHT, "content_weight"), (_STYLE_WEIGHT, "style_weight"),
                    (_TV_WEIGHT, "tv_weight")):
    if flag.value is not None:
      config.loss[key] = flag.value
  config.style_scale = _STYLE_SCALE.value
  config.colors = _COLOR_METHOD.value if _PRESERVE.value else ""
  config.gif_every = _GIF_EVERY.value if _GIF.value else 0
  config.backbone.depth = int(_DEPTH.value)
  config.backbone.conv_impl = _CONV_IMPL.value
  config.progress = _PROGRESS.value
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  compile_cache.enable()
  config = config_from_flags()
  try:
    result, written = tasks.get(config.task).stylize(config, _OUT.value, gif=_GIF.value)
  except (DataError, NonFiniteLossError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"{result.parts['total']:.4g} final loss, {len(result.history)} steps in "
        f"{result.seconds:.1f} s; wrote {', '.join(written.values())}")


if __name__ == "__main__":
  app.run(main)
