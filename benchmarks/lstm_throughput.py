"""Char-LSTM training throughput (tokens/s): the trainer's JAX path vs PyTorch ``nn.LSTM``.

    PLAYBOOK_DATA_DIR=/path/to/data python -m benchmarks.lstm_throughput
    # -> benchmarks/results/lstm_throughput.json

Both sides train the same network on the same real Anna Karenina streams (2 layers x 512, dropout
0.5 between layers and before the output, 83 symbols, sequences of 100, batch 128, the (h, c)
state carried from batch to batch), Adam with gradient clipping at global norm 5:

* ``jax_unroll<k>``: the trainer's path: ``loop.make_train_epoch(shuffle=False,
  carry_state=True)``, what ``fit`` runs for ``experiments/char_lstm.py``, with the model
  (``models.build``), loss and optimiser of ``playbook.tasks.char_lm`` (``lax.scan`` LSTM, input
  projections hoisted out of the scan, the four gates in one matmul) and
  ``lax.scan(unroll=k)``. One timed call is one "epoch" of ``--steps`` steps.
* ``torch``: ``nn.LSTM(83, 512, num_layers=2, dropout=0.5, batch_first=True)`` on one-hot inputs
  (the seed notebook's model), ``nn.Dropout(0.5)``, ``nn.Linear(512, 83)``, ``torch.optim.Adam``,
  ``clip_grad_norm_(5)``, the hidden state detached between batches; eager, default threads.

Calls are interleaved in a rotating order, each after waiting for a quiet machine
(``benchmarks/harness.py``); figures are medians of quiet calls (else of all calls). Also
measured: the sampler's characters/s (``char_lm.make_sampler``: the prime, then a ``lax.scan`` of
``CharLSTM.step``), this machine's fp32 matmul peak, and the training FLOPs per token, to say how
close to the roofline each side runs.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.harness import (Machine, ints, matmul_roofline, median, positive_int, summarise,
                                timed_rounds)
from experiments.char_lstm import get_config
from playbook import models, parallel
from playbook.tasks import char_lm
from playbook.train import loop, steps


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--unrolls", default="1,4", help="lax.scan unroll factors to time.")
  p.add_argument("--steps", type=int, default=3, help="Training steps per timed call.")
  p.add_argument("--repeats", type=positive_int, default=5, help="Timed calls per column.")
  p.add_argument("--quiet", type=float, default=0.2,
                 help="Cores other processes may use for a call to count as quiet.")
  p.add_argument("--max_wait", type=float, default=10.0,
                 help="Most seconds to wait for a quiet machine before each call.")
  p.add_argument("--sample_length", type=int, default=2000, help="Characters per sampler call.")
  p.add_argument("--matmul_sizes", default="2048", help="Square fp32 matmuls for the peak.")
  p.add_argument("--out", default="benchmarks/results/lstm_throughput.json")
  return p.parse_args(argv)


def training_flops_per_token(vocab: int, hidden: int, layers: int) -> int:
  """Matmul FLOPs of one training token: 3x the forward (forward, input and weight gradients).

  Forward per token: the recurrent 2*H*4H per layer, the input projection 2*H*4H per layer but
  the first (a row lookup of W_x), and the output layer 2*H*V.
  """
  forward = layers * 2 * hidden * 4 * hidden + (layers - 1) * 2 * hidden * 4 * hidden
  return 3 * (forward + 2 * hidden * vocab)


class JaxSide:
  """``fit``'s jitted epoch for the char_lstm config with one unroll factor."""

  def __init__(self, config, vocab_size: int, train: dict, num_steps: int):
    self.mesh = parallel.make_mesh(config.parallel.fsdp)
    model = models.build(config.model, vocab_size, dtype=models.precision.compute_dtype(config))
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    rows = num_steps * batch_size
    self.data = parallel.shard_rows({k: v[:rows] for k, v in train.items()}, self.mesh)
    tx = char_lm.make_tx(config, num_steps)
    self.state = loop.init_states(char_lm.make_init_fn(model, batch_size, seq_len), tx,
                                  config.seed, 1, self.mesh)
    self.fn = loop.make_train_epoch(
        self.state, train_step=steps.make_train_step(char_lm.lm_loss(model)),
        batch_size=batch_size, num_examples=rows, mesh=self.mesh, shuffle=False, carry_state=True)
    self.epoch = 0
    self()  # Compile.

  def __call__(self, _round=None):
    self.state, metrics = self.fn(self.state, self.data.arrays, self.epoch)
    jax.block_until_ready((self.state, metrics))
    self.epoch += 1


def torch_char_rnn(m, vocab_size: int):
  """The seed notebook's CharRNN in PyTorch for the model config ``m``: one-hot inputs,
  ``nn.LSTM`` (cuDNN on a GPU) with dropout between layers, dropout, a linear read-out."""
  from torch import nn

  class CharRNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.lstm = nn.LSTM(vocab_size, m.hidden, m.num_layers, dropout=m.dropout,
                          batch_first=True)
      self.dropout = nn.Dropout(m.dropout)
      self.fc = nn.Linear(m.hidden, vocab_size)

    def forward(self, x, hidden):
      out, hidden = self.lstm(nn.functional.one_hot(x, vocab_size).float(), hidden)
      return self.fc(self.dropout(out)), hidden

  return CharRNN()


