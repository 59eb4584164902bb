"""The common trainer: TrainState, jitted steps and epochs, fit(), checkpoints, metrics."""

from playbook.train.loop import FitResult, Interrupted, NonFiniteLossError, evaluate, fit
from playbook.train.state import TrainState, init_train_state
