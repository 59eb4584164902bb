"""MNIST, a small CNN with on-device augmentation: one config file, nothing else.

    python -m launch.main --config=experiments/mnist_cnn.py --workdir=runs/mnist_cnn

conv32-conv32-pool-drop-conv64-conv64-pool-drop-fc256-drop-fc10 (the seed CIFAR-10 CNN's layout,
``models/cnn.py``) on 28x28x1; random shifts of up to 2 pixels, on the device. flax's MNIST example
reports 99.17 %. Bar: >= 99.4 % test accuracy. Result: 99.56 % (one seed, best validation epoch
8 of 12), 1,053 s wall on a 2-core AMD EPYC (AVX-512) CPU.
"""

import ml_collections

from playbook.tasks import classify, config_arg


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = classify.base_config(study="mnist_cnn", data="mnist", hidden=(), dropout=0.0)
  config.model = ml_collections.ConfigDict(dict(
      name="seed_cnn", widths=(32, 64), hidden=256, conv_dropout=0.25, dropout=0.5,
      fast_conv=True))
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 5e-4
  config.optim.label_smoothing = classify.BOUNDED_LOGITS_LABEL_SMOOTHING
  config.augment.max_shift = 2
  config.train.num_epochs = 12
  config.train.steps_per_call = 86
  return classify.quick(config) if arg == "quick" else config

