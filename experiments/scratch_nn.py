"""MNIST with a network built from scratch: hand-derived backprop and SGD with momentum.

    python -m launch.main --config=experiments/scratch_nn.py --workdir=runs/scratch_nn

784-256-128-10 ReLU, He init, L2 weight decay, SGD momentum 0.9 with warm-up + cosine learning
rate. The model, its gradients and the update are ``playbook/models/scratch.py`` (no autodiff on
the training path); ``docs/backprop.md`` derives them. It trains through the common trainer
(checkpoints, resume, NaN guard, seeds with vmap).

Seed notebook: its scratch network reported only a training loss. Bar: >= 97.5 % test accuracy.
Result: the README's results table (``python -m launch.report``).
"""

from playbook.tasks import classify, config_arg, scratch


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = scratch.base_config(study="scratch_nn", data="mnist")
  config.model.hidden = (256, 128)
  config.model.activation = "relu"
  config.model.init = "he"
  config.optim.learning_rate = 0.1
  config.optim.momentum = 0.9
  config.optim.l2 = 5e-4
  config.train.num_epochs = 20
  return classify.quick(config) if arg == "quick" else config
