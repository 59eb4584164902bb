"""Image classification end to end: the glue every classifier study shares.

data -> model -> ``fit`` (vmapped over seeds) -> one test evaluation of the best checkpoint ->
plots and ``results.json``. A study is its config; ``experiments/mnist_mlp.py`` and friends call
``run`` with it.

On many devices and hosts (``playbook/parallel.py``) every process runs this same function: each
keeps only its own rows of the training set, all of them train and evaluate together, and process
0 alone writes the metrics, plots and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook import parallel, plots, rundir
from playbook.data import augment, cifar10, mnist
from playbook.models import resnet_fast
from playbook.models.cnn import SeedCNN
from playbook.models.mlp import MLP
from playbook.train import fit, loop
from playbook.train.freeze import frozen
from playbook.train.losses import classification_loss
from playbook.train.optim import make_optimizer, peak_learning_rate
from playbook.train.writer import MetricWriter

DATASETS = {"mnist": mnist.load, "fashion_mnist": mnist.load, "cifar10": cifar10.load}
# Which copy of the data each source is: every results.json says it.
DATA_COPIES = {"cifar10": cifar10.COPIES}


def build_model(cfg: ml_collections.ConfigDict, num_classes: int):
  if cfg.name == "mlp":
    return MLP(hidden=tuple(cfg.hidden), num_classes=num_classes, dropout=cfg.dropout)
  if cfg.name == "seed_cnn":
    return SeedCNN(num_classes=num_classes, widths=tuple(cfg.widths), hidden=cfg.hidden,
                   conv_dropout=cfg.conv_dropout, dropout=cfg.dropout, fast_conv=cfg.fast_conv)
  if cfg.name == "fast_resnet":
    return resnet_fast.FastResNet(num_classes=num_classes, widths=tuple(cfg.widths),
                                  bn_momentum=cfg.bn_momentum, tta_flip=cfg.tta_flip,
                                  fast_conv=cfg.fast_conv)
  raise ValueError(f"Unknown model {cfg.name!r} for image classification; known: mlp, "
                   "seed_cnn, fast_resnet.")


def data_copy(cfg: ml_collections.ConfigDict) -> str:
  """Which copy of the data ``cfg`` reads, e.g. the LOSSY JPEG copy of CIFAR-10."""
  return DATA_COPIES.get(cfg.name, {}).get(cfg.source, f"{cfg.name} ({cfg.source})")


def make_preprocess(cfg: ml_collections.ConfigDict):
  """uint8 pixels -> float32, standardised with the data set's published mean and std."""
  mean, std = jnp.float32(cfg.mean), jnp.float32(cfg.std)
  return lambda images: (images.astype(jnp.float32) / 255.0 - mean) / std


def load_data(cfg: ml_collections.ConfigDict):
  if cfg.name not in DATASETS:
    raise ValueError(f"Unknown data set {cfg.name!r}; known: {sorted(DATASETS)}.")
  data = DATASETS[cfg.name](cfg)
  limit = cfg.get("test_limit")
  return data if limit is None else dataclasses.replace(data, test=data.test.take(limit))


