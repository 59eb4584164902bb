"""MNIST, the seed notebook's dense network: 784-128-64-10, ReLU.

    python -m launch.main --config=experiments/mnist_dense.py --workdir=runs/mnist_dense

Seed notebook: 91.55 % test accuracy after 5 epochs (SGD). Bar: >= 97.8 %.
Result here: see the README's results table (command above, 2-core CPU).
"""

from playbook.tasks import classify, config_arg


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = classify.base_config(study="mnist_dense", data="mnist", hidden=(128, 64),
                                dropout=0.0)
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.label_smoothing = classify.BOUNDED_LOGITS_LABEL_SMOOTHING
  config.augment.max_shift = 2
  config.train.num_epochs = 30
  return classify.quick(config) if arg == "quick" else config

