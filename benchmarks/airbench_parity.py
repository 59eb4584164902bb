"""Is ``cifar10_fast`` airbench94? The same weights, batches and steps through this project's
JAX net + optimiser and through a PyTorch transcription of airbench94's training step.

    python -m benchmarks.airbench_parity --steps=5 --batch=64 --gelu=tanh --dither --eager \
        --out=benchmarks/results/airbench_parity.json

The PyTorch side follows airbench94.py (github.com/KellerJordan/cifar10-airbench) as written:
summed label-smoothed loss, SGD with Nesterov momentum and its ``kilostep_scale`` learning rate
and weight decay, BatchNorm biases in their own group at 64x the learning rate and 1/64 the decay,
the piecewise-linear schedule, lookahead every 5 steps with decay 0.95^5 * (step/total)^3, exact
GELU. The JAX side is ``experiments/cifar10_fast.py``'s model and ``make_optimizer`` in their
mean-loss form, with the convolutions of XLA (``fast_conv=False``). Both start from the JAX
init (copied over), see the same real CIFAR-10 training images (no augmentation) and run
``--steps`` steps of a schedule that ends there; printed: the largest relative difference of the
logits at the start, of the first gradients, and of every parameter after each step. float64 on
both sides, so what is left is the difference of the two recipes, not rounding.

Measured (README, CIFAR-10): with ``--gelu=tanh`` (Flax's ``nn.gelu`` is the tanh form; airbench
uses the exact one, which alone moves the logits by 4e-4) the first gradients agree to 4e-14 and
the parameters over 5 steps (the lookahead's first sync included) to 2e-7, float32 rounding's
level, when run ``--eager``; jitted, XLA's float64 program differs from its eager one by about
3e-6.
``--dither`` adds U(0, 1) to the pixels so that no max-pool window holds a tie, whose gradient
XLA and PyTorch route to different elements.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from experiments import cifar10_fast  # noqa: E402
from playbook import models  # noqa: E402
from playbook.data import cifar10  # noqa: E402
from playbook.models import resnet_fast  # noqa: E402
from playbook.tasks import classify  # noqa: E402
from playbook.train.freeze import frozen, path_name  # noqa: E402
from playbook.train.losses import classification_loss  # noqa: E402
from playbook.train.optim import make_optimizer  # noqa: E402


def torch_airbench(params, widths, gelu: str):
  """airbench94's net in PyTorch with the JAX parameters copied in (float64)."""
  import torch
  from torch import nn
  torch.set_default_dtype(torch.float64)
  act = lambda: nn.GELU(approximate="none" if gelu == "exact" else "tanh")
  t = lambda a: torch.from_numpy(np.array(a, np.float64))
  conv_w = lambda k: t(np.transpose(k, (3, 2, 0, 1)))  # HWIO -> OIHW

  def bn(w, bias):
    b = nn.BatchNorm2d(w, momentum=0.6, eps=1e-12)
    b.weight.requires_grad = False
    b.bias.data = bias
    return b

  whiten = nn.Conv2d(3, 24, 2)
  whiten.weight.data, whiten.bias.data = conv_w(params["whiten"]["kernel"]), t(
      params["whiten"]["bias"])
  whiten.weight.requires_grad = False
  layers, c = [whiten, act()], 24
  for i, w in enumerate(widths):
    g = params[f"ConvGroup_{i}"]
    c0 = nn.Conv2d(c, w, 3, padding=1, bias=False)
    c1 = nn.Conv2d(w, w, 3, padding=1, bias=False)
    c0.weight.data, c1.weight.data = conv_w(g["Conv_0"]["kernel"]), conv_w(g["Conv_1"]["kernel"])
    layers += [c0, nn.MaxPool2d(2), bn(w, t(g["BatchNorm_0"]["bias"])), act(),
               c1, bn(w, t(g["BatchNorm_1"]["bias"])), act()]
    c = w
  head = nn.Linear(c, 10, bias=False)
  head.weight.data = t(np.asarray(params["head"]["kernel"]).T)
  layers += [nn.MaxPool2d(3), nn.Flatten(), head]
  return nn.Sequential(*layers).train()


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=8)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--dither", action="store_true",
                 help="add U(0, 1) to the pixel values: no exact ties in the max-pools")
  p.add_argument("--eager", action="store_true", help="run the JAX side without jit")
  p.add_argument("--out", default="", help="write the report as JSON here")
  p.add_argument("--gelu", choices=["exact", "tanh"], default="exact",
                 help="the PyTorch side's GELU (airbench: exact; Flax's nn.gelu: tanh)")
  args = p.parse_args(argv)
  args.command = " ".join(["python -m benchmarks.airbench_parity",
                           *(sys.argv[1:] if argv is None else argv)])
  if args.eager:
    with jax.disable_jit():
      return run(args)
  return run(args)


