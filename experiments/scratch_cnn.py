"""MNIST with a CNN built from scratch: convolution, max-pool and dense backprop derived by hand.

    python -m launch.main --config=experiments/scratch_cnn.py --workdir=runs/scratch_cnn

conv3x3-32 ReLU maxpool2 -> conv3x3-64 ReLU maxpool2 -> dense 10 (``playbook/models/
scratch_cnn.py``: im2col matmuls forward, col2im and argmax routing backward, no autodiff on the
training path; ``docs/conv_backprop.md`` derives every gradient). He init, L2 5e-4, hand-written
SGD with momentum 0.9, warm-up + cosine, random shifts of up to 2 pixels; trained by the common
trainer (checkpoints, resume, NaN guard, seeds with vmap).

Bar: >= 99.0 % MNIST test accuracy. Result: the README's results table (``launch.report``).
"""

from playbook.tasks import classify, config_arg, scratch


def get_config(arg: str = ""):
  arg = config_arg(arg, "quick")
  config = scratch.base_config(study="scratch_cnn", data="mnist")
  config.model.name = "scratch_cnn"
  config.model.widths = (32, 64)
  config.model.hidden = ()
  config.model.init = "he"
  del config.model.activation  # ReLU throughout.
  config.augment.max_shift = 2
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.l2 = 5e-4
  config.train.num_epochs = 15
  config.train.steps_per_call = 43  # Progress inside an epoch.
  return classify.quick(config) if arg == "quick" else config
