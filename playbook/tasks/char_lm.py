"""Character-level language modelling end to end: the glue of the char-LSTM study.

text -> vocabulary (saved as ``vocab.json``) -> 90/10 split by position -> parallel streams ->
``fit`` with the LSTM's (h, c) carried from batch to batch (truncated BPTT) -> learning curve,
a sample from the best checkpoint, ``results.json``. ``launch/sample.py`` reads the same run back.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook import models, parallel
from playbook.data import text as text_data
from playbook.models.lstm import CharLSTM, zero_carry
from playbook.run import plots, rundir
from playbook.run.writer import MetricWriter
from playbook.tasks import ConfigError, run_config, schema
from playbook.train import fit, sweep
from playbook.train.optim import make_optimizer

VOCAB_FILE = "vocab.json"


def base_config(study: str = "char_lstm") -> ml_collections.ConfigDict:
  """The char-LSTM study's config: the seed notebook's network, a cosine schedule."""
  config = run_config("char_lm", study)

  config.data = ml_collections.ConfigDict()
  config.data.path = ""          # Any UTF-8 text file; empty: the verified anna.txt.
  config.data.dir = ""  # Empty: $PLAYBOOK_DATA_DIR, else ~/.cache/playbook. --data_dir sets it.
  config.data.val_fraction = 0.1  # The last 10 % of the text, by position.
  config.data.seq_len = 100      # Truncated BPTT window.
  config.data.max_chars = ml_collections.config_dict.placeholder(int)  # First N chars (quick).

  config.model = ml_collections.ConfigDict()
  config.model.name = "char_lstm"
  config.model.hidden = 512
  config.model.num_layers = 2
  config.model.dropout = 0.5
  config.model.unroll = 1        # lax.scan unroll; benchmarks/lstm_throughput.py measures it.

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adam"
  config.optim.learning_rate = 2e-3
  config.optim.schedule = "cosine"  # Half an epoch of warm-up, then cosine decay to 0.
  config.optim.warmup_epochs = 0.5
  config.optim.clip_norm = 5.0   # optax.clip_by_global_norm, as the seed's clip_grad_norm_(5).
  config.optim.weight_decay = 0.0
  config.optim.momentum = 0.9
  config.optim.lr_scaling = "none"
  config.optim.base_batch_size = 128

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128  # Parallel text streams.
  config.train.eval_batch_size = 128  # Must equal batch_size: one carried state per stream.
  config.train.num_epochs = 30
  config.train.patience = 0
  config.train.best_metric = "xent"  # Validation nats/char.
  config.train.best_mode = "min"
  config.train.log_every_steps = 20
  config.train.steps_per_call = 10  # Progress inside an epoch (a step takes seconds here).
  config.train.shuffle = False   # Batches in stream order...
  config.train.carry_state = True  # ...with (h, c) carried across them (truncated BPTT).

  # Sweeps in one program (playbook/train/sweep.py), e.g. --config.sweep.learning_rate=1e-3,2e-3.
  config.sweep = sweep.config_block(("learning_rate", "weight_decay", "momentum", "dropout"))

  config.sample = ml_collections.ConfigDict()  # The sample.txt written at the end of a run.
  config.sample.prime = "Anna"
  config.sample.length = 1000
  config.sample.temperature = 0.8
  config.sample.top_k = 5
  config.sample.seed = 0

  config.parallel = ml_collections.ConfigDict()
  config.parallel.fsdp = 1

  return config


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Seconds of training on the first 100k characters, for tests and quick looks."""
  config.data.max_chars = 100_000
  config.data.seq_len = 50
  config.model.hidden = 128
  config.train.batch_size = config.train.eval_batch_size = 32
  config.train.num_epochs = 2
  config.train.log_every_steps = 10
  config.sample.length = 200
  return config


def make_init_fn(model: CharLSTM, batch_size: int, seq_len: int, hparams: dict | None = None):
  """init_fn(rng) -> (params, {'carry': zero (h, c) for ``batch_size`` streams}), plus a
  sweep's ``hparams`` collection (``sweep.model_hparams``)."""
  def init_fn(rng):
    carry = zero_carry(model.num_layers, batch_size, model.hidden)
    tokens = jnp.zeros((batch_size, seq_len), jnp.int32)
    params = model.init(rng, tokens, carry, train=False)["params"]
    return params, {"carry": {"h": carry[0], "c": carry[1]}, **(hparams or {})}
  return init_fn


