"""The trainer's jitted epoch for a classify study, as the benchmarks time it.

``JaxModel`` makes what ``classify.train`` and ``fit`` make: the learner of
``classify.flax_learner`` (model, loss, optimiser; one per batch size; ``scratch.make_learner``'s
hand-derived one for a scratch study), the state from
``loop.init_states(..., mesh)``, the rows placed by ``parallel.shard_rows`` on
``parallel.make_mesh()``, and ``loop.make_train_epoch`` (a ``lax.scan`` of the train step,
state donated, vmapped over seeds when there are several). Augmentation is off. Used by
``train_throughput`` (also ``vmap_comparison``), ``cifar_throughput`` and ``step_profile``.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

import jax
import numpy as np

from benchmarks.harness import NUM_CLASSES, Machine, summarise, timed_rounds
from playbook import parallel
from playbook.tasks import classify, scratch
from playbook.train import loop, steps


def study_config(spec: str):
  """The config of ``experiments/<study>.py[:arg]`` (or ``<study>[:arg]``)."""
  path, _, arg = spec.partition(":")
  return importlib.import_module(f"experiments.{Path(path).stem}").get_config(arg)


class JaxModel:
  """One classify study's learner, state and jitted epoch (or per-step functions)."""

  def __init__(self, name: str, config, train_x: np.ndarray, train_y: np.ndarray):
    self.name, self.config = name, config
    self.train_x, self.train_y = train_x, train_y
    self.mesh = parallel.make_mesh(config.parallel.fsdp)
    self._fns = {}

  def learner(self, batch_size: int) -> classify.Learner:
    """One per batch size (the optimiser is static in the state: jitted functions key on it)."""
    if ("learner", batch_size) not in self._fns:
      config = self.config.copy_and_resolve_references()
      config.train.batch_size = batch_size
      make_learner = scratch.make_learner if config.task == "scratch" else classify.flax_learner
      self._fns["learner", batch_size] = make_learner(
          config, NUM_CLASSES, self.train_x, len(self.train_y) // batch_size)
    return self._fns["learner", batch_size]

  def train_step(self, batch_size: int):
    learner = self.learner(batch_size)
    return learner.train_step or steps.make_train_step(learner.loss_fn)

  def data(self, num_examples: int) -> parallel.RowSharded:
    """The first ``num_examples`` real training images and labels, on the devices."""
    return parallel.shard_rows({"image": self.train_x[:num_examples],
                                "label": self.train_y[:num_examples]}, self.mesh)

  def state(self, batch_size: int, seed: int = 0, num_seeds: int = 1):
    learner = self.learner(batch_size)
    return loop.init_states(learner.init_fn, learner.tx, seed, num_seeds, self.mesh)

  def epoch_fn(self, batch_size: int, num_examples: int, num_seeds: int = 1):
    """``fit``'s jitted epoch ``(state, data, epoch) -> (state, metrics)``."""
    key = ("epoch", batch_size, num_examples, num_seeds)
    if key not in self._fns:
      self._fns[key] = loop.make_train_epoch(
          self.state(batch_size, 0, num_seeds), train_step=self.train_step(batch_size),
          batch_size=batch_size, num_examples=num_examples, mesh=self.mesh, num_seeds=num_seeds,
          augment_fn=None)
    return self._fns[key]

  def step_fns(self, batch_size: int, num_examples: int):
    """Per-step dispatch: ``shuffle(rng, epoch) -> (batches, key)`` and
    ``step(state, data, batches, i, key)``, each jitted; the same batches and keys as the
    scanned epoch derives from the state."""
    key = ("step", batch_size, num_examples)
    if key not in self._fns:
      train_step = self.train_step(batch_size)

      @jax.jit
      def shuffle(rng, epoch):
        shuffle_rng, steps_rng = jax.random.split(jax.random.fold_in(rng, epoch))
        return steps.epoch_batches(shuffle_rng, num_examples, batch_size), steps_rng

      @functools.partial(jax.jit, donate_argnums=(0,))
      def step(state, data, batches, i, steps_rng):
        batch = {k: v[batches[i]] for k, v in data.items()}
        _, step_rng = jax.random.split(jax.random.fold_in(steps_rng, i))
        return train_step(state, batch, step_rng)

      self._fns[key] = (shuffle, step)
    return self._fns[key]


def run_jax_scan(fn, state, data: dict, epoch: int):
  """One call of a jitted epoch, waited for; returns the new state."""
  state, metrics = fn(state, data, epoch)
  jax.block_until_ready((state, metrics))
  return state


def run_jax_dispatch(shuffle, step, state, data: dict, epoch: int, num_steps: int):
  """``num_steps`` steps dispatched from Python, one jitted call each; returns the new state."""
  batches, steps_rng = shuffle(state.rng, epoch)
  metrics = None
  for i in range(num_steps):
    state, metrics = step(state, data, batches, i, steps_rng)
  jax.block_until_ready((state, metrics))
  return state


def vmap_comparison(jm: JaxModel, machine: Machine, *, batch_size: int, num_seeds: int,
                    steps: int, repeats: int, deadline: float) -> dict:
  """Examples/s of the seed-vmapped epoch (``fit`` with ``num_seeds``) against the one-seed epoch
  run once per seed, ``repeats`` quiet calls each (``repeats`` >= 1), interleaved."""
  bs, k = batch_size, num_seeds
  n_steps = min(steps, len(jm.train_y) // bs)
  rows = jm.data(n_steps * bs)
  fn_k, fn_1 = jm.epoch_fn(bs, rows.num_examples, k), jm.epoch_fn(bs, rows.num_examples, 1)
  live = {"vmapped": run_jax_scan(fn_k, jm.state(bs, 0, k), rows.arrays, 0),
          "sequential": [run_jax_scan(fn_1, jm.state(bs, s, 1), rows.arrays, 0)
                         for s in range(k)]}

  def run_vmapped(epoch):
    live["vmapped"] = run_jax_scan(fn_k, live["vmapped"], rows.arrays, epoch)

  def run_sequential(epoch):
    live["sequential"] = [run_jax_scan(fn_1, s, rows.arrays, epoch) for s in live["sequential"]]

  samples, = timed_rounds(machine, [{"vmapped": run_vmapped, "sequential": run_sequential}],
                          repeats=repeats, max_rounds=3 * repeats, deadline=deadline)
  entry = {"batch_size": bs, "num_seeds": k, "steps_per_seed": n_steps}
  for label, s in samples.items():
    entry[label] = summarise(s, k * n_steps * bs, machine.quiet)
    entry[label]["examples_per_s"] = entry[label].pop("per_s")
    entry[label]["best_examples_per_s"] = entry[label].pop("best_per_s")
  v, s = entry["vmapped"], entry["sequential"]
  entry["speedup_vmapped_over_sequential"] = v["examples_per_s"] / s["examples_per_s"]
  print(f"{jm.name:12s} vmap {k} seeds batch {bs}: {v['examples_per_s']:.0f} examples/s vmapped "
        f"vs {s['examples_per_s']:.0f} sequential "
        f"({entry['speedup_vmapped_over_sequential']:.2f}x; quiet calls "
        f"{v['quiet_calls']}/{v['calls']}, {s['quiet_calls']}/{s['calls']})", flush=True)
  return entry
