"""Character-level LSTM on Anna Karenina: 2 layers x 512, dropout 0.5, sequences of 100.

    PLAYBOOK_DATA_DIR=/work/shared/data python -m launch.main \
        --config=experiments/char_lstm.py --workdir=runs/char_lstm
    python -m launch.sample --workdir=runs/char_lstm --prime="Anna" --length=1000 \
        --temperature=0.8 --top_k=5 --seed=0

Seed notebook (same network, Adam 1e-3 constant, clip 5, 20 epochs, batch 128): validation loss
1.2952 nats/char (the course's best: 1.2917). Bar: <= 1.25 nats/char. A fresh run of this
config gave 1.2360 (epoch 30) on one H200 GPU in 71 s; about 3.2 h on the 2-core CPU (README,
char-LSTM). `:quick` is a seconds-long variant on the first 100k characters.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook import char_lm
from playbook.data import text as text_data
from playbook.models.lstm import CharLSTM


def get_config(arg: str = ""):
  config = ml_collections.ConfigDict()
  config.study = "char_lstm"
  config.seed = 0
  config.num_seeds = 1
  config.progress = True
  # False: metrics.jsonl only, without the TensorBoard writer (which imports TensorFlow).
  config.tensorboard = True

  config.data = ml_collections.ConfigDict()
  config.data.path = ""          # Any UTF-8 text file; empty: the verified anna.txt.
  config.data.dir = ""           # Empty: $PLAYBOOK_DATA_DIR. --data_dir sets it.
  config.data.val_fraction = 0.1  # The last 10 % of the text, by position.
  config.data.seq_len = 100      # Truncated BPTT window.
  config.data.max_chars = ml_collections.config_dict.placeholder(int)  # First N chars (quick).

  config.model = ml_collections.ConfigDict()
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

  config.sample = ml_collections.ConfigDict()  # The sample.txt written at the end of a run.
  config.sample.prime = "Anna"
  config.sample.length = 1000
  config.sample.temperature = 0.8
  config.sample.top_k = 5
  config.sample.seed = 0

  config.parallel = ml_collections.ConfigDict()
  config.parallel.fsdp = 1

  if arg == "quick":
    config.data.max_chars = 100_000
    config.data.seq_len = 50
    config.model.hidden = 128
    config.train.batch_size = config.train.eval_batch_size = 32
    config.train.num_epochs = 2
    config.train.log_every_steps = 10
    config.sample.length = 200
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use ':quick' or nothing.")
  return config


run = char_lm.run


def export_adapter(config: ml_collections.ConfigDict, workdir, *, seed_index: int = 0,
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
  from playbook.export.exportable import ExportError
  from playbook.export.restore import run_file
  workdir = Path(workdir)
  if not 0 <= seed_index < config.num_seeds:
    raise ExportError(f"seed_index={seed_index}, but the run trained {config.num_seeds} seed(s).")
  vocab = text_data.CharVocab.load(run_file(workdir, char_lm.VOCAB_FILE))
  model, params = char_lm.restore_best_params(config, workdir, len(vocab), seed_index)
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
      description=f"{config.study}: CharLSTM.step of the best checkpoint (seed {seed_index}), "
                  f"{len(vocab)} characters (vocab.json in the run directory); test: the "
                  f"validation text, {streams} streams x {test_tokens.shape[1]} characters")
