"""Style-transfer step speed: the jitted JAX/optax step against a PyTorch peer, same run.

    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.style_speed [--sizes=256,512] [--repeats=5]

One iteration = the total loss (content + Gram style + TV on VGG16 activations), its gradient
with respect to the image, and an Adam update of the image: what ``playbook.stylize`` does per
Adam step. The PyTorch peer computes the same losses on the same network with the same ImageNet
weights (read once by ``playbook.weights.load_vgg`` and copied into ``torch.nn.Conv2d``), the
backbone frozen (``requires_grad=False``), both networks truncated after the deepest layer used
(block5_conv1). The two sides are timed alternately, several repeats, and the JSON in
``benchmarks/results/style_speed.json`` reports iterations/s per repeat and the median ratio.
Before timing, both sides' losses at the same image are compared (relative difference). Each
timed call first waits for a quiet machine (``--quiet``, ``--max_wait``; the ``Machine`` of
``benchmarks/train_throughput.py``) and records how many cores other processes used meanwhile.

The arithmetic is counted too (``iteration_gflop``: the forward convolutions up to the deepest
layer used, the same again for their input gradients, and the Gram matrices with their
gradients), so each side's rate is also given in GFLOP/s and as a fraction of this machine's fp32
matmul rate, measured in the same run (``jnp.dot`` and ``torch.mm`` of 2048x2048 matrices). That
rate is a yardstick, not a ceiling: oneDNN's convolutions can beat it (``conv_rate_probe``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.train_throughput import Machine, matmul_roofline
from playbook import images, rundir, stylize
from playbook.models import vgg

RESULTS = Path(__file__).resolve().parent / "results" / "style_speed.json"


# ---------------------------------------------------------------------------- the PyTorch peer
def torch_peer(params: dict, config, content_bgr: np.ndarray, style_bgr: np.ndarray):
  """(step, loss_at) for the same objective in PyTorch: step() does one Adam iteration."""
  import torch
  import torch.nn.functional as F

  layers = sorted(set(config.loss.content_layers) | set(config.loss.style_layers))
  deepest = max(vgg.conv_layer_names(16).index(n) for n in layers)
  convs = []
  for name in vgg.conv_layer_names(16)[:deepest + 1]:
    kernel = np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1)  # HWIO -> OIHW.
    conv = torch.nn.Conv2d(kernel.shape[1], kernel.shape[0], 3, padding=1)
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel))
    conv.bias.data = torch.from_numpy(np.asarray(params[name]["bias"]))
    conv.requires_grad_(False)
    convs.append((name, conv))

  def features(x):
    out = {}
    for name, conv in convs:
      if name.endswith("_conv1") and not name.startswith("block1"):
        x = F.max_pool2d(x, 2, 2)
      x = F.relu(conv(x))
      if name in layers:
        out[name] = x
    return out

  def gram(f):
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)

  to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
  with torch.no_grad():
    content_t = {k: v for k, v in features(to_nchw(content_bgr)).items()
                 if k in config.loss.content_layers}
    style_t = {k: gram(v) for k, v in features(to_nchw(style_bgr)).items()
               if k in config.loss.style_layers}
  loss_cfg = config.loss

  def loss_at(x):
    feats = features(x)
    content = sum(w * torch.mean((feats[k] - content_t[k]) ** 2)
                  for k, w in loss_cfg.content_layers.items())
    style = sum(w * torch.mean((gram(feats[k]) - style_t[k]) ** 2)
                for k, w in loss_cfg.style_layers.items())
    tv = (torch.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
          + torch.mean((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2))
    return (loss_cfg.content_weight * content + loss_cfg.style_weight * style
            + loss_cfg.tv_weight * tv)

  image = to_nchw(content_bgr).clone().requires_grad_(True)
  optimizer = torch.optim.Adam([image], lr=config.optim.learning_rate)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_at(image)
    loss.backward()
    optimizer.step()
    return loss

  return step, lambda x: float(loss_at(to_nchw(x)))


# ---------------------------------------------------------------------------- the JAX side
def jax_side(params: dict, config, content_bgr: np.ndarray, style_bgr: np.ndarray):
  objective = stylize.make_objective(config)
  optimizer = stylize.make_optimizer(config.optim)
  step_fn = stylize.make_step(objective, optimizer, lbfgs=False)
  params = jax.device_put(params)
  targets = jax.jit(objective.targets)(params, jnp.asarray(content_bgr), jnp.asarray(style_bgr))
  state = {"image": jnp.array(content_bgr)}
  state["opt"] = stylize.fresh_state(optimizer.init(state["image"]))

  def step():
    state["image"], state["opt"], loss = step_fn(state["image"], state["opt"], params, targets)
    return loss

  loss_at = jax.jit(objective)
  return step, lambda x: float(loss_at(params, jnp.asarray(x), targets))


def iteration_gflop(config, height: int, width: int) -> float:
  """GFLOP of one iteration: the VGG convolutions (3x3, SAME) up to the deepest layer the losses
  use, twice (forward, and the gradient to their input: the image is what is optimised; no kernel
  gradients), plus each style layer's Gram matrix (forward and gradient, one (HW x C) x (C x C)
  product each). Biases, ReLUs, pools and the Adam update are left out (a few percent)."""
  used = set(config.loss.content_layers) | set(config.loss.style_layers)
  names = vgg.conv_layer_names(config.backbone.depth)
  deepest = max(names.index(n) for n in used)
  flops, c_in, h, w = 0, 3, height, width
  for b, (convs, width_out) in enumerate(zip(vgg._block_depths(config.backbone.depth),
                                             vgg.BLOCK_WIDTHS)):
    for i in range(convs):
      name = f"block{b + 1}_conv{i + 1}"
      if names.index(name) > deepest:
        return flops / 1e9
      flops += 2 * (2 * h * w * 9 * c_in * width_out)
      if name in config.loss.style_layers:
        flops += 2 * (2 * h * w * width_out * width_out)
      c_in = width_out
    h, w = h // 2, w // 2
  return flops / 1e9


def iterations_per_second(machine: Machine, step, n: int, block, loads: list) -> float:
  """Iterations/s of ``n`` calls of ``step``, timed once the machine is quiet; the cores other
  processes used meanwhile go to ``loads``."""
  def run():
    for _ in range(n):
      out = step()
    block(out)
  seconds, other_cores = machine.time(run)
  loads.append(other_cores)
  return n / seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="256,512")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="Iterations per timed repeat.")
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="torch.set_num_threads for the peer (0: PyTorch's default).")
  parser.add_argument("--torch_1thread_column", action="store_true",
                      help="Also time the peer on 1 thread, interleaved (busy machines).")
  parser.add_argument("--quiet", type=float, default=0.2,
                      help="Cores other processes may use for a timed call to count as quiet.")
  parser.add_argument("--max_wait", type=float, default=60.0,
                      help="Most seconds to wait for a quiet machine before each timed call.")
  parser.add_argument("--conv_impl", default="xla", choices=("xla", "winograd"),
                      help="The JAX side's VGG convolutions (config.backbone.conv_impl).")
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args()
  import torch
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)

  config = stylize.default_config()
  config.optim.name = "adam"
  config.backbone.conv_impl = args.conv_impl
  params = stylize.load_backbone_params(config)
  data = Path(os.environ["PLAYBOOK_DATA_DIR"]) / "style"
  content = images.load_image(data / "tubingen.jpg")
  style = images.load_image(data / "starry_night.jpg")
  machine = Machine(args.quiet, args.max_wait)
  roofline = matmul_roofline(machine, [2048], max(args.repeats, 5))["2048"]
  peak = {side: roofline[side]["best_per_s"] for side in ("jax", "torch")}  # GFLOP/s, best call.
  print(f"fp32 matmul 2048x2048: JAX {peak['jax']:.1f}, PyTorch {peak['torch']:.1f} GFLOP/s")
  rows = []
  for size in (int(s) for s in args.sizes.split(",")):
    content_bgr = np.asarray(vgg.preprocess(images.resize(content, size)[None]))
    style_bgr = np.asarray(vgg.preprocess(images.resize(style, size)[None]))
    jax_step, jax_loss = jax_side(params, config, content_bgr, style_bgr)
    torch_step, torch_loss = torch_peer(params, config, content_bgr, style_bgr)
    probe = content_bgr + np.random.default_rng(0).normal(0, 10, content_bgr.shape)
    probe = probe.astype(np.float32)
    loss_jax, loss_torch = jax_loss(probe), torch_loss(probe)
    jax_step().block_until_ready()  # Compile, and one warm step each.
    torch_step()
    jax_ips, torch_ips, torch1_ips, loads = [], [], [], []
    threads = torch.get_num_threads()
    for _ in range(args.repeats):  # Alternate the sides: all see the same machine load.
      jax_ips.append(iterations_per_second(machine, jax_step, args.steps,
                                           lambda o: o.block_until_ready(), loads))
      torch_ips.append(iterations_per_second(machine, torch_step, args.steps, lambda o: None,
                                             loads))
      if args.torch_1thread_column:  # The peer on one thread: faster when the cores are busy.
        torch.set_num_threads(1)
        torch1_ips.append(iterations_per_second(machine, torch_step, args.steps, lambda o: None,
                                                loads))
        torch.set_num_threads(threads)
    ratios = [j / t for j, t in zip(jax_ips, torch_ips)]
    row = {"size": list(content_bgr.shape[1:3]), "jax_it_per_s": jax_ips,
           "torch_it_per_s": torch_ips, "ratio_per_repeat": ratios,
           "median_ratio": statistics.median(ratios),
           "other_cores_busy_per_call": [None if v is None else round(v, 3) for v in loads],
           "quiet_calls": f"{sum(v is not None and v < args.quiet for v in loads)}/{len(loads)}",
           "loss_rel_diff": abs(loss_jax - loss_torch) / abs(loss_torch)}
    gflop = iteration_gflop(config, *content_bgr.shape[1:3])
    jax_gflops = statistics.median(jax_ips) * gflop
    torch_gflops = statistics.median(torch_ips) * gflop
    row.update(iteration_gflop=gflop, jax_gflops=jax_gflops, torch_gflops=torch_gflops,
               jax_fraction_of_matmul_peak=jax_gflops / peak["jax"],
               torch_fraction_of_matmul_peak=torch_gflops / peak["torch"])
    if torch1_ips:
      row["torch_1thread_it_per_s"] = torch1_ips
      row["median_ratio_vs_best_peer"] = statistics.median(
          j / max(t, t1) for j, t, t1 in zip(jax_ips, torch_ips, torch1_ips))
    rows.append(row)
    print(f"{size:4d} px {tuple(row['size'])}: JAX {statistics.median(jax_ips):.2f} it/s, "
          f"PyTorch {statistics.median(torch_ips):.2f} it/s, median ratio "
          f"{row['median_ratio']:.2f}x (loss rel. diff {row['loss_rel_diff']:.1e}); "
          f"{gflop:.1f} GFLOP per iteration: JAX {jax_gflops:.0f}, PyTorch {torch_gflops:.0f} "
          f"GFLOP/s; quiet calls {row['quiet_calls']}"
          + (f"; PyTorch 1 thread {statistics.median(torch1_ips):.2f} it/s, ratio to the faster "
             f"peer {row['median_ratio_vs_best_peer']:.2f}x" if torch1_ips else ""))
  results = {"benchmark": "style_speed", "bar": ">= 1.3x the PyTorch peer",
             "iteration": "loss + image gradient + Adam update, VGG16 to block5_conv1",
             "matmul_gflops": peak, "rows": rows, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "jax_conv_impl": args.conv_impl,
             # glibc malloc settings change the page faults XLA's buffers take (winograd_probe).
             "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
             "xla_flags": os.environ.get("XLA_FLAGS", ""), "environment": rundir.environment()}
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
