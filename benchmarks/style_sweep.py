"""A style-transfer sweep of the loss weights: every image in one vmapped step, or one image after
another through one compiled step. Which is faster, per optimiser.

    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.style_sweep [--size=128] [--steps=10] \
        [--style_weights=10,100,1000,10000] [--repeats=3]

Tuebingen in the style of The Starry Night at ``--size`` pixels (longer side), VGG16 with its
ImageNet weights, ``playbook.stylize.optimize``'s own step (``make_step``) and optimisers. For
Adam and for L-BFGS (zoom line search), the same ``--steps`` steps of every style weight, from
the content image, timed both ways after a compiling warm-up: ``vmapped`` (one program, the
images and their weights stacked) and ``sequential`` (the unvmapped step, the weights its
arguments, each image in turn). The median of ``--repeats`` rounds; the final losses of the two
ways are compared, to show they did the same work. ``optimize.stylize`` takes the faster way per
optimiser: vmapped for Adam, sequential for L-BFGS, whose line search branches per image
(``lax.cond``), which under vmap computes every branch for every image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import command, environment, median, positive_int, write_json
from playbook.data.images import read_rgb
from playbook.stylize import images, optimize
from playbook.tasks import stylize

RESULTS = Path(__file__).resolve().parent / "results" / "style_sweep.json"


def run_steps(step_fn, optimizer, image, params, targets, weights, steps: int, vmapped: bool):
  """(seconds, final losses) of ``steps`` steps from ``image``."""
  image = jnp.array(image)
  init = jax.vmap(optimizer.init) if vmapped else optimizer.init
  opt_state = optimize.fresh_state(init(image))
  start = time.perf_counter()
  for _ in range(steps):
    image, opt_state, loss = step_fn(image, opt_state, params, targets, weights)
  loss = np.asarray(jax.block_until_ready(loss), np.float64)
  return time.perf_counter() - start, loss


def measure(config, params, content, style, style_weights: list[float], steps: int,
            repeats: int) -> dict:
  objective = optimize.make_objective(config)
  optimizer = optimize.pixel_optimizer(config.optim)
  lbfgs = config.optim.name == "lbfgs"
  targets = objective.targets(params, optimize._preprocess(content), optimize._preprocess(style))
  one = optimize._preprocess(content)
  stacked = jnp.stack([one] * len(style_weights))
  together = {"style_weight": jnp.asarray(style_weights, jnp.float32)}
  each = [{"style_weight": jnp.float32(w)} for w in style_weights]
  vmapped_step = optimize.make_step(objective, optimizer, lbfgs, swept=True)
  single_step = optimize.make_step(objective, optimizer, lbfgs)

  def vmapped():
    return run_steps(vmapped_step, optimizer, stacked, params, targets, together, steps, True)

  def sequential():
    runs = [run_steps(single_step, optimizer, one, params, targets, w, steps, False)
            for w in each]
    return sum(r[0] for r in runs), np.array([r[1] for r in runs])

  for fn in (vmapped, sequential):  # Compile (and warm) both before timing.
    fn()
  times, losses = {"vmapped": [], "sequential": []}, {}
  for _ in range(repeats):
    for name, fn in (("vmapped", vmapped), ("sequential", sequential)):
      seconds, losses[name] = fn()
      times[name].append(seconds)
  seconds = {k: median(v) for k, v in times.items()}
  return {"seconds_per_round": times, "seconds": seconds,
          "ms_per_image_step": {k: 1000 * v / (steps * len(style_weights))
                                for k, v in seconds.items()},
          "vmapped_over_sequential": seconds["vmapped"] / seconds["sequential"],
          "final_losses": {k: v.tolist() for k, v in losses.items()},
          "final_loss_max_relative_difference": float(np.max(
              np.abs(losses["vmapped"] - losses["sequential"]) / np.abs(losses["sequential"])))}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", type=positive_int, default=128)
  parser.add_argument("--steps", type=positive_int, default=10)
  parser.add_argument("--style_weights", default="10,100,1000,10000")
  parser.add_argument("--repeats", type=positive_int, default=3)
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args(argv)
  style_weights = [float(w) for w in args.style_weights.split(",")]
  config = stylize.base_config()
  config.progress = False
  params = optimize.load_backbone_params(config)
  data = lambda name: read_rgb(stylize.image_path(config, name)).astype(np.float32)
  content = images.resize(data(config.content), args.size)
  style = images.resize(data(config.style), args.size)
  report = {"command": command("benchmarks.style_sweep", argv),
            "size": list(content.shape[:2]), "steps": args.steps, "style_weights": style_weights,
            "optimizers": {}}
  for name in ("adam", "lbfgs"):
    config.optim.name = name
    result = measure(config, params, content, style, style_weights, args.steps, args.repeats)
    report["optimizers"][name] = result
    ms = result["ms_per_image_step"]
    print(f"{name}: {ms['vmapped']:.0f} ms per image-step vmapped, {ms['sequential']:.0f} "
          f"sequential: vmapped/sequential {result['vmapped_over_sequential']:.2f} (final losses "
          f"within {result['final_loss_max_relative_difference']:.1e})")
  report["environment"] = environment()
  print(f"written to {write_json(args.out, report)}")
  return report


if __name__ == "__main__":
  main()
