"""Style transfer as a task: a content and a style image in, a stylized image out.

``train(config, workdir)`` is the ``launch.main`` route (outputs under the workdir, a finished
workdir is not redone); ``stylize(config, out)`` is ``launch.stylize``'s (one pair of files, no
workdir). The optimisation itself is ``playbook/stylize/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ml_collections

from playbook.data import fetch
from playbook.run import rundir
from playbook.stylize import images, optimize
from playbook.tasks import ConfigError, run_config, schema
from playbook.train import sweep

# Sweepable here: the loss weights, each image of the sweep optimised with its own.
SWEEP_KEYS = {name: f"loss.{name}" for name in ("content_weight", "style_weight", "tv_weight")}


def base_config(study: str = "style_transfer") -> ml_collections.ConfigDict:
  """Every number of a style transfer; ``launch.stylize``'s flags override the usual ones."""
  config = run_config("stylize", study, trains_seeds=False)

  config.data = ml_collections.ConfigDict()
  config.data.dir = ""  # Empty: $PLAYBOOK_DATA_DIR, else ~/.cache/playbook. Image paths are
                        # relative to it.
  config.content = "style/tubingen.jpg"
  config.style = "style/starry_night.jpg"

  config.backbone = ml_collections.ConfigDict()
  config.backbone.depth = 16        # 16 (weights staged) or 19 (when you have its weights).
  # VGG19's weights have no reference hash here: give the tensor sha256 of a copy you trust.
  config.backbone.expected_sha256 = ""
  # 'xla' (nn.Conv) or 'winograd' (Winograd F(2x2 / 4x4, 3x3) convolutions, forward and input
  # gradient, in jax.numpy: the same numbers to float32 rounding; benchmarks/README.md).
  config.backbone.conv_impl = "xla"

  config.sizes = (512,)             # Longer image side per scale, coarse to fine.
  config.steps = (300,)             # Optimiser steps per scale (one number per size).
  config.style_scale = 1.0          # Style image's longer side = style_scale * size.
  config.init = "content"           # 'content', 'style' or 'noise'.
  config.init_noise_std = 20.0      # Pixel units (0..255) of the 'noise' init.

  config.loss = ml_collections.ConfigDict()
  config.loss.content_layers = dict(optimize.CONTENT_LAYERS)  # layer -> weight within the content term.
  config.loss.style_layers = dict(optimize.STYLE_LAYERS)      # layer -> weight within the style term.
  config.loss.content_weight = 5.0
  config.loss.style_weight = 100.0  # The content/style ratio is content_weight / style_weight.
  config.loss.tv_weight = 1e-3

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "lbfgs"       # 'lbfgs' or 'adam'.
  config.optim.learning_rate = 10.0  # Adam's step in pixel units.
  config.optim.memory_size = 10     # L-BFGS history.
  config.optim.max_linesearch_steps = 20

  config.colors = ""                # '', 'luminance' (YIQ, after) or 'histogram' (style, before).
  config.gif_every = 0              # Record a GIF frame every this many steps; 0 = no GIF.

  # Loss weights swept through one compiled step, e.g. --config.sweep.style_weight=10,100,1000:
  # one image per value (crossed with the other swept weights), side by side in plots/sweep.png.
  config.sweep = sweep.config_block(tuple(SWEEP_KEYS))
  return config


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ':quick' variant: the same schedule at thumbnail size, a few steps per scale."""
  config.sizes = (48, 64)
  config.steps = (5, 5)
  config.gif_every = 2
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Refuses, before anything is read or written, a config the schedule cannot run."""
  sizes_ok = lambda v: schema.WIDTHS[0](v) and len(v) > 0 and min(v) >= 16
  schema.check(config, {
      "sizes": (sizes_ok, "a tuple of image sides >= 16 (the VGG pools five times)"),
      "steps": (lambda v: schema.WIDTHS[0](v) and len(v) > 0, "a tuple of step counts > 0"),
      "style_scale": schema.POSITIVE, "init_noise_std": schema.NON_NEGATIVE,
      "loss.content_weight": schema.NON_NEGATIVE, "loss.style_weight": schema.NON_NEGATIVE,
      "loss.tv_weight": schema.NON_NEGATIVE, "optim.learning_rate": schema.POSITIVE,
      "optim.memory_size": schema.POSITIVE_INT, "optim.max_linesearch_steps": schema.POSITIVE_INT,
      "backbone.depth": schema.one_of(16, 19), "gif_every": schema.NON_NEGATIVE_INT,
      "precision": schema.TRAINING["precision"],
  })
  if len(config.sizes) != len(config.steps):
    raise ConfigError(f"config.sizes {tuple(config.sizes)} and config.steps "
                     f"{tuple(config.steps)} need one entry per scale.")
  if config.init not in ("content", "style", "noise"):
    raise ConfigError(f"config.init={config.init!r}: use 'content', 'style' or 'noise'.")
  if config.optim.name not in ("adam", "lbfgs"):
    raise ConfigError(f"config.optim.name={config.optim.name!r}: use 'adam' or 'lbfgs'.")
  if config.backbone.conv_impl not in ("xla", "winograd"):
    raise ConfigError(f"config.backbone.conv_impl={config.backbone.conv_impl!r}: use 'xla' or "
                     "'winograd'.")
  if config.colors not in ("", "luminance", "histogram"):
    raise ConfigError(f"config.colors={config.colors!r}: use '', 'luminance' or 'histogram'.")
  swept = sweep.parse(config, SWEEP_KEYS)
  schema.check_sweep(config, swept, {}, rules={k: schema.NON_NEGATIVE for k in SWEEP_KEYS.values()})
  if swept and config.gif_every:
    raise ConfigError("config.gif_every: a sweep draws its images side by side, not a GIF; set "
                      "--config.gif_every=0.")


