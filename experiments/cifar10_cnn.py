"""CIFAR-10, the seed notebook's CNN (the Keras ``cifar10_cnn`` example), evaluated honestly.

    python -m launch.main --config=experiments/cifar10_cnn.py --workdir=runs/cifar10_cnn

conv32-conv32-pool-drop0.25-conv64-conv64-pool-drop0.25-fc512-drop0.5-fc10
(``playbook/models/cnn.py``). The seed notebook reported "91 %", measured on its TRAINING set;
here the test set is evaluated after every epoch for the curves (train, validation and test in one
plot) and once on the best-on-validation checkpoint for the reported figure.

Data: ``--config.data.source=files`` (default) reads the staged LOSSY JPEG q75 copy
(``$PLAYBOOK_DATA_DIR/cifar10``); ``=official`` the official python batches; ``=tfds`` TFDS.
Bar on the JPEG copy: >= 80 % test accuracy. Result: the README's results table
(``python -m launch.report``) and docs/studies/cifar10_cnn.md.
"""

import ml_collections

from playbook.tasks import classify, config_arg


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = classify.base_config(study="cifar10_cnn", data="cifar10", hidden=(), dropout=0.0)
  config.model = ml_collections.ConfigDict(dict(
      name="seed_cnn", widths=(32, 64), hidden=512, conv_dropout=0.25, dropout=0.5,
      fast_conv=True))  # Matmul weight gradients, reshape-max pooling (models/fast_conv.py).
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 5e-4
  config.optim.schedule = "cosine"
  config.optim.warmup_epochs = 1.0
  config.augment.max_shift = 4      # Random 32x32 crops of the image padded by 4, and flips.
  config.augment.flip_lr = True
  config.augment.pad_mode = "reflect"
  config.train.num_epochs = 40
  config.train.batch_size = 128
  config.train.steps_per_call = 50  # Progress inside a 2.5-minute epoch.
  config.train.test_curve = True    # Test accuracy after every epoch, for the curves only.
  return classify.quick(config) if arg == "quick" else config

