"""Style-transfer step speed: the jitted JAX/optax step against a PyTorch peer, same run.

    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.style_speed [--sizes=256,512] [--repeats=5]

One iteration = the total loss (content + Gram style + TV on VGG16 activations), its gradient
with respect to the image, and an Adam update of the image: what ``playbook.stylize.optimize``
does per Adam step. The PyTorch peer computes the same losses on the same network with the same
ImageNet weights (read once by ``playbook.weights.load_vgg`` and copied into ``torch.nn.Conv2d``), the
backbone frozen (``requires_grad=False``), both networks truncated after the deepest layer used
(block5_conv1). The sides are timed in rounds (rotating order, ``harness.timed_rounds``), and
the JSON in ``benchmarks/results/style_speed.json`` reports iterations/s per round and the median
per-round ratio. Before timing, both sides' losses at the same image are compared (relative
difference). Each timed call first waits for a quiet machine (``--quiet``, ``--max_wait``; the
``Machine`` of ``benchmarks/harness.py``) and records how many cores other processes used.

The arithmetic is counted too (``iteration_gflop``: the forward convolutions up to the deepest
layer used, the same again for their input gradients, and the Gram matrices with their
gradients), so each side's rate is also given in GFLOP/s and as a fraction of this machine's fp32
matmul rate, measured in the same run (``jnp.dot`` and ``torch.mm`` of 2048x2048 matrices). That
rate is a yardstick, not a ceiling: oneDNN's convolutions can beat it (``conv_rate_probe``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.harness import Machine, matmul_roofline, median, positive_int, timed_rounds
from playbook.data.images import read_rgb
from playbook.models import vgg
from playbook.stylize import images, optimize
from playbook.tasks import stylize

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
  objective = optimize.make_objective(config)
  optimizer = optimize.pixel_optimizer(config.optim)
  step_fn = optimize.make_step(objective, optimizer, lbfgs=False)
  params = jax.device_put(params)
  targets = jax.jit(objective.targets)(params, jnp.asarray(content_bgr), jnp.asarray(style_bgr))
  state = {"image": jnp.array(content_bgr)}
  state["opt"] = optimize.fresh_state(optimizer.init(state["image"]))

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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="256,512")
  parser.add_argument("--repeats", type=positive_int, default=5)
  parser.add_argument("--steps", type=positive_int, default=5, help="Iterations per timed call.")
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

  config = stylize.base_config()
  config.optim.name = "adam"
  config.backbone.conv_impl = args.conv_impl
  params = optimize.load_backbone_params(config)
  data = Path(os.environ["PLAYBOOK_DATA_DIR"]) / "style"
  content = read_rgb(data / "tubingen.jpg").astype(np.float32)
  style = read_rgb(data / "starry_night.jpg").astype(np.float32)
  machine = Machine(args.quiet, args.max_wait)
  roofline = matmul_roofline(machine, [2048], max(args.repeats, 5))["2048"]
  peak = {side: roofline[side]["best_per_s"] for side in ("jax", "torch")}  # GFLOP/s, best call.
  print(f"fp32 matmul 2048x2048: JAX {peak['jax']:.1f}, PyTorch {peak['torch']:.1f} GFLOP/s")
  threads, rows = torch.get_num_threads(), []
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

    def run(step, block=lambda out: None, num_threads=None):
      def call(_round):
        if num_threads:
          torch.set_num_threads(num_threads)
        for _ in range(args.steps):
          out = step()
        block(out)
        torch.set_num_threads(threads)
      return call

    columns = {"jax": run(jax_step, lambda out: out.block_until_ready()), "torch": run(torch_step)}
    if args.torch_1thread_column:  # The peer on one thread: faster when the cores are busy.
      columns["torch_1thread"] = run(torch_step, num_threads=1)
    samples, = timed_rounds(machine, [columns], repeats=args.repeats, max_rounds=args.repeats)
    ips = {k: [args.steps / seconds for seconds, _ in v] for k, v in samples.items()}
    ratios = [j / t for j, t in zip(ips["jax"], ips["torch"])]
    loads = {k: [None if v is None else round(v, 3) for _, v in s] for k, s in samples.items()}
    quiet = sum(v is not None and v < args.quiet for s in loads.values() for v in s)
    row = {"size": list(content_bgr.shape[1:3]), "jax_it_per_s": ips["jax"],
           "torch_it_per_s": ips["torch"], "ratio_per_repeat": ratios,
           "median_ratio": median(ratios), "other_cores_busy_per_call": loads,
           "quiet_calls": f"{quiet}/{sum(map(len, loads.values()))}",
           "loss_rel_diff": abs(loss_jax - loss_torch) / abs(loss_torch)}
    gflop = iteration_gflop(config, *content_bgr.shape[1:3])
    jax_gflops, torch_gflops = median(ips["jax"]) * gflop, median(ips["torch"]) * gflop
    row.update(iteration_gflop=gflop, jax_gflops=jax_gflops, torch_gflops=torch_gflops,
               jax_fraction_of_matmul_peak=jax_gflops / peak["jax"],
               torch_fraction_of_matmul_peak=torch_gflops / peak["torch"])
    torch1 = ips.get("torch_1thread")
    if torch1:
      row["torch_1thread_it_per_s"] = torch1
      row["median_ratio_vs_best_peer"] = median(
          j / max(t, t1) for j, t, t1 in zip(ips["jax"], ips["torch"], torch1))
    rows.append(row)
    print(f"{size:4d} px {tuple(row['size'])}: JAX {median(ips['jax']):.2f} it/s, "
          f"PyTorch {median(ips['torch']):.2f} it/s, median ratio "
          f"{row['median_ratio']:.2f}x (loss rel. diff {row['loss_rel_diff']:.1e}); "
          f"{gflop:.1f} GFLOP per iteration: JAX {jax_gflops:.0f}, PyTorch {torch_gflops:.0f} "
          f"GFLOP/s; quiet calls {row['quiet_calls']}"
          + (f"; PyTorch 1 thread {median(torch1):.2f} it/s, ratio to the faster "
             f"peer {row['median_ratio_vs_best_peer']:.2f}x" if torch1 else ""))
  results = {"benchmark": "style_speed", "bar": ">= 1.3x the PyTorch peer",
             "iteration": "loss + image gradient + Adam update, VGG16 to block5_conv1",
             "matmul_gflops": peak, "rows": rows, "torch_threads": threads,
             "jax_conv_impl": args.conv_impl, "command": harness.command("benchmarks.style_speed"),
             # glibc malloc settings change the page faults XLA's buffers take (winograd_probe).
             "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
             "environment": harness.environment()}
  print(f"wrote {harness.write_json(args.out, results)}")


if __name__ == "__main__":
  main()