def image_path(config: ml_collections.ConfigDict, name: str) -> Path:
  """``name`` as given when absolute, else relative to the data root (a registered image, such as
  the staged examples, is fetched and verified on first use)."""
  path = Path(name).expanduser()
  return path if path.is_absolute() else fetch.data_file(name, config.data.dir or None)


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start = time.perf_counter()
  validate(config)
  if (done := rundir.finished(workdir, config)) is not None:
    return done
  workdir = rundir.prepare(workdir, config)
  swept = sweep.parse(config, SWEEP_KEYS)
  result, content, style = optimize.stylize_files(
      config, image_path(config, config.content), image_path(config, config.style),
      weights=swept.hparams() if swept else None)
  with open(workdir / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in result.history)
  if swept:
    return finish_sweep(config, workdir, swept, result, content, style, start)
  written = optimize.save_outputs(
      result, content, style, image_path=workdir / "result.png",
      figure_path=workdir / "plots" / "side_by_side.png",
      gif_path=workdir / "progress.gif" if config.gif_every else None,
      loss_path=workdir / "plots" / "loss.png")
  results = {"task": config.task, "study": config.study, "final_loss": result.parts,
             "seconds": round(result.seconds, 2), "steps": len(result.history),
             "size": list(result.image.shape[:2]), "outputs": written}
  parts = result.parts
  return rundir.finish(workdir, results, start=start,
                       summary=f"loss {parts['total']:.4g} (content {parts['content']:.4g}, "
                               f"style {parts['style']:.4g}, tv {parts['tv']:.4g}); result in "
                               f"{written['image']}")


def finish_sweep(config, workdir: Path, swept: sweep.Sweep, result: optimize.StylizeResult,
                 content, style, start: float) -> dict:
  """A sweep's outputs: each image (``result_<variant>.png``), all of them side by side after
  the content and the style (``plots/sweep.png``), the loss curves, and per variant its final
  loss terms in ``results.json``."""
  names = [swept.label(v) for v in swept.variants]
  h, w = result.image.shape[1:3]
  written = {name: str(images.save_image(image, workdir / f"result_{name}.png"))
             for name, image in zip(names, result.image)}
  figure = images.side_by_side(
      {"content": images.resize_to(content, h, w), "style": images.resize(style, max(h, w)),
       **dict(zip(names, result.image))}, workdir / "plots" / "sweep.png",
      title=f"{len(names)} images, one compiled step"
            + (" (vmapped)" if config.optim.name == "adam" else " (one image after another)"))
  loss_curve = optimize.plot_loss(result.history, workdir / "plots" / "loss.png", labels=names)
  variants = [{"name": name, "values": {swept.keys[n]: v[n] for n in swept.names},
               "final_loss": {k: result.parts[k][i] for k in result.parts}, "image": written[name]}
              for i, (name, v) in enumerate(zip(names, swept.variants))]
  results = {"task": config.task, "study": config.study, "variants": variants,
             "seconds": round(result.seconds, 2), "steps": len(result.history),
             "size": [h, w], "outputs": {"figure": str(figure), "loss_curve": str(loss_curve)}}
  return rundir.finish(workdir, results, start=start,
                       summary=f"{len(names)} images through one compiled step "
                               f"({', '.join(names)}); side by side in {figure}")


def stylize(config: ml_collections.ConfigDict, out: str | Path, *,
            gif: str | None = None) -> tuple[optimize.StylizeResult, dict[str, str]]:
  """One content/style pair to ``out`` (+ ``<out>_side_by_side.png``, and a GIF with ``gif``)."""
  validate(config)
  out = Path(out)
  result, content, style = optimize.stylize_files(config, config.content, config.style)
  written = optimize.save_outputs(result, content, style, image_path=out,
                                  figure_path=out.with_name(f"{out.stem}_side_by_side.png"),
                                  gif_path=gif)
  return result, written