class TorchSide:
  """The seed notebook's CharRNN in PyTorch, trained on the same streams."""

  def __init__(self, config, vocab_size: int, train: dict, num_steps: int):
    import torch
    self.torch = torch
    torch.manual_seed(0)
    m = config.model
    self.model = torch_char_rnn(m, vocab_size).train()
    self.opt = torch.optim.Adam(self.model.parameters(), lr=config.optim.learning_rate)
    self.clip, self.vocab = config.optim.clip_norm, vocab_size
    b = config.train.batch_size
    rows = num_steps * b
    as_batches = lambda a: torch.from_numpy(a[:rows].astype(np.int64)).reshape(num_steps, b, -1)
    self.x, self.y = as_batches(train["inputs"]), as_batches(train["targets"])
    self.zeros = lambda: tuple(torch.zeros(m.num_layers, b, m.hidden) for _ in range(2))
    self()  # Warm-up.

  def __call__(self, _round=None):
    torch, F = self.torch, self.torch.nn.functional
    hidden = self.zeros()
    for x, y in zip(self.x, self.y):
      hidden = tuple(h.detach() for h in hidden)
      logits, hidden = self.model(x, hidden)
      loss = F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1))
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
      self.opt.step()


def main(argv=None) -> dict:
  args = parse_args(argv)
  config = get_config()
  vocab, train, _, _ = char_lm.prepare_data(config)
  tokens_per_call = args.steps * config.train.batch_size * config.data.seq_len
  machine = Machine(args.quiet, args.max_wait)

  sides = {}
  for unroll in ints(args.unrolls):
    config.model.unroll = unroll
    sides[f"jax_unroll{unroll}"] = JaxSide(config, len(vocab), train, args.steps)
  sides["torch"] = TorchSide(config, len(vocab), train, args.steps)

  names = list(sides)
  # Every column once per round (rotating order), exactly --repeats rounds: the per-round ratios
  # pair calls made back to back.
  samples, = timed_rounds(machine, [sides], repeats=args.repeats, max_rounds=args.repeats)

  columns = {n: summarise(s, tokens_per_call, args.quiet) for n, s in samples.items()}
  # Per-round ratios against the torch call of the same round, then their median.
  ratios = {n: median([t / j for (j, _), (t, _) in zip(samples[n], samples["torch"])])
            for n in names if n != "torch"}

  config.model.unroll = 1
  model = models.build(config.model, len(vocab))
  params = sides["jax_unroll1"].state.params
  sampler = char_lm.make_sampler(model, length=args.sample_length, temperature=0.8, top_k=5)
  prime = jnp.asarray(vocab.encode("Anna"))
  jax.block_until_ready(sampler(params, prime, jax.random.PRNGKey(0)))
  sample_s = [machine.time(lambda: jax.block_until_ready(
      sampler(params, prime, jax.random.PRNGKey(i)))) for i in range(3)]
  sampler_column = summarise(sample_s, args.sample_length, args.quiet)

  roofline = matmul_roofline(machine, ints(args.matmul_sizes), 3)
  flops = training_flops_per_token(len(vocab), config.model.hidden, config.model.num_layers)
  peak = max(v["jax"]["per_s"] for v in roofline.values()) * 1e9
  best_jax = max(ratios, key=ratios.get)
  result = {
      "what": "training tokens/s, 2x512 char-LSTM, seq 100, batch 128, Adam + clip 5, fp32",
      "tokens_per_call": tokens_per_call,
      "columns": columns,
      "ratio_vs_torch_median": ratios,
      "best_jax_column": best_jax,
      "bar": "jax >= 2x torch",
      # Contention slows the two sides unequally (torch's OpenMP threads suffer most), so the
      # bar only counts when every column has quiet calls; otherwise None (not measured).
      "bar_met": (ratios[best_jax] >= 2.0 if all(c["quiet_calls"] for c in columns.values())
                  else None),
      "sampler_chars_per_s": sampler_column,
      "training_gflop_per_token": flops / 1e9,
      "matmul_peak_gflop_s": peak / 1e9,
      "fraction_of_matmul_peak": {n: columns[n]["per_s"] * flops / peak for n in names},
      "matmul_roofline": roofline,
      "machine_waited_s": machine.waited,
      "command": harness.command("benchmarks.lstm_throughput", argv),
      "environment": harness.environment(),
  }
  out = harness.write_json(args.out, result)
  for n in names:
    print(f"{n}: {columns[n]['per_s']:.0f} tok/s ({columns[n]['quiet_calls']}/{args.repeats} "
          f"quiet), {100 * result['fraction_of_matmul_peak'][n]:.0f} % of the matmul peak"
          + (f", {ratios[n]:.2f}x torch" if n in ratios else ""))
  print(f"sampler: {sampler_column['per_s']:.0f} chars/s; results in {out}")
  return result


if __name__ == "__main__":
  main()
