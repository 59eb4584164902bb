"""Training-step throughput of the CIFAR-10 nets: JAX (the trainer's own epoch) vs PyTorch peers.

    PLAYBOOK_DATA_DIR=/path/to/data .venv/bin/python -m benchmarks.cifar_throughput
    # -> benchmarks/results/cifar_throughput.json

Columns, per model (``experiments/cifar10_cnn.py``'s seed CNN, ``cifar10_fast.py``'s
airbench-style net), at ``--batch_size`` (128):

* ``jax_fast``: ``loop.make_train_epoch`` (what ``fit`` runs: a jitted ``lax.scan`` of
  ``train_step``, state donated) with the study's model, loss and optimiser, convolutions with the
  matmul weight gradient (``playbook/models/fast_conv.py``, ``model.fast_conv=True``, the
  default).
* ``jax_xla``: the same with ``model.fast_conv=False``: XLA's own convolution gradients (what
  ``nn.Conv`` gives; the "naive" Flax version).
* ``torch``: a PyTorch 2.13 peer of the same architecture, optimiser and loss (eager, default
  threads, NCHW), indexing shuffled uint8 batches from memory and standardising them per step.

Augmentation is off on both sides (the step, not the data pipeline, is compared). The JAX side
is ``benchmarks/jax_epoch.py``'s ``JaxModel``; the timing machinery (quiet gating on a shared
machine, interleaved rotating rounds, medians) is ``benchmarks/harness.py``'s. XLA flags are
process-wide: compare them by running this script under different ``XLA_FLAGS`` (the JSON
records them).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

import numpy as np

from benchmarks import harness
from benchmarks.harness import Machine, positive_int, summarise, timed_rounds
from benchmarks.jax_epoch import JaxModel, run_jax_scan
from playbook.data import cifar10

MODELS = {"seed_cnn": "cifar10_cnn", "fast_resnet": "cifar10_fast"}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="seed_cnn,fast_resnet")
  p.add_argument("--columns", default="jax_fast,jax_xla,torch")
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--steps", default="20,4", help="Steps per timed call, one per model.")
  p.add_argument("--repeats", type=positive_int, default=5)
  p.add_argument("--max_rounds", type=int, default=0, help="Default: 2 * repeats.")
  p.add_argument("--quiet", type=float, default=0.2)
  p.add_argument("--max_wait", type=float, default=10.0)
  p.add_argument("--time_budget", type=float, default=420.0)
  p.add_argument("--source", default="files", help="cifar10 data source (files/official/tfds).")
  p.add_argument("--out", default="benchmarks/results/cifar_throughput.json")
  return p.parse_args(argv)


class TorchPeer:
  """The same network in PyTorch (eager), its optimiser and loss; one call runs ``n`` steps."""

  def __init__(self, name: str, config, train_x: np.ndarray, train_y: np.ndarray):
    import torch
    from torch import nn
    self.torch = torch
    torch.manual_seed(0)
    m = config.model
    if name == "seed_cnn":
      layers, c = [], 3
      for w in m.widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3), nn.ReLU(),
                   nn.MaxPool2d(2), nn.Dropout(m.conv_dropout)]
        c = w
      layers += [nn.Flatten(), nn.LazyLinear(m.hidden), nn.ReLU(), nn.Dropout(m.dropout),
                 nn.Linear(m.hidden, 10)]
      self.model = nn.Sequential(*layers)
    else:
      def bn(w):
        b = nn.BatchNorm2d(w, momentum=1 - m.bn_momentum, eps=1e-12)
        b.weight.requires_grad = False  # No trained scale, as the JAX net (and airbench).
        return b

      layers, c = [nn.Conv2d(3, 24, 2), nn.GELU()], 24
      layers[0].weight.requires_grad = False  # The fixed whitening layer.
      for w in m.widths:
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.MaxPool2d(2), bn(w), nn.GELU(),
                   nn.Conv2d(w, w, 3, padding=1, bias=False), bn(w), nn.GELU()]
        c = w
      layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, 10, bias=False)]
      self.model = nn.Sequential(*layers)
    self.model.train()
    self.model(torch.zeros(2, 3, 32, 32))  # Materialise the lazy layer.
    self.scale = 1.0 if name == "seed_cnn" else 1 / 9
    self.label_smoothing = config.optim.label_smoothing
    params = [p for p in self.model.parameters() if p.requires_grad]
    o = config.optim
    lr = o.learning_rate * (128 / o.base_batch_size if o.lr_scaling == "linear" else 1.0)
    if o.name == "adamw":
      self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay)
    else:
      self.opt = torch.optim.SGD(params, lr=lr, momentum=o.momentum, nesterov=True,
                                 weight_decay=o.weight_decay)
    self.lookahead = o.get("lookahead_every", 0)
    if self.lookahead:
      self.slow = [p.detach().clone() for p in params]
      self.params, self.alpha, self.count = params, o.lookahead_step_size, 0
    self.x = torch.from_numpy(np.ascontiguousarray(train_x.transpose(0, 3, 1, 2)))  # uint8 NCHW
    self.y = torch.from_numpy(train_y.astype(np.int64))
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in
                 (config.data.mean, config.data.std))
    self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)

  def run_epoch(self, batch_size: int, num_steps: int):
    torch, F = self.torch, self.torch.nn.functional
    order = torch.randperm(num_steps * batch_size)
    for i in range(num_steps):
      idx = order[i * batch_size:(i + 1) * batch_size]
      x = (self.x[idx].float() / 255.0 - self.mean) / self.std
      loss = F.cross_entropy(self.model(x) * self.scale, self.y[idx],
                             label_smoothing=self.label_smoothing)
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
      if self.lookahead:
        self.count += 1
        if self.count % self.lookahead == 0:
          with torch.no_grad():
            for s, p in zip(self.slow, self.params):
              s.add_(p - s, alpha=self.alpha)
              p.copy_(s)
    return float(loss.detach())


def main(argv=None) -> dict:
  args = parse_args(argv)
  models = [m for m in args.models.split(",") if m]
  columns = [c for c in args.columns.split(",") if c]
  step_counts = [int(s) for s in args.steps.split(",")]
  step_counts = dict(zip(models, step_counts * len(models) if len(step_counts) == 1
                         else step_counts))
  bs = args.batch_size
  machine = Machine(args.quiet, args.max_wait)
  started, load_before = time.perf_counter(), os.getloadavg()
  deadline = started + args.time_budget

  cells = []
  for name in models:
    config = importlib.import_module(f"experiments.{MODELS[name]}").get_config()
    config.data.source = args.source
    data = cifar10.load(config.data).train
    n = step_counts[name] * bs
    cell = {"name": name, "steps": step_counts[name], "compile_seconds": {}, "live": {},
            "fns": {}}
    for column in columns:
      t0 = time.perf_counter()
      if column == "torch":
        peer = TorchPeer(name, config, data.x[:n], data.y[:n])
        peer.run_epoch(bs, min(2, step_counts[name]))  # Warm-up.
        cell["fns"][column] = lambda _round, peer=peer, n=step_counts[name]: peer.run_epoch(bs, n)
      else:
        cfg = config.copy_and_resolve_references()
        cfg.model.fast_conv = column == "jax_fast"
        jm = JaxModel(name, cfg, data.x[:n], data.y[:n])
        rows = jm.data(n)
        epoch_fn = jm.epoch_fn(bs, rows.num_examples)
        cell["live"][column] = run_jax_scan(epoch_fn, jm.state(bs), rows.arrays, 0)

        def call(epoch, column=column, epoch_fn=epoch_fn, arrays=rows.arrays, live=cell["live"]):
          live[column] = run_jax_scan(epoch_fn, live[column], arrays, epoch)

        cell["fns"][column] = call
      cell["compile_seconds"][column] = time.perf_counter() - t0
    print(f"warm-up {name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in
                                          cell["compile_seconds"].items()), flush=True)
    cells.append(cell)

  all_samples = timed_rounds(machine, [cell["fns"] for cell in cells], repeats=args.repeats,
                             max_rounds=args.max_rounds or 2 * args.repeats, deadline=deadline)
  results = {}
  for cell, samples in zip(cells, all_samples):
    row = {"steps_per_call": cell["steps"], "compile_and_first_call_seconds":
           cell["compile_seconds"]}
    for column, column_samples in samples.items():
      s = summarise(column_samples, cell["steps"], args.quiet)
      s["steps_per_s"], s["best_steps_per_s"] = s.pop("per_s"), s.pop("best_per_s")
      row[column] = s
    if "torch" in row:
      for column in columns:
        if column != "torch":
          row[f"ratio_{column}_over_torch"] = (row[column]["steps_per_s"]
                                               / row["torch"]["steps_per_s"])
          # Ratio of calls made back to back in the same round: robust to slow drifts in load.
          pairs = [b[0] / a[0] for a, b in zip(samples[column], samples["torch"])]
          row[f"ratio_{column}_over_torch_paired_median"] = harness.median(pairs)
    results[cell["name"]] = row
    print(f"{cell['name']:12s} batch {bs}: " + ", ".join(
        f"{c} {row[c]['steps_per_s']:.2f}" for c in columns) + " steps/s; " + ", ".join(
        f"{k} {v:.2f}x" for k, v in row.items() if k.startswith("ratio_")) +
        "; quiet calls " + " ".join(f"{row[c]['quiet_calls']}/{row[c]['calls']}"
                                    for c in columns), flush=True)

  bar = None
  if "seed_cnn" in results and "ratio_jax_fast_over_torch" in results["seed_cnn"]:
    ratio = results["seed_cnn"]["ratio_jax_fast_over_torch"]
    bar = {"criterion": f"seed CNN at batch {bs}: jax_fast >= 1.5x torch", "ratio": ratio,
           "met": bool(ratio >= 1.5)}
  out = {
      "command": harness.command("benchmarks.cifar_throughput", argv),
      "data": cifar10.COPIES[args.source],
      "environment": harness.environment(),
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
      "seconds_waiting_for_quiet": machine.waited,
      "total_seconds": time.perf_counter() - started,
      "settings": vars(args),
      "results": results, "bar": bar,
  }
  harness.write_json(args.out, out)
  print(f"bar: {bar}; wrote {args.out}", flush=True)
  return out


if __name__ == "__main__":
  main()