def predict(model, state, images: np.ndarray, preprocess, batch_size: int) -> np.ndarray:
  """Logits of one (unvmapped) state on host images, in batches, on this process's devices (pass
  host arrays, from ``parallel.to_host``, when the state is sharded over several processes)."""
  apply = jax.jit(lambda v, x: model.apply(v, preprocess(x), train=False))
  variables = {"params": state.params, **state.model_state}
  return np.concatenate([np.asarray(apply(variables, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


def mean_std(values) -> dict:
  values = np.atleast_1d(np.asarray(values, np.float64))
  return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "per_seed": values.tolist()}


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start = time.perf_counter()
  workdir = rundir.prepare(workdir, config)  # Every process checks; process 0 writes.
  main_process = parallel.is_main_process()
  mesh = parallel.make_mesh(config.parallel.fsdp)
  data = load_data(config.data)
  train = data.train.take(config.data.get("train_limit"))
  as_batch = lambda split: {"image": split.x, "label": split.y}
  # Each process puts only its own rows of the training set on its devices.
  train_rows = parallel.shard_rows(as_batch(train), mesh)

  model = build_model(config.model, len(data.class_names))
  preprocess = make_preprocess(config.data)
  loss_fn = classification_loss(model, preprocess=preprocess,
                                label_smoothing=config.optim.label_smoothing)
  sample = jnp.zeros((1, *train.x.shape[1:]), jnp.float32)

  if config.model.name == "fast_resnet":  # First layer: whitening of the data's 2x2 patches.
    whitening_images = np.asarray(preprocess(train.x[:config.model.whitening_images]))
  def init_fn(rng):
    variables = model.init(rng, sample, train=False)
    params = variables.pop("params")
    if config.model.name == "fast_resnet":
      params = resnet_fast.with_whitening(params, whitening_images)
    return params, dict(variables)

  steps_per_epoch = len(train) // config.train.batch_size
  batch_size = config.train.batch_size  # Global: every step sees this many examples.
  tx = make_optimizer(config.optim, steps_per_epoch, config.train.num_epochs, batch_size)
  frozen_params = tuple(config.model.get("frozen_params", ()))
  if frozen_params:  # Fixed layers: no update, no weight decay, no optimiser state.
    tx = frozen(tx, lambda name: name not in frozen_params)
  augment_fn = augment.image_augmenter(max_shift=config.augment.max_shift,
                                       flip_lr=config.augment.flip_lr,
                                       pad_mode=config.augment.get("pad_mode", "constant"))
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  # The test set after every epoch, for the curves only (the reported figure is still one
  # evaluation of the best-on-validation checkpoint).
  curve_data = {"test_curve": as_batch(data.test)} if config.train.get("test_curve") else None
  result = fit(init_fn=init_fn, loss_fn=loss_fn, tx=tx, train_data=train_rows,
               val_data=as_batch(data.val), cfg=config.train, workdir=workdir, seed=config.seed,
               num_seeds=config.num_seeds, augment_fn=augment_fn, progress=config.progress,
               writer=writer, mesh=mesh, curve_data=curve_data)

  # The test set, once, on the best checkpoint (per seed).
  test = loop.evaluate(result.state, as_batch(data.test), loss_fn=loss_fn,
                       batch_size=config.train.eval_batch_size, num_seeds=config.num_seeds,
                       mesh=mesh)
  final_step = result.history[-1]["step"] if result.history else 0
  writer.write(final_step, "test", test)
  writer.close()

  # The figures need seed 0's logits on host: gather the (possibly sharded) weights to every
  # process (a collective), then predict locally on process 0 only.
  weights = parallel.to_host({"params": result.state.params,
                              "model_state": result.state.model_state})
  if config.num_seeds > 1:
    weights = jax.tree.map(lambda a: a[0], weights)
  results = {
      "study": config.study,
      "data": f"{config.data.name} ({config.data.source}); train {len(train)}, "
              f"val {len(data.val)}, test {len(data.test)}",
      "data_copy": data_copy(config.data),
      "test_accuracy": mean_std(test["accuracy"]),
      "test_loss": mean_std(test["xent"]),
      "num_seeds": config.num_seeds,
      "best_epoch": result.best_epoch,
      "epochs_run": len(result.history),
      "train_seconds": result.train_seconds,
      "train_steps_per_second": result.steps_per_second,
      "train_seconds_per_epoch_cumulative": result.epoch_seconds,
      "parallel": {"mesh": dict(mesh.shape), "processes": jax.process_count(),
                   "global_batch_size": batch_size,
                   "per_device_batch_size": batch_size // mesh.size,
                   "peak_learning_rate": peak_learning_rate(config.optim, batch_size)},
  }
  if not main_process:
    return results
  logits = predict(model, types.SimpleNamespace(**weights), data.test.x, preprocess,
                   config.train.eval_batch_size)
  regularised = (config.model.get("dropout", 0) > 0 or config.augment.max_shift
                 or config.augment.flip_lr)
  plot_results(workdir, result.history, test, logits, data, epoch_seconds=result.epoch_seconds,
               curves_title="Learning curves" + (" (train metrics measured with dropout and "
                                                 "augmentation on)" if regularised else ""))

  results |= {"wall_seconds": time.perf_counter() - start,
              "environment": rundir.environment()}
  rundir.write_results(workdir, results)
  acc = results["test_accuracy"]
  print(f"{config.study}: test accuracy {100 * acc['mean']:.2f} % on the "
        f"{results['data_copy']}"
        + (f" ± {100 * acc['std']:.2f} (mean ± std of {config.num_seeds} seeds)"
           if config.num_seeds > 1 else "")
        + f"; wall {results['wall_seconds']:.0f} s; results in {workdir / 'results.json'}")
  return results


def plot_results(workdir: Path, history, test, logits, data, *,
                 curves_title: str = "Learning curves", epoch_seconds=None) -> None:
  """Learning curves, test confusion matrix, a grid of test predictions, the worst mistakes."""
  plot_dir = workdir / "plots"
  predictions = logits.argmax(-1)
  labels = data.test.y
  plots.learning_curves(history, plot_dir / "learning_curves.png", test=test, title=curves_title)
  if history and "test_curve" in history[-1] and epoch_seconds:
    plots.accuracy_vs_time(history, epoch_seconds, plot_dir / "accuracy_vs_time.png")
  plots.confusion_matrix(labels, predictions, data.class_names, plot_dir / "confusion_matrix.png")
  plots.image_grid(data.test.x[:32], labels[:32], predictions[:32], data.class_names,
                   plot_dir / "test_predictions.png", title="First test images: predicted (true)")
  probs = np.asarray(jax.nn.softmax(logits))
  wrong = np.flatnonzero(predictions != labels)
  worst = wrong[np.argsort(-probs[wrong, predictions[wrong]])][:32]
  plots.image_grid(data.test.x[worst], labels[worst], predictions[worst], data.class_names,
                   plot_dir / "most_confident_mistakes.png",
                   title="Most confidently wrong test images", confidences=probs[worst, predictions[worst]])