def run(args) -> dict:
  import torch
  import torch.nn.functional as F

  config = cifar10_fast.get_config("official94")
  config.model.fast_conv = False
  config.data.source = "files"  # The staged JPEG copy (no official batches here).
  o = config.optim
  # airbench94's hyper-parameters, and its translation to a mean loss (README, CIFAR-10).
  hyp_lr, hyp_wd, momentum, bias_scaler, batch = 11.5, 0.0153, 0.85, 64.0, args.batch
  kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
  lr, wd = hyp_lr / kilostep_scale, hyp_wd * batch / kilostep_scale
  o.learning_rate, o.base_batch_size, o.lr_scaling = lr * 1024, 1024, "linear"
  o.weight_decay = wd / batch  # Same per-step decay on a mean loss.

  data = cifar10.load(config.data)  # The staged copy (PLAYBOOK_DATA_DIR), decoded once.
  preprocess = classify.make_preprocess(config.data)
  images = np.asarray(data.train.x[:batch * args.steps])
  labels = np.asarray(data.train.y[:batch * args.steps])
  if args.dither:
    images = images + np.random.default_rng(0).uniform(size=images.shape).astype(np.float32)
  model = models.build(config.model, 10)
  model = model.clone(tta_flip=False)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  params = resnet_fast.with_whitening(
      variables["params"], np.asarray(preprocess(data.train.x[:config.model.whitening_images])))
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  state = {"batch_stats": jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                       variables["batch_stats"])}

  tx = frozen(make_optimizer(o, args.steps, 1, batch), lambda name: name != "whiten/kernel")
  opt_state = tx.init(params)
  loss_fn = classification_loss(model, preprocess=lambda x: preprocess(x).astype(jnp.float64),
                                label_smoothing=o.label_smoothing)
  grad_fn = jax.jit(jax.grad(loss_fn, has_aux=True), static_argnums=4)

  net = torch_airbench(params, config.model.widths, args.gelu)
  norm_biases = [m.bias for m in net if isinstance(m, torch.nn.BatchNorm2d)]
  others = [q for q in net.parameters() if q.requires_grad and all(q is not b for b in norm_biases)]
  opt = torch.optim.SGD([dict(params=norm_biases, lr=lr * bias_scaler,
                              weight_decay=wd / bias_scaler),
                         dict(params=others, lr=lr, weight_decay=wd)],
                        momentum=momentum, nesterov=True)
  for group in opt.param_groups:
    group["initial_lr"] = group["lr"]
  total = args.steps
  lr_schedule = np.interp(np.arange(1 + total), [0, int(0.23 * total), total], [0.2, 1, 0.07])
  alpha_schedule = 0.95 ** 5 * (np.arange(total + 1) / total) ** 3
  ema = {k: v.clone() for k, v in net.state_dict().items()}

  def torch_params(sd=None):
    """The PyTorch net's parameters (or ``sd``: e.g. their gradients) under the JAX names."""
    sd = net.state_dict() if sd is None else sd
    out = {}
    for i in range(len(config.model.widths)):
      base = 2 + 7 * i
      out[f"ConvGroup_{i}/Conv_0/kernel"] = sd[f"{base}.weight"].numpy().transpose(2, 3, 1, 0)
      out[f"ConvGroup_{i}/Conv_1/kernel"] = sd[f"{base + 4}.weight"].numpy().transpose(2, 3, 1, 0)
      out[f"ConvGroup_{i}/BatchNorm_0/bias"] = sd[f"{base + 2}.bias"].numpy()
      out[f"ConvGroup_{i}/BatchNorm_1/bias"] = sd[f"{base + 5}.bias"].numpy()
    out["head/kernel"] = sd[f"{2 + 7 * len(config.model.widths) + 2}.weight"].numpy().T
    out["whiten/bias"] = sd["0.bias"].numpy()
    return out

  def rel(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))

  x0 = torch.from_numpy(np.asarray(preprocess(images[:batch]), np.float64).transpose(0, 3, 1, 2))
  with torch.no_grad():
    torch_logits = net(x0).numpy() / 9
  jax_logits = model.apply({"params": params, **state},
                           preprocess(images[:batch]).astype(jnp.float64), train=True,
                           mutable=["batch_stats"])[0]
  report = {"gelu_torch": args.gelu, "batch": batch, "steps": total,
            "logits_rel_diff_at_init": rel(np.asarray(jax_logits), torch_logits), "per_step": []}
  print(f"logits at init: max relative difference {report['logits_rel_diff_at_init']:.2e}")
  for step in range(total):
    sl = slice(step * batch, (step + 1) * batch)
    # JAX: one trainer step.
    grads, (state, _) = grad_fn(params, state, {"image": images[sl], "label": labels[sl]},
                                jax.random.PRNGKey(step), True)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # PyTorch: airbench94's step.
    for group in opt.param_groups:
      group["lr"] = group["initial_lr"] * lr_schedule[step]
    x = torch.from_numpy(np.asarray(preprocess(images[sl]), np.float64).transpose(0, 3, 1, 2))
    loss = F.cross_entropy(net(x) / 9, torch.from_numpy(labels[sl].astype(np.int64)),
                           label_smoothing=o.label_smoothing, reduction="none").sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if step == 0:  # The first gradients, before any optimiser difference can enter.
      sd_grads = {k: q.grad for k, q in net.named_parameters() if q.grad is not None}
      jax_grads = {path_name(path): np.asarray(v) * batch
                   for path, v in jax.tree_util.tree_leaves_with_path(grads)}
      g = {name: rel(jax_grads[name], value) for name, value in
           torch_params(sd_grads).items()}
      report["first_gradient_max_rel_diff"] = max(g.values())
      report["first_gradient_rel_diff"] = g
      print(f"first gradients: max relative difference {max(g.values()):.2e} "
            f"({max(g, key=g.get)})")
    opt.step()
    if (step + 1) % 5 == 0:
      with torch.no_grad():
        for k, v in net.state_dict().items():
          if v.dtype.is_floating_point:
            ema[k].lerp_(v, 1 - alpha_schedule[step + 1])
            v.copy_(ema[k])
    flat = {path_name(path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(params)}
    diffs = {name: rel(flat[name], value) for name, value in torch_params().items()}
    worst = max(diffs, key=diffs.get)
    report["per_step"].append({"step": step + 1, "max_rel_diff": diffs[worst], "where": worst})
    print(f"step {step + 1}: largest relative parameter difference {diffs[worst]:.2e} ({worst})")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report | {"command": args.command}, f, indent=1)
  return report


if __name__ == "__main__":
  main()
