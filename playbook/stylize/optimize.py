"""Style transfer as optimisation over the pixels: the image is the only optimised pytree.

Shared by ``launch/stylize.py`` (the command line) and the ``stylize`` task (the ``launch.main``
route, ``playbook/tasks/stylize.py``, which holds every number): ``stylize()`` runs the schedule.

A sweep of the loss weights (``weights``: one value per image) optimises every image through one
compiled step, the weights its arguments, the backbone and the targets shared: with Adam the
step is ``jax.vmap``-ed over the images (one program); each image ends where its own run would.

Coarse to fine (``config.sizes``, e.g. 256 -> 512): each scale optimises the image at that size,
starting from the previous scale's result upsampled (the first from the content, the style or
noise), with the content and style targets recomputed at that size. The optimiser is optax
``adam`` or ``lbfgs`` with its zoom line search (which re-uses the line search's last value and
gradient through ``optax.value_and_grad_from_state``); one step is jitted once per scale.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook.data.images import read_rgb
from playbook.models import vgg
from playbook.models.precision import compute_dtype
from playbook.run import plots
from playbook.stylize import colors, images
from playbook.stylize.losses import StyleObjective
from playbook.train import NonFiniteLossError
from playbook.train.progress import progress_bar

# VGG16's layers used by Gatys et al. (who used VGG19: conv4_2 for content, conv{1..5}_1 for style).
CONTENT_LAYERS = {"block4_conv2": 1.0}
STYLE_LAYERS = {f"block{b}_conv1": 0.2 for b in range(1, 6)}


def make_objective(config: ml_collections.ConfigDict) -> StyleObjective:
  return StyleObjective(
      backbone=vgg.VGG(depth=config.backbone.depth, include_top=False,
                       conv_impl=config.backbone.conv_impl, dtype=compute_dtype(config)),
      content_layers=dict(config.loss.content_layers), style_layers=dict(config.loss.style_layers),
      content_weight=config.loss.content_weight, style_weight=config.loss.style_weight,
      tv_weight=config.loss.tv_weight)


def pixel_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  if optim.name == "adam":
    return optax.adam(optim.learning_rate)
  return optax.lbfgs(memory_size=optim.memory_size,
                     linesearch=optax.scale_by_zoom_linesearch(
                         max_linesearch_steps=optim.max_linesearch_steps))


def make_step(objective, optimizer: optax.GradientTransformation, lbfgs: bool, *,
              swept: bool = False):
  """step(image, opt_state, params, targets, weights) -> (image, opt_state, loss before the
  step), jitted; ``weights`` ({name: number}, or None) replaces the objective's loss weights.
  ``swept``: images, optimiser states and weights carry a leading axis, one entry per image.

  The image and the optimiser state are donated: each step updates them in place.
  """
  def step(image, opt_state, params, targets, weights):
    value_fn = lambda x: objective.with_weights(weights)(params, x, targets)  # noqa: E731
    if lbfgs:
      # The zoom line search already evaluated the new point: re-use its value and gradient.
      value, grad = optax.value_and_grad_from_state(value_fn)(image, state=opt_state)
      updates, opt_state = optimizer.update(grad, opt_state, image, value=value, grad=grad,
                                            value_fn=value_fn)
    else:
      value, grad = jax.value_and_grad(value_fn)(image)
      updates, opt_state = optimizer.update(grad, opt_state, image)
    return optax.apply_updates(image, updates), opt_state, value

  if swept:
    step = jax.vmap(step, in_axes=(0, 0, None, None, 0))
  return jax.jit(step, donate_argnums=(0, 1))


def fresh_state(opt_state):
  """The optimiser state as fresh, strongly typed buffers, ready for the donating step.

  ``init`` may alias leaves (zeros, the image itself), which donation refuses, and L-BFGS's
  holds weakly typed scalars that the step returns strongly typed: without this the step would
  compile twice (measured: a second ~150 s compilation at 64 px on the loaded 2-core CPU).
  """
  return jax.tree.map(lambda a: jnp.array(a, dtype=a.dtype), opt_state)


@dataclasses.dataclass
class StylizeResult:
  image: np.ndarray               # (H, W, 3) RGB in 0..255 (colours preserved if asked); a
                                  # sweep's: (images, H, W, 3).
  history: list[dict]             # One row per step: scale, step, size, loss before the step
                                  # (a sweep's: one loss per image).
  parts: dict[str, float]         # The final image's weighted loss terms (before clipping; a
                                  # sweep's: one list per term).
  frames: list[np.ndarray]        # GIF frames (RGB 0..255), every config.gif_every steps.
  seconds: float                  # Wall time of the optimisation (compilation included).
  compilations: int = 0           # Programs the step compiled to: one per distinct scale.


def _preprocess(rgb: np.ndarray) -> jax.Array:
  return jnp.asarray(vgg.preprocess(jnp.asarray(rgb[None], jnp.float32)))


def _deprocess(x: jax.Array) -> np.ndarray:
  """(1, H, W, 3) or a sweep's (images, 1, H, W, 3) -> RGB (H, W, 3) or (images, H, W, 3)."""
  return np.clip(np.asarray(vgg.deprocess(x))[..., 0, :, :, :], 0, 255)