def lm_loss(model: CharLSTM):
  """Mean next-character cross-entropy in nats/char of ``batch = {'inputs', 'targets', [mask]}``.

  The incoming ``model_state['carry']`` is the state where the previous batch's streams stopped;
  the outgoing one is where these stop, with its gradient cut (truncated BPTT). In a sweep,
  ``model_state['hparams']`` holds this model's own dropout rate, a number in the program.
  """
  def loss_fn(params, model_state, batch, rng, train):
    carry = (model_state["carry"]["h"], model_state["carry"]["c"])
    hparams = model_state.get(sweep.HPARAMS, {})
    net = model.clone(dropout=hparams["dropout"]) if "dropout" in hparams else model
    logits, (h, c) = net.apply({"params": params}, batch["inputs"], carry, train=train,
                               rngs={"dropout": rng} if train else {})
    targets = batch["targets"]
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    rows = batch.get("mask", jnp.ones(targets.shape[:1], jnp.float32))
    weights = jnp.broadcast_to(rows[:, None], targets.shape)
    mean = lambda v: jnp.sum(v * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    new_state = {"carry": jax.lax.stop_gradient({"h": h, "c": c}),
                 **({sweep.HPARAMS: hparams} if hparams else {})}
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
  """The optimiser; in a sweep, its swept values are data in its state (``sweep.injected``)."""
  make = lambda optim: make_optimizer(optim, steps_per_epoch, config.train.num_epochs,
                                      config.train.batch_size)
  swept = sweep.parse(config)
  return sweep.injected(make, config.optim, swept) if swept else make(config.optim)


def restore_best_params(config, workdir: str | Path, vocab_size: int,
                        seed_index: int | None = None):
  """The model and the parameters of a run's ``best`` checkpoint: model ``seed_index`` if it
  trained several (default: seed 0, or a sweep's best variant's first seed)."""
  model = models.build(config.model, vocab_size)
  swept = sweep.parse(config)
  init_fn = make_init_fn(model, config.train.batch_size, config.data.seq_len,
                         sweep.model_hparams(config, swept))
  params, model_state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  num_models, seed_index = sweep.stored_model(swept, config.num_seeds, workdir, seed_index)
  variables, _ = rundir.restore_best(workdir, {"params": params, **model_state},
                                     num_seeds=num_models, seed_index=seed_index)
  return model, variables["params"]


def prepare_data(config) -> tuple[text_data.CharVocab, dict, dict, str]:
  text = text_data.load_text(config.data)
  if config.data.get("max_chars"):
    text = text[:config.data.max_chars]
  vocab = text_data.CharVocab.from_text(text)  # From the whole text: it covers both splits.
  train_ids, val_ids = text_data.split_by_position(vocab.encode(text), config.data.val_fraction)
  seq_len = config.data.seq_len
  train = text_data.stream_batches(train_ids, config.train.batch_size, seq_len)
  val = text_data.stream_batches(val_ids, config.train.eval_batch_size, seq_len)
  return vocab, train, val, text[:64]


def validate(config: ml_collections.ConfigDict) -> None:
  """Refuses, before anything is read or written, a value the language model cannot take."""
  schema.check(config, schema.TRAINING, {
      "model.name": schema.one_of("char_lstm"), "model.hidden": schema.POSITIVE_INT,
      "model.num_layers": schema.POSITIVE_INT, "model.unroll": schema.POSITIVE_INT,
      "data.seq_len": schema.POSITIVE_INT, "data.max_chars": schema.OPTIONAL_POSITIVE_INT,
      "data.val_fraction": (lambda v: schema.FRACTION[0](v) and v > 0, "a number in (0, 1)"),
      "optim.name": schema.one_of("adam", "adamw", "sgd", "rmsprop"),
      "optim.schedule": schema.one_of("constant", "cosine", "onecycle"),
      "train.best_metric": schema.one_of("xent", "accuracy", "loss"),
      "sample.length": schema.POSITIVE_INT, "sample.temperature": schema.POSITIVE,
      "sample.top_k": schema.NON_NEGATIVE_INT, "sample.seed": schema.INTEGER,
  })
  schema.check_sweep(config, sweep.parse(config), sweep.USED_BY)
  if config.train.eval_batch_size != config.train.batch_size:
    raise ConfigError(f"config.train.eval_batch_size={config.train.eval_batch_size} must equal "
                      f"train.batch_size={config.train.batch_size}: one carried state per text "
                      "stream.")


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start = time.perf_counter()
  validate(config)
  if (done := rundir.finished(workdir, config)) is not None:
    return done
  vocab, train, val, text_start = prepare_data(config)  # A data error leaves no workdir.
  workdir = rundir.prepare(workdir, config)
  mesh = parallel.make_mesh(config.parallel.fsdp)
  if parallel.is_main_process():
    vocab.save(workdir / VOCAB_FILE)

  model = models.build(config.model, len(vocab), dtype=models.precision.compute_dtype(config))
  batch_size, seq_len = config.train.batch_size, config.data.seq_len
  steps_per_epoch = len(train["inputs"]) // batch_size
  swept = sweep.parse(config)
  num_models = swept.num_models if swept else config.num_seeds
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  result = fit(init_fn=make_init_fn(model, batch_size, seq_len,
                                    sweep.model_hparams(config, swept)),
               loss_fn=lm_loss(model), tx=make_tx(config, steps_per_epoch),
               train_data=parallel.shard_rows(train, mesh), val_data=val, cfg=config.train,
               workdir=workdir, seed=config.seed, num_seeds=num_models,
               progress=config.progress, writer=writer, mesh=mesh,
               hparams=swept.hparams() if swept else None,
               seed_cycle=swept.seeds if swept else None)
  writer.close()

  best = result.history[result.best_epoch - 1]["val"] if result.history else {}
  val_xent, val_accuracy = best.get("xent", np.nan), best.get("accuracy", np.nan)
  shown = 0  # The model whose sample is written: seed 0, or the best variant's first seed.
  if swept:  # Each model at its own best epoch; the headline is the best variant's.
    epochs = result.best_epochs or [result.best_epoch] * num_models
    variants = sweep.variants(swept, {
        "best_val_nats_per_char": sweep.at_best_epochs(result.history, epochs, "val", "xent"),
        "best_val_accuracy": sweep.at_best_epochs(result.history, epochs, "val", "accuracy")},
        epochs, select="best_val_nats_per_char", mode="min")
    best_variant = variants["variants"][variants["best_index"]]
    val_xent = best_variant["best_val_nats_per_char"]["per_seed"]
    val_accuracy = best_variant["best_val_accuracy"]["per_seed"]
    shown = variants["best_index"] * swept.seeds
  params = parallel.to_host(result.state.params)
  if num_models > 1:
    params = jax.tree.map(lambda a: a[shown], params)
  tokens_per_step = batch_size * seq_len
  results = {
      "task": config.task,
      "study": config.study,
      "data": f"{config.data.path or 'anna.txt'}: {len(vocab)} symbols; train "
              f"{len(train['inputs']) * seq_len} chars, val {len(val['inputs']) * seq_len} chars "
              f"({batch_size} streams x {seq_len})",
      "best_val_nats_per_char": np.asarray(val_xent).tolist(),
      "best_val_accuracy": np.asarray(val_accuracy).tolist(),
      "final_train_nats_per_char": (np.asarray(result.history[-1]["train"]["xent"]).tolist()
                                    if result.history else None),
      "best_epoch": result.best_epoch,
      "epochs_run": len(result.history),
      "train_seconds": result.train_seconds,
      "train_seconds_per_epoch_cumulative": result.epoch_seconds,
      "train_steps_per_second": result.steps_per_second,
      "train_tokens_per_second": (result.steps_per_second * tokens_per_step
                                  if result.steps_per_second else None),
  }
  if swept:
    results |= {"variants": variants["variants"], "best_variant": best_variant["name"]}
  if not parallel.is_main_process():
    return results
  plots.learning_curves(result.history, workdir / "plots" / "learning_curve.png",
                        title="Learning curve: cross-entropy in nats/char (train with dropout on)")
  if swept:
    plots.sweep(variants["variants"], {n: swept.keys[n] for n in swept.names},
                workdir / "plots" / "sweep.png", metric="best_val_nats_per_char",
                ylabel="validation nats/char", seeds=swept.seeds, min_span=0.02,
                best=results["best_variant"])
  results = rundir.finish(
      workdir, results, start=start,
      summary=f"{config.study}: "
              + (f"{swept.describe()}; best {results['best_variant']}: " if swept else "")
              + f"best validation {float(np.mean(results['best_val_nats_per_char'])):.4f} "
              f"nats/char" + ("" if swept else f" (epoch {result.best_epoch})"))
  # After results.json: a sample is a picture of the model, never a reason to lose the run.
  s = config.sample
  sample = generate(model, params, vocab, prime=usable_prime(s.prime, vocab, text_start),
                    length=s.length, temperature=s.temperature, top_k=s.top_k, seed=s.seed)
  (workdir / "sample.txt").write_text(sample + "\n", encoding="utf-8")
  print(f"sample in {workdir / 'sample.txt'}")
  return results


def usable_prime(prime: str, vocab: text_data.CharVocab, text_start: str) -> str:
  """``prime``, or, when it has characters the text never uses, the text's own opening (with a
  warning that names them): the end-of-run sample works for any text."""
  unknown = sorted(set(prime) - set(vocab.chars))
  if prime and not unknown:
    return prime
  fallback = text_start[:max(1, min(len(prime), 16))]
  warnings.warn(f"sample.prime {prime!r} has characters not in this text ({unknown}); the "
                f"sample starts from the text's opening {fallback!r} instead.", stacklevel=2)
  return fallback


def load_run(workdir: Path):
  """(model, best params, vocabulary) of a finished char_lm run, from its files alone."""
  config = rundir.read_config(workdir)
  if config.get("task") != "char_lm":
    raise rundir.RunDirError(f"{workdir} holds a {config.get('study')!r} run, not a character "
                             "language model; pass the --workdir of a char_lstm run.")
  vocab = text_data.CharVocab.load(rundir.run_file(workdir, VOCAB_FILE))
  model, params = restore_best_params(config, workdir, len(vocab))
  return model, params, vocab


def sample(workdir: Path, *, prime: str, length: int, temperature: float, top_k: int,
           seed: int) -> str:
  """Text from a run's best checkpoint: ``prime`` and ``length`` characters drawn after it."""
  model, params, vocab = load_run(workdir)
  return generate(model, params, vocab, prime=prime, length=length, temperature=temperature,
                  top_k=top_k, seed=seed)


def exporter(config: ml_collections.ConfigDict, workdir, *, seed_index: int | None = None,
             data_dir: str | None = None):
  """``CharLSTM.step`` of the best checkpoint, exported with its state explicit:
  ``(token (B,) int32, h, c) -> (logits (B, vocab), h_out, c_out)``, ``h``/``c`` of shape
  (B, num_layers, hidden) (batch first, as every format's polymorphic dimension must be), zeros
  at the start of a text. A client samples by feeding each step's ``h_out``/``c_out`` back in.

  Test text: the run's validation text (the last ``val_fraction`` of it, never trained on), cut
  into ``config.train.eval_batch_size`` contiguous streams stepped through from the zero state;
  accuracy is next-character accuracy over all of it.
  """
  from playbook.export import TensorSpec, adapters  # Not imported by training.
  workdir = Path(workdir)
  vocab = text_data.CharVocab.load(rundir.run_file(workdir, VOCAB_FILE))
  model, params = restore_best_params(config, workdir, len(vocab), seed_index)
  chosen = f"seed {seed_index}" if seed_index is not None else (
      "the sweep's best variant" if sweep.parse(config) else "seed 0")
  data_config = ml_collections.ConfigDict(config.data.to_dict())
  if data_dir:
    data_config.dir = data_dir
  text = text_data.load_text(data_config)[:config.data.get("max_chars")]
  _, val_ids = text_data.split_by_position(vocab.encode(text), config.data.val_fraction)
  streams = config.train.eval_batch_size
  test_tokens = val_ids[:len(val_ids) // streams * streams].reshape(streams, -1)

  def step_with(variables, dtype):
    def step(token, h, c):  # (B, layers, H) outside; the model's state is (layers, B, H).
      to_model = lambda s: jnp.asarray(s, dtype).transpose(1, 0, 2)
      logits, (h, c) = model.apply(variables, token, (to_model(h), to_model(c)),
                                   method=CharLSTM.step)
      return logits, h.transpose(1, 0, 2), c.transpose(1, 0, 2)
    return step

  variables = {"params": params}
  variables64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
  state_shape = (None, config.model.num_layers, config.model.hidden)
  return adapters.step_exportable(
      name=config.study, step=step_with(variables, jnp.float32),
      step64=step_with(variables64, jnp.float64),
      state_specs=(TensorSpec("h", state_shape), TensorSpec("c", state_shape)),
      test_tokens=test_tokens,
      description=f"{config.study}: CharLSTM.step of the best checkpoint ({chosen}), "
                  f"{len(vocab)} characters (vocab.json in the run directory); test: the "
                  f"validation text, {streams} streams x {test_tokens.shape[1]} characters")
