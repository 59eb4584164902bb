"""Step time of the hand-derived scratch CNN against the same network through autodiff and Flax.

    .venv/bin/python -m benchmarks.scratch_cnn_step   # -> benchmarks/results/scratch_cnn_step.json

Both sides: conv3x3-32 SAME, ReLU, maxpool 2, conv3x3-64 SAME, ReLU, maxpool 2, dense 10 on
28x28x1, batch 128, loss cross-entropy + (l2 / 2) sum ||w||^2, then ``scratch.sgd_momentum``; one
jitted call per step (parameters and velocity donated). ``scratch``: ``scratch_cnn.loss_and_grads``
(im2col forward, col2im and argmax routing backward, no autodiff). ``autodiff``:
``jax.value_and_grad`` through ``flax.linen`` (``nn.Conv``, ``nn.max_pool``, ``nn.Dense``). Same
initial weights, same fixed random batch; the first gradients are compared before timing. A
timed call is ``--steps`` steps, the sides in rotating rounds (``benchmarks/harness.py``: quiet
gating, medians of the quiet calls, warm-up never timed).
"""

from __future__ import annotations

import argparse
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from benchmarks import harness
from playbook.models import scratch, scratch_cnn

LR, MOMENTUM, L2 = 0.05, 0.9, 5e-4  # experiments/scratch_cnn.py's (its peak learning rate).


class FlaxCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    for width in (32, 64):
      x = nn.max_pool(nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x)), (2, 2), strides=(2, 2))
    return nn.Dense(10)(x.reshape(len(x), -1))


def flax_params(params: scratch_cnn.Params) -> dict:
  """The scratch parameters (HWIO kernels, (n_in, n_out) dense) as FlaxCNN's tree."""
  names = ("Conv_0", "Conv_1", "Dense_0")
  return {name: {"kernel": layer["w"], "bias": layer["b"]} for name, layer in zip(names, params)}


def flax_loss(params, x, labels):
  logits = FlaxCNN().apply({"params": params}, x)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return xent + 0.5 * L2 * sum(jnp.sum(p["kernel"] ** 2) for p in params.values())


@functools.partial(jax.jit, donate_argnums=(0, 1))
def scratch_step(params, velocity, x, labels):
  loss, _, grads = scratch_cnn.loss_and_grads(params, x, labels, l2=L2)
  return *scratch.sgd_momentum(params, velocity, grads, learning_rate=LR, momentum=MOMENTUM), loss


@functools.partial(jax.jit, donate_argnums=(0, 1))
def autodiff_step(params, velocity, x, labels):
  loss, grads = jax.value_and_grad(flax_loss)(params, x, labels)
  return *scratch.sgd_momentum(params, velocity, grads, learning_rate=LR, momentum=MOMENTUM), loss


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_size", type=harness.positive_int, default=128)
  p.add_argument("--steps", type=harness.positive_int, default=20, help="Steps per timed call.")
  p.add_argument("--repeats", type=harness.positive_int, default=5, help="Quiet calls per side.")
  p.add_argument("--quiet", type=float, default=0.2, help="Cores others may use in a quiet call.")
  p.add_argument("--max_wait", type=float, default=5.0, help="Most seconds to wait for quiet.")
  p.add_argument("--out", default="benchmarks/results/scratch_cnn_step.json")
  args = p.parse_args(argv)
  kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (args.batch_size, 28, 28, 1))
  labels = jax.random.randint(ky, (args.batch_size,), 0, 10)
  init = scratch_cnn.init_params(kp, (28, 28, 1), widths=(32, 64), num_classes=10)
  _, _, hand = scratch_cnn.loss_and_grads(init, x, labels, l2=L2)
  auto = jax.grad(flax_loss)(flax_params(init), x, labels)
  grad_diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in
                  zip(jax.tree.leaves(flax_params(hand)), jax.tree.leaves(auto)))
  print(f"first gradients: max relative difference {grad_diff:.1e}", flush=True)

  live = {k: (step, jax.tree.map(jnp.array, p), jax.tree.map(jnp.zeros_like, p)) for k, step, p in
          (("scratch", scratch_step, init), ("autodiff", autodiff_step, flax_params(init)))}

  def run(side, _round=None):
    step, params, velocity = live[side]
    for _ in range(args.steps):
      params, velocity, loss = step(params, velocity, x, labels)
    jax.block_until_ready(loss)
    live[side] = (step, params, velocity)

  for side in live:  # Compile and warm up: never timed.
    run(side)
  samples, = harness.timed_rounds(harness.Machine(args.quiet, args.max_wait),
                                  [{side: functools.partial(run, side) for side in live}],
                                  repeats=args.repeats, max_rounds=2 * args.repeats)
  sides = {k: harness.summarise(v, args.steps, args.quiet) for k, v in samples.items()}
  ms = {k: 1e3 / v["per_s"] for k, v in sides.items()}
  paired = harness.median(a[0] / s[0] for s, a in zip(samples["scratch"], samples["autodiff"]))
  report = {
      "what": f"ms per step (loss, gradients, SGD-momentum update), batch {args.batch_size}, fp32",
      "ms_per_step": ms, "steps_per_s": {k: v["per_s"] for k, v in sides.items()},
      "ratio_autodiff_ms_over_scratch_ms": ms["autodiff"] / ms["scratch"],
      "ratio_paired_median": paired, "first_gradient_max_rel_diff": grad_diff,
      "reading": "ratio > 1: the hand-derived step is faster; < 1: autodiff + Flax is faster",
      "sides": sides, "settings": vars(args),
      "command": harness.command("benchmarks.scratch_cnn_step", argv),
      "environment": harness.environment(),
  }
  print(f"scratch {ms['scratch']:.2f} ms/step, autodiff {ms['autodiff']:.2f} ms/step: autodiff / "
        f"scratch = {report['ratio_autodiff_ms_over_scratch_ms']:.2f}x (paired {paired:.2f}x; "
        f"quiet calls {sides['scratch']['quiet_calls']}/{sides['scratch']['calls']}, "
        f"{sides['autodiff']['quiet_calls']}/{sides['autodiff']['calls']}; "
        f"{report['environment']['cpu_model']})")
  print(f"wrote {harness.write_json(args.out, report)}")
  return report


if __name__ == "__main__":
  main()