def initial_image(config, content: np.ndarray, style: np.ndarray) -> np.ndarray:
  """The first scale's start in RGB 0..255, content-sized: content, style or noise (seeded)."""
  h, w = content.shape[:2]
  if config.init == "content":
    return content
  if config.init == "style":
    return images.resize_to(style, h, w)
  noise = jax.random.normal(jax.random.PRNGKey(config.seed), content.shape, jnp.float32)
  mean_rgb = np.asarray(vgg.deprocess(jnp.zeros((1, 1, 1, 3))))[0, 0, 0]  # The weights' mean.
  return np.asarray(mean_rgb + config.init_noise_std * noise, np.float32)


def stylize(config: ml_collections.ConfigDict, params, content: np.ndarray, style: np.ndarray,
            *, desc: str = "stylize", weights: dict[str, np.ndarray] | None = None
            ) -> StylizeResult:
  """Runs the coarse-to-fine schedule of ``config`` (validated by ``tasks.stylize.validate``)
  from full-size RGB content and style images. ``weights`` ({'style_weight': one value per
  image, ...}): a sweep, each image optimised with its own loss weights, all through one
  compiled step (per scale): with Adam in one vmapped program; with L-BFGS one image after
  another, since its line search branches per image (``lax.cond``), and vmap would compute every
  branch for every image (``benchmarks/style_sweep.py`` times both ways)."""
  start = time.perf_counter()
  objective = make_objective(config)
  optimizer = pixel_optimizer(config.optim)
  lbfgs = config.optim.name == "lbfgs"
  together = weights is not None and not lbfgs  # One vmapped program for every image.
  step_fn = make_step(objective, optimizer, lbfgs=lbfgs, swept=together)
  parts = lambda p, x, t, w: objective.with_weights(w).parts(p, x, t)  # noqa: E731
  parts_fn = jax.jit(jax.vmap(parts, in_axes=(None, 0, None, 0)) if together else parts)
  if config.colors == "histogram":
    style = colors.match_color_statistics(style, content)
  if weights is None:
    groups = [None]
  else:
    weights = {k: jnp.asarray(v, jnp.float32) for k, v in weights.items()}
    count = len(next(iter(weights.values())))
    groups = [weights] if together else [{k: v[i] for k, v in weights.items()}
                                         for i in range(count)]
  # Each scale's images and targets, once for every image of a sweep.
  targets_fn = jax.jit(objective.targets)
  scales = []
  for size in config.sizes:
    content_s = images.resize(content, size)
    style_s = images.resize(style, max(16, round(size * config.style_scale)))
    scales.append((content_s, style_s,
                   targets_fn(params, _preprocess(content_s), _preprocess(style_s))))
  bar = progress_bar(sum(config.steps) * len(groups), 0, enabled=config.progress, desc=desc)

  def schedule(weights, count: int | None):
    """The coarse-to-fine schedule for one image, or ``count`` vmapped ones."""
    # A vmapped sweep's images share the start; ``each`` maps over them where there are several.
    each = (lambda f, x: np.stack([f(xi) for xi in x])) if count else (lambda f, x: f(x))
    history, frames, image_rgb = [], [], None
    global_step = 0
    for scale, (size, num_steps) in enumerate(zip(config.sizes, config.steps)):
      content_s, style_s, targets = scales[scale]
      h, w = content_s.shape[:2]
      if image_rgb is None:
        start_rgb = initial_image(config, content_s, style_s)
        start_rgb = np.stack([start_rgb] * count) if count else start_rgb
      else:
        start_rgb = each(lambda rgb: images.resize_to(rgb, h, w), image_rgb)
      image = jnp.asarray(each(lambda rgb: np.asarray(_preprocess(rgb)), start_rgb))
      opt_state = fresh_state(jax.vmap(optimizer.init)(image) if count else optimizer.init(image))
      for _ in range(num_steps):
        if config.gif_every and global_step % config.gif_every == 0:
          frames.append(_deprocess(image))
        image, opt_state, loss = step_fn(image, opt_state, params, targets, weights)
        loss = np.asarray(loss, np.float64)
        if not np.all(np.isfinite(loss)):
          raise NonFiniteLossError(
              f"Style loss became {loss.tolist()} at step {global_step} (size {size}). Lower "
              "optim.learning_rate (adam) or the loss weights, or use optim.name='lbfgs'.")
        history.append({"scale": scale, "size": size, "step": global_step,
                        "loss": loss.tolist()})
        global_step += 1
        bar.update(1)
        bar.set_postfix(size=size, loss=f"{np.min(loss):.4g}")
      image_rgb = _deprocess(image)
    final = {k: np.asarray(v).tolist() for k, v in parts_fn(params, image, targets,
                                                            weights).items()}
    if config.gif_every:
      frames.append(image_rgb)
    if config.colors == "luminance":
      content_rgb = images.resize(content, config.sizes[-1])
      image_rgb = each(lambda rgb: colors.luminance_transfer(rgb, content_rgb), image_rgb)
    return image_rgb, history, final, frames

  runs = [schedule(w, count if together else None) for w in groups]
  bar.close()
  image_rgb, history, final, frames = runs[0]
  if len(runs) > 1:  # One image after another: gathered as a vmapped sweep gives them.
    image_rgb = np.stack([r[0] for r in runs])
    history = [dict(row, loss=[r[1][i]["loss"] for r in runs]) for i, row in enumerate(history)]
    final = {k: [r[2][k] for r in runs] for k in final}
  return StylizeResult(image=image_rgb, history=history, parts=final, frames=frames,
                       seconds=time.perf_counter() - start,
                       compilations=step_fn._cache_size())  # noqa: SLF001 (jax's own count)


