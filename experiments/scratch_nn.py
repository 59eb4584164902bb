"""MNIST with a network built from scratch: hand-derived backprop and SGD with momentum.

    python -m launch.main --config=experiments/scratch_nn.py --workdir=runs/scratch_nn

784-256-128-10 ReLU, He init, L2 weight decay, SGD momentum 0.9 with warm-up + cosine learning
rate. The model, its gradients and the update are ``playbook/models/scratch.py`` (no autodiff, no
Flax, no optax on the training path); ``docs/backprop.md`` derives them. This study has its own
short loop (the shared ``fit`` needs a differentiable loss), but the shared data readers, metric
writer, progress bar, run directory and plots.

Seed notebook: its scratch network reported only a training loss. Bar: >= 97.5 % test accuracy.
Result here: see the README's results table.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook import classify, configs, plots, rundir
from playbook.models import scratch
from playbook.train import NonFiniteLossError
from playbook.train.loop import first_nonfinite_step
from playbook.train.progress import progress_bar
from playbook.train.steps import epoch_batches
from playbook.train.writer import MetricWriter


def get_config(arg: str = ""):
  config = configs.classifier_config(study="scratch_nn", data="mnist", hidden=(256, 128),
                                     dropout=0.0)
  # Keys this study does not implement are removed, so overriding one is refused, not ignored.
  del config.num_seeds
  del config.augment
  del config.parallel  # One device: its loop is not the shared, mesh-aware trainer.
  del config.model.dropout
  for key in ("weight_decay", "label_smoothing", "clip_norm", "lr_scaling", "base_batch_size"):
    del config.optim[key]
  for key in ("patience", "best_metric", "best_mode"):  # "Best" is the highest val accuracy.
    del config.train[key]

  config.model.name = "scratch_mlp"
  config.model.activation = "relu"  # relu, sigmoid or tanh.
  config.model.init = "he"          # he or xavier.
  config.optim.name = "sgd_momentum"
  config.optim.learning_rate = 0.1  # Peak, after warm-up.
  config.optim.momentum = 0.9
  config.optim.l2 = 5e-4            # L2 weight decay: (l2 / 2) * sum ||w||^2 added to the loss.
  config.optim.schedule = "cosine"  # cosine or constant.
  config.optim.warmup_epochs = 1.0
  config.train.num_epochs = 20
  return configs.quick(config) if arg == "quick" else config


def train_epoch(params, velocity, images, labels, rng, first_step, *, preprocess, batch_size,
                lr_fn, momentum, activation, l2):
  """One shuffled pass over on-device uint8 ``images``, as a ``lax.scan`` of ``train_step``."""
  batches = epoch_batches(rng, len(labels), batch_size)

  def body(carry, step_and_indices):
    params, velocity = carry
    step, indices = step_and_indices
    x = preprocess(images[indices]).reshape(batch_size, -1)
    lr = lr_fn(step)
    params, velocity, metrics = scratch.train_step(
        params, velocity, x, labels[indices], learning_rate=lr, momentum=momentum,
        activation=activation, l2=l2)
    return (params, velocity), dict(metrics, learning_rate=lr)

  steps = first_step + jnp.arange(len(batches))
  (params, velocity), metrics = jax.lax.scan(body, (params, velocity), (steps, batches))
  return params, velocity, metrics


def predict(logits_fn, params, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Logits of host ``images``, in batches."""
  return np.concatenate([np.asarray(logits_fn(params, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


def metrics_of(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Cross-entropy and accuracy over a whole split (every example counted once)."""
  xent, _ = scratch.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  return {"xent": float(xent), "accuracy": float(np.mean(logits.argmax(-1) == labels))}


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start = time.perf_counter()
  if jax.process_count() > 1:
    raise NotImplementedError("scratch_nn trains on one device of one process; run it without "
                              "jax.distributed (the shared trainer's studies scale out).")
  workdir = rundir.prepare(workdir, config)
  data = classify.load_data(config.data)
  train = data.train.take(config.data.get("train_limit"))
  preprocess = classify.make_preprocess(config.data)
  sizes = (int(np.prod(train.x.shape[1:])), *config.model.hidden, len(data.class_names))

  init_rng, shuffle_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params = scratch.init_params(init_rng, sizes, config.model.init)
  velocity = scratch.momentum_init(params)

  batch_size, num_epochs = config.train.batch_size, config.train.num_epochs
  steps_per_epoch = len(train) // batch_size
  lr_fn = functools.partial(
      scratch.learning_rate, peak=config.optim.learning_rate,
      warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
      total_steps=num_epochs * steps_per_epoch, schedule=config.optim.schedule)
  epoch_fn = jax.jit(functools.partial(
      train_epoch, preprocess=preprocess, batch_size=batch_size, lr_fn=lr_fn,
      momentum=config.optim.momentum, activation=config.model.activation, l2=config.optim.l2))
  logits_fn = jax.jit(lambda p, images: scratch.forward(
      p, preprocess(images).reshape(len(images), -1), config.model.activation)[0])
  train_images, train_labels = jax.device_put(train.x), jax.device_put(train.y)

  # No checkpoints: a re-run in the same workdir trains again and rewrites the metrics.
  writer = MetricWriter(workdir)
  writer.truncate_after(0)
  bar = progress_bar(num_epochs * steps_per_epoch, 0, enabled=config.progress,
                     desc=f"train {workdir.name}")
  history, grad_norms = [], {"w": [], "b": []}
  best_params, best_accuracy, best_epoch = params, -1.0, 0
  train_start, timed_seconds = time.perf_counter(), 0.0
  for epoch in range(num_epochs):
    epoch_start = time.perf_counter()
    params, velocity, metrics = epoch_fn(params, velocity, train_images, train_labels,
                                         jax.random.fold_in(shuffle_rng, epoch),
                                         epoch * steps_per_epoch)
    metrics = jax.tree.map(np.asarray, metrics)
    if epoch > 0:  # The first epoch includes compilation.
      timed_seconds += time.perf_counter() - epoch_start
    bad_step = first_nonfinite_step(metrics["loss"], epoch * steps_per_epoch)
    if bad_step is not None:
      bar.close()
      raise NonFiniteLossError(f"Loss became non-finite at step {bad_step} (epoch {epoch + 1}). "
                               "Lower config.optim.learning_rate.")

    first_step = epoch * steps_per_epoch
    for i in range(0, steps_per_epoch, config.train.log_every_steps):
      writer.write(first_step + i + 1, "train_step", _step_row(metrics, i))
    grad_norms["w"].append(metrics["grad_norm_w"])
    grad_norms["b"].append(metrics["grad_norm_b"])

    step = (epoch + 1) * steps_per_epoch
    train_summary = {k: float(metrics[k].mean()) for k in ("loss", "xent", "accuracy")}
    val = metrics_of(predict(logits_fn, params, data.val.x, config.train.eval_batch_size),
                     data.val.y)
    writer.write(step, "train", train_summary)
    writer.write(step, "val", val)
    history.append({"epoch": epoch + 1, "step": step, "train": train_summary, "val": val})
    if val["accuracy"] > best_accuracy:  # Model selection on validation only.
      best_params, best_accuracy, best_epoch = params, val["accuracy"], epoch + 1
    bar.update(steps_per_epoch)
    bar.set_postfix(loss=f"{train_summary['loss']:.4f}", val_accuracy=f"{val['accuracy']:.4f}")
  bar.close()
  train_seconds = time.perf_counter() - train_start

  # The test set, once, on the parameters of the best validation epoch.
  test_logits = predict(logits_fn, best_params, data.test.x, config.train.eval_batch_size)
  test = metrics_of(test_logits, data.test.y)
  writer.write(num_epochs * steps_per_epoch, "test", test)
  writer.close()

  # The shared figures (curves, confusion matrix, image grids), plus this study's own.
  classify.plot_results(workdir, history, test, test_logits, data)
  _plot_grad_norms({k: np.concatenate(v) for k, v in grad_norms.items()}, steps_per_epoch,
                   workdir / "plots" / "gradient_norms.png")

  results = {
      "study": config.study,
      "data": f"{config.data.name} ({config.data.source}); train {len(train)}, "
              f"val {len(data.val)}, test {len(data.test)}",
      "architecture": "-".join(map(str, sizes)) + f" {config.model.activation}",
      "test_accuracy": classify.mean_std(test["accuracy"]),
      "test_loss": classify.mean_std(test["xent"]),
      "best_epoch": best_epoch,
      "epochs_run": num_epochs,
      "train_seconds": train_seconds,
      "train_steps_per_second": ((num_epochs - 1) * steps_per_epoch / timed_seconds
                                 if timed_seconds else None),
      "wall_seconds": time.perf_counter() - start,
      "environment": rundir.environment(),
  }
  rundir.write_results(workdir, results)
  print(f"{config.study}: test accuracy {100 * test['accuracy']:.2f} % (best val epoch "
        f"{best_epoch}); wall {results['wall_seconds']:.0f} s; results in "
        f"{workdir / 'results.json'}")
  return results


def _step_row(metrics: dict, i: int) -> dict:
  """One step's scalars; the per-layer gradient norms as grad_norm_w1, grad_norm_w2, ..."""
  row = {k: v[i] for k, v in metrics.items() if v.ndim == 1}
  for name in ("grad_norm_w", "grad_norm_b"):
    row |= {f"{name}{l + 1}": v for l, v in enumerate(metrics[name][i])}
  return row


def _plot_grad_norms(norms: dict, steps_per_epoch: int, path: Path) -> Path:
  """||dJ/dw_l||_F and ||dJ/db_l|| of every layer, per training step, log scale."""
  import matplotlib.pyplot as plt  # playbook.plots has set the Agg backend.
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
  epochs = (np.arange(len(norms["w"])) + 1) / steps_per_epoch
  window = max(1, steps_per_epoch // 4)  # Minibatch norms are noisy; a running mean shows trends.
  smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")
  for ax, name, symbol in ((axes[0], "w", "W"), (axes[1], "b", "b")):
    for l in range(norms[name].shape[1]):
      line, = ax.plot(epochs, norms[name][:, l], lw=0.4, alpha=0.25)
      ax.plot(epochs[window - 1:], smooth(norms[name][:, l]), lw=1.8, color=line.get_color(),
              label=f"layer {l + 1}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(rf"$\|\partial J / \partial {symbol}_l\|$")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle("Gradient norms per layer: every training step (faint) and running mean\n"
               "(minibatch gradients, L2 term included)")
  return plots.save(fig, path)
