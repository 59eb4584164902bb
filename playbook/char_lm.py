"""Character-level language modelling end to end: the glue of the char-LSTM study.

text -> vocabulary (saved as ``vocab.json``) -> 90/10 split by position -> parallel streams ->
``fit`` with the LSTM's (h, c) carried from batch to batch (truncated BPTT) -> learning curve,
a sample from the best checkpoint, ``results.json``. ``launch/sample.py`` reads the same run back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook import parallel, plots, rundir
from playbook.data import text as text_data
from playbook.data.paths import DataError
from playbook.models.lstm import CharLSTM, zero_carry
from playbook.train import fit, init_train_state
from playbook.train.checkpoint import Checkpoints
from playbook.train.optim import make_optimizer
from playbook.train.writer import MetricWriter

VOCAB_FILE = "vocab.json"


def build_model(cfg: ml_collections.ConfigDict, vocab_size: int) -> CharLSTM:
  return CharLSTM(vocab_size=vocab_size, hidden=cfg.hidden, num_layers=cfg.num_layers,
                  dropout=cfg.dropout, unroll=cfg.unroll)


def make_init_fn(model: CharLSTM, batch_size: int, seq_len: int):
  """init_fn(rng) -> (params, {'carry': zero (h, c) for ``batch_size`` streams})."""
  def init_fn(rng):
    carry = zero_carry(model.num_layers, batch_size, model.hidden)
    tokens = jnp.zeros((batch_size, seq_len), jnp.int32)
    params = model.init(rng, tokens, carry, train=False)["params"]
    return params, {"carry": {"h": carry[0], "c": carry[1]}}
  return init_fn


def lm_loss(model: CharLSTM):
  """Mean next-character cross-entropy in nats/char of ``batch = {'inputs', 'targets', [mask]}``.

  The incoming ``model_state['carry']`` is the state where the previous batch's streams stopped;
  the outgoing one is where these stop, with its gradient cut (truncated BPTT).
  """
  def loss_fn(params, model_state, batch, rng, train):
    carry = (model_state["carry"]["h"], model_state["carry"]["c"])
    logits, (h, c) = model.apply({"params": params}, batch["inputs"], carry, train=train,
                                 rngs={"dropout": rng} if train else {})
    targets = batch["targets"]
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    rows = batch.get("mask", jnp.ones(targets.shape[:1], jnp.float32))
    weights = jnp.broadcast_to(rows[:, None], targets.shape)
    mean = lambda v: jnp.sum(v * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    new_state = {"carry": jax.lax.stop_gradient({"h": h, "c": c})}
    return mean(xent), (new_state, {"xent": mean(xent), "accuracy": mean(correct)})
  return loss_fn


def sample_token(rng: jax.Array, logits: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """One draw from softmax(logits / temperature), restricted to the ``top_k`` best (0: all)."""
  logits = logits / temperature
  if top_k:
    values, indices = jax.lax.top_k(logits, top_k)
    return indices[jax.random.categorical(rng, values)]
  return jax.random.categorical(rng, logits)


def make_sampler(model: CharLSTM, *, length: int, temperature: float, top_k: int):
  """A jitted ``sample(params, prime_ids, rng) -> ids (length,)``.

  The prime runs through the model once (its state from zeros); then ``CharLSTM.step`` generates
  one character per ``lax.scan`` step, the state carried, each draw from its own folded-in key.
  """
  if length < 1:
    raise ValueError(f"length must be >= 1, got {length}.")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  if not 0 <= top_k <= model.vocab_size:
    raise ValueError(f"top_k must be in 0..{model.vocab_size} (0 = no cut), got {top_k}.")

  @jax.jit
  def sample(params, prime_ids, rng):
    variables = {"params": params}
    carry = zero_carry(model.num_layers, 1, model.hidden)
    logits, carry = model.apply(variables, prime_ids[None], carry, train=False)

    def body(logits_and_carry, i):
      logits, carry = logits_and_carry
      token = sample_token(jax.random.fold_in(rng, i), logits, temperature, top_k)
      logits, carry = model.apply(variables, token[None], carry, method=CharLSTM.step)
      return (logits[0], carry), token

    _, ids = jax.lax.scan(body, (logits[0, -1], carry), jnp.arange(length))
    return ids
  return sample


def generate(model, params, vocab: text_data.CharVocab, *, prime: str, length: int,
             temperature: float, top_k: int, seed: int) -> str:
  """``prime`` followed by ``length`` sampled characters (a ``VocabError`` names unknown ones)."""
  if not prime:
    raise ValueError("The prime must hold at least one character.")
  prime_ids = jnp.asarray(vocab.encode(prime))
  sampler = make_sampler(model, length=length, temperature=temperature, top_k=top_k)
  return prime + vocab.decode(sampler(params, prime_ids, jax.random.PRNGKey(seed)))


def make_tx(config, steps_per_epoch: int):
  return make_optimizer(config.optim, steps_per_epoch, config.train.num_epochs,
                        config.train.batch_size)


def restore_best_params(config, workdir: str | Path, vocab_size: int, seed_index: int = 0):
  """The model and the parameters of a run's ``best`` checkpoint (of seed ``seed_index`` if it
  trained several)."""
  model = build_model(config.model, vocab_size)
  init_fn = make_init_fn(model, config.train.batch_size, config.data.seq_len)
  like = jax.eval_shape(lambda: init_train_state(init_fn, make_tx(config, 1),
                                                 jax.random.PRNGKey(0)).saveable())
  if config.num_seeds > 1:
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct((config.num_seeds, *s.shape), s.dtype),
                        like)
  ckpt = Checkpoints(workdir)
  restored = ckpt.restore("best", like)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"No best checkpoint in {Path(workdir) / 'checkpoints/best'}: "
                            "train the run first (python -m launch.main ...).")
  params = restored[0]["params"]
  if config.num_seeds > 1:
    params = jax.tree.map(lambda a: a[seed_index], params)
  return model, params


def prepare_data(config) -> tuple[text_data.CharVocab, dict, dict]:
  text = text_data.load_text(config.data)
  if config.data.get("max_chars"):
    text = text[:config.data.max_chars]
  vocab = text_data.CharVocab.from_text(text)  # From the whole text: it covers both splits.
  train_ids, val_ids = text_data.split_by_position(vocab.encode(text), config.data.val_fraction)
  seq_len = config.data.seq_len
  train = text_data.stream_batches(train_ids, config.train.batch_size, seq_len)
  val = text_data.stream_batches(val_ids, config.train.eval_batch_size, seq_len)
  return vocab, train, val


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start = time.perf_counter()
  workdir = rundir.prepare(workdir, config)
  mesh = parallel.make_mesh(config.parallel.fsdp)
  vocab, train, val = prepare_data(config)
  if parallel.is_main_process():
    vocab.save(workdir / VOCAB_FILE)

  model = build_model(config.model, len(vocab))
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  steps_per_epoch = len(train["inputs"]) // batch_size
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  result = fit(init_fn=make_init_fn(model, batch_size, seq_len), loss_fn=lm_loss(model),
               tx=make_tx(config, steps_per_epoch), train_data=parallel.shard_rows(train, mesh),
               val_data=val, cfg=config.train, workdir=workdir, seed=config.seed,
               num_seeds=config.num_seeds, progress=config.progress, writer=writer, mesh=mesh)
  writer.close()

  params = parallel.to_host(result.state.params)
  if config.num_seeds > 1:
    params = jax.tree.map(lambda a: a[0], params)
  best = result.history[result.best_epoch - 1]["val"] if result.history else {}
  tokens_per_step = batch_size * seq_len
  results = {
      "study": config.study,
      "data": f"{config.data.path or 'anna.txt'}: {len(vocab)} symbols; train "
              f"{len(train['inputs']) * seq_len} chars, val {len(val['inputs']) * seq_len} chars "
              f"({batch_size} streams x {seq_len})",
      "best_val_nats_per_char": np.asarray(best.get("xent", np.nan)).tolist(),
      "best_val_accuracy": np.asarray(best.get("accuracy", np.nan)).tolist(),
      "final_train_nats_per_char": (np.asarray(result.history[-1]["train"]["xent"]).tolist()
                                    if result.history else None),
      "best_epoch": result.best_epoch,
      "epochs_run": len(result.history),
      "train_seconds": result.train_seconds,
      "train_tokens_per_second": (result.steps_per_second * tokens_per_step
                                  if result.steps_per_second else None),
  }
  if not parallel.is_main_process():
    return results
  plots.learning_curves(result.history, workdir / "plots" / "learning_curve.png",
                        title="Learning curve: cross-entropy in nats/char (train with dropout on)")
  s = config.sample
  sample = generate(model, params, vocab, prime=s.prime, length=s.length,
                    temperature=s.temperature, top_k=s.top_k, seed=s.seed)
  (workdir / "sample.txt").write_text(sample + "\n", encoding="utf-8")
  results |= {"wall_seconds": time.perf_counter() - start, "environment": rundir.environment()}
  rundir.write_results(workdir, results)
  print(f"{config.study}: best validation {float(np.mean(results['best_val_nats_per_char'])):.4f} "
        f"nats/char (epoch {result.best_epoch}); wall {results['wall_seconds']:.0f} s; sample in "
        f"{workdir / 'sample.txt'}")
  return results


def load_run(workdir: Path):
  """(model, best params, vocabulary) of a finished char_lstm run, from its files alone."""
  config_path = workdir / "config.json"
  if not config_path.is_file():
    raise DataError(f"No config.json in {workdir}: give the --workdir of a char_lstm run.")
  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  if config.study != "char_lstm":
    raise DataError(f"{workdir} holds a {config.study!r} run, not a char_lstm one.")
  vocab = text_data.CharVocab.load(workdir / VOCAB_FILE)
  model, params = restore_best_params(config, workdir, len(vocab))
  return model, params, vocab
