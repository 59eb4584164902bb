"""The config every image-classifier study starts from; each experiment overrides its numbers."""

from __future__ import annotations

import ml_collections

# Published per-pixel statistics on 0..1 of each training set (used to standardise inputs).
PIXEL_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530),
               # Per channel (R, G, B) of the official CIFAR-10 training set.
               "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}

# The MNIST-family studies' label smoothing. It bounds the logits (largest |logit| about 5
# instead of 30-76), so a float32 export's logits stay within 1e-5 of JAX's (summation order moves
# big logits by more) and int8 exports lose less. README, "Export".
BOUNDED_LOGITS_LABEL_SMOOTHING = 0.1


def classifier_config(*, study: str, data: str, hidden: tuple[int, ...],
                      dropout: float) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.study = study
  config.seed = 0
  config.num_seeds = 1          # >1 trains that many seeds at once with jax.vmap.
  config.progress = True
  # False: metrics.jsonl only, without the TensorBoard writer (which imports TensorFlow).
  config.tensorboard = True

  config.data = ml_collections.ConfigDict()
  config.data.name = data
  config.data.source = "files"  # 'files' (PLAYBOOK_DATA_DIR) or 'tfds' (online).
  config.data.dir = ""          # Empty: $PLAYBOOK_DATA_DIR. --data_dir sets it.
  config.data.val_size = 5000   # Held out from the training set for early stopping / "best".
  config.data.split_seed = 0
  config.data.train_limit = ml_collections.config_dict.placeholder(int)  # For quick runs.
  # The first N test images, for tests only: every reported figure uses the whole test set.
  config.data.test_limit = ml_collections.config_dict.placeholder(int)
  config.data.mean, config.data.std = PIXEL_STATS[data]

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.hidden = hidden
  config.model.dropout = dropout

  config.augment = ml_collections.ConfigDict()
  config.augment.max_shift = 0  # Random translation by up to this many pixels.
  config.augment.flip_lr = False

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  # learning_rate is the rate at base_batch_size; lr_scaling ('none', 'linear' or 'sqrt') scales
  # it to the global train.batch_size: lr * (batch_size / base_batch_size) for 'linear'.
  config.optim.lr_scaling = "none"
  config.optim.base_batch_size = 128
  config.optim.weight_decay = 1e-4
  config.optim.momentum = 0.9
  config.optim.schedule = "cosine"
  config.optim.warmup_epochs = 1.0
  config.optim.label_smoothing = 0.0
  config.optim.clip_norm = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128  # GLOBAL: split over all devices of all processes.
  config.train.num_epochs = 20
  config.train.eval_batch_size = 1000
  config.train.patience = 0     # Epochs without validation improvement before stopping; 0 = off.
  config.train.best_metric = "accuracy"
  config.train.best_mode = "max"
  config.train.log_every_steps = 50
  # Steps per jitted call (None: a whole epoch in one); the same numbers either way, but the
  # progress bar moves only between calls, so studies with long epochs set it.
  config.train.steps_per_call = ml_collections.config_dict.placeholder(int)

  # Scale-out (playbook/parallel.py). Every device of every process trains: each takes
  # train.batch_size / num_devices examples of every batch.
  config.parallel = ml_collections.ConfigDict()
  config.parallel.fsdp = 1  # Size of the mesh's fsdp axis: 1 = parameters and optimiser state
                            # replicated (data parallel); -1 = split over every device (FSDP);
                            # k = split over groups of k devices, replicated across groups.
  return config


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ':quick' variant of any classifier config: same study, a few seconds of training."""
  config.data.train_limit = 4096
  config.data.val_size = 1000
  config.train.num_epochs = 2
  config.train.batch_size = 128
  config.train.log_every_steps = 8
  return config