def load_backbone_params(config: ml_collections.ConfigDict):
  """The frozen backbone's ImageNet weights: from the data root, Keras's cache or fetched into
  ours (a DataError says where they were looked for)."""
  from playbook.weights import load_vgg  # h5py is only needed here.
  return load_vgg(config.backbone.depth, expected_sha256=config.backbone.expected_sha256 or None,
                  data_dir=config.data.dir or None)


def stylize_files(config: ml_collections.ConfigDict, content_path, style_path, *,
                  desc: str = "stylize", weights: dict[str, np.ndarray] | None = None
                  ) -> tuple[StylizeResult, np.ndarray, np.ndarray]:
  """Reads both images and the weights (clear errors first, before any compilation), stylizes
  (``weights``: a sweep's, as ``stylize`` takes them)."""
  hint = " (The staged examples are in the data root's style/ folder.)"
  content = read_rgb(content_path, what="content image", hint=hint).astype(np.float32)
  style = read_rgb(style_path, what="style image", hint=hint).astype(np.float32)
  params = load_backbone_params(config)
  return stylize(config, params, content, style, desc=desc, weights=weights), content, style


def save_outputs(result: StylizeResult, content: np.ndarray, style: np.ndarray, *,
                 image_path, figure_path=None, gif_path=None, loss_path=None) -> dict[str, str]:
  """The result image, the content | style | result figure, the GIF and the loss curve."""
  h, w = result.image.shape[:2]
  written = {"image": str(images.save_image(result.image, image_path))}
  if figure_path:
    written["figure"] = str(images.side_by_side(
        {"content": images.resize_to(content, h, w), "style": images.resize(style, max(h, w)),
         "result": result.image}, figure_path))
  if gif_path:
    written["gif"] = str(images.save_gif(result.frames, gif_path))
  if loss_path:
    written["loss_curve"] = str(plot_loss(result.history, loss_path))
  return written


def plot_loss(history: list[dict], path, labels: list[str] | None = None) -> Path:
  """Total loss per step, a line per scale (a sweep's: per image and scale, ``labels`` naming
  the images)."""
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for scale in sorted({row["scale"] for row in history}):
    rows = [row for row in history if row["scale"] == scale]
    losses = np.array([r["loss"] for r in rows], np.float64).reshape(len(rows), -1)
    for i, line in enumerate(losses.T):
      name = f"{rows[0]['size']} px" + (f", {labels[i]}" if labels else "")
      ax.plot([r["step"] for r in rows], line, label=name,
              color=f"C{i}" if labels else f"C{scale}", ls=("-", "--", ":")[scale % 3])
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("total loss")
  ax.grid(alpha=0.3)
  ax.legend()
  return plots.save(fig, Path(path))
