"""Image classification end to end: the glue every classifier study shares.

data -> model (``models.build(config.model)``) -> ``fit`` (vmapped over seeds) -> one test
evaluation of the best checkpoint -> plots and ``results.json``. A study is its config
(``experiments/mnist_mlp.py`` and friends start from ``base_config``).

On many devices and hosts (``playbook/parallel.py``) every process runs ``train``: each keeps only
its own rows of the training set, all of them train and evaluate together, and process 0 alone
writes the metrics, plots and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from playbook import models, parallel
from playbook.data import augment, cifar10, mnist
from playbook.models import resnet_fast
from playbook.run import plots, rundir
from playbook.run.writer import MetricWriter
from playbook.tasks import Predictor, run_config, schema
from playbook.train import fit, loop, sweep
from playbook.train.sweep import mean_std
from playbook.train.freeze import frozen
from playbook.train.losses import classification_loss
from playbook.train.optim import make_optimizer, peak_learning_rate
from playbook.train.state import InitFn
from playbook.train.steps import LossFn, TrainStep

DATASETS = {"mnist": mnist.load, "fashion_mnist": mnist.load, "cifar10": cifar10.load}
# Published per-pixel statistics on 0..1 of each training set (used to standardise inputs).
PIXEL_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530),
               # Per channel (R, G, B) of the official CIFAR-10 training set.
               "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}
# The MNIST-family studies' label smoothing. It bounds the logits (largest |logit| about 5
# instead of 30-76), so a float32 export's logits stay within 1e-5 of JAX's (summation order moves
# big logits by more) and int8 exports lose less (docs/export.md).
BOUNDED_LOGITS_LABEL_SMOOTHING = 0.1
INPUTS_FILE = "inputs.json"  # Class names and input shape: what a predictor needs of the data.


# ----------------------------------------------------------------------------------------- config


def base_config(*, study: str, data: str, hidden: tuple[int, ...] = (),
                dropout: float = 0.0) -> ml_collections.ConfigDict:
  """The config every image-classifier study starts from; each experiment overrides its numbers."""
  config = run_config("classify", study)

  config.data = ml_collections.ConfigDict()
  config.data.name = data
  # 'auto': the data root's files (CIFAR-10: the official batches, else an image-folder copy
  # there), fetched into the cache when absent; 'official' / 'files' force one; 'tfds' (online).
  config.data.source = "auto"
  config.data.dir = ""  # Empty: $PLAYBOOK_DATA_DIR, else ~/.cache/playbook. --data_dir sets it.
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

  # Hyperparameter sweeps in one program (playbook/train/sweep.py): comma-separated values,
  # e.g. --config.sweep.learning_rate=0.0003,0.001,0.003, crossed with each other and num_seeds.
  config.sweep = sweep.config_block()

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


OPTIM_RULES = {"optim.name": schema.one_of("adam", "adamw", "sgd", "rmsprop"),
               "optim.schedule": schema.one_of("constant", "cosine", "onecycle", "triangle")}


# Models whose dropout rate may be a traced number (models/dropout.py), so sweepable.
DROPOUT_SWEEP_MODELS = ("mlp", "seed_cnn")


def validate(config: ml_collections.ConfigDict, optim_rules: dict = OPTIM_RULES,
             sweep_uses: dict = sweep.USED_BY) -> None:
  """Refuses, before anything is written, a value the classifier pipeline cannot take."""
  schema.check(config, schema.TRAINING, {
      "data.name": schema.one_of(*DATASETS), "data.val_size": schema.POSITIVE_INT,
      "model.name": schema.one_of(*models.REGISTRY), "model.hidden": schema.WIDTH_OR_WIDTHS,
      "model.widths": schema.WIDTHS, "model.conv_dropout": schema.FRACTION,
      "augment.max_shift": schema.NON_NEGATIVE_INT, "augment.flip_lr": schema.BOOL,
      "train.best_metric": schema.one_of("accuracy", "xent", "loss"),
  }, optim_rules)
  refused = {} if config.model.name in DROPOUT_SWEEP_MODELS else {
      "dropout": f"the {config.model.name!r} model has no dropout rate to sweep (these do: "
                 f"{', '.join(DROPOUT_SWEEP_MODELS)})."}
  schema.check_sweep(config, sweep.parse(config), sweep_uses, refused=refused)


# ------------------------------------------------------------------------------------------- data


def data_copy(cfg: ml_collections.ConfigDict) -> str:
  """Which copy of the data ``cfg`` reads, e.g. the LOSSY JPEG copy of CIFAR-10."""
  if cfg.name == "cifar10":
    return cifar10.describe(cfg)
  return f"{cfg.name} ({'files' if cfg.source == 'auto' else cfg.source})"


def make_preprocess(cfg: ml_collections.ConfigDict):
  """uint8 pixels -> float32, standardised with the data set's published mean and std."""
  mean, std = jnp.float32(cfg.mean), jnp.float32(cfg.std)
  return lambda images: (images.astype(jnp.float32) / 255.0 - mean) / std


def load_data(cfg: ml_collections.ConfigDict, data_dir: str | None = None):
  """The data set ``cfg`` names (``data_dir`` overrides its data root), test split trimmed to
  ``cfg.test_limit`` when set."""
  if cfg.name not in DATASETS:
    raise ValueError(f"Unknown data set {cfg.name!r}; known: {sorted(DATASETS)}.")
  if data_dir:
    cfg = ml_collections.ConfigDict(dict(cfg.to_dict(), dir=data_dir))
  data = DATASETS[cfg.name](cfg)
  limit = cfg.get("test_limit")
  return data if limit is None else dataclasses.replace(data, test=data.test.take(limit))


# ---------------------------------------------------------------------------------------- learner


@dataclasses.dataclass
class Learner:
  """What ``fit`` needs to train a classifier, and how to get logits from its weights.

  ``logits_fn(variables, images)``: uint8 images -> logits in eval mode, ``variables`` being
  ``{'params': ..., **model_state}``. ``train_step`` None: autodiff of ``loss_fn``.
  """
  init_fn: InitFn
  loss_fn: LossFn
  tx: optax.GradientTransformation
  logits_fn: Callable
  train_step: TrainStep | None = None


def flax_learner(config: ml_collections.ConfigDict, num_classes: int, train_x: np.ndarray,
                 steps_per_epoch: int) -> Learner:
  """A ``models.build`` network trained by autodiff with ``make_optimizer``."""
  model = models.build(config.model, num_classes, dtype=models.precision.compute_dtype(config))
  preprocess = make_preprocess(config.data)
  sample = jnp.zeros((1, *train_x.shape[1:]), jnp.float32)
  if config.model.name == "fast_resnet":  # First layer: whitening of the data's 2x2 patches.
    whitening_images = np.asarray(preprocess(train_x[:config.model.whitening_images]))

  swept = sweep.parse(config)
  swept_hparams = sweep.model_hparams(config, swept)  # A sweep's dropout and label smoothing.

  def init_fn(rng):
    variables = model.init(rng, sample, train=False)
    params = variables.pop("params")
    if config.model.name == "fast_resnet":
      params = resnet_fast.with_whitening(params, whitening_images)
    return params, {**variables, **swept_hparams}

  make_tx = lambda optim: make_optimizer(optim, steps_per_epoch, config.train.num_epochs,
                                        config.train.batch_size)
  tx = sweep.injected(make_tx, config.optim, swept) if swept else make_tx(config.optim)
  frozen_params = tuple(config.model.get("frozen_params", ()))
  if frozen_params:  # Fixed layers: no update, no weight decay, no optimiser state.
    tx = frozen(tx, lambda name: name not in frozen_params)
  return Learner(init_fn=init_fn, tx=tx,
                 loss_fn=classification_loss(model, preprocess=preprocess,
                                             label_smoothing=config.optim.label_smoothing),
                 logits_fn=lambda v, x: model.apply(v, preprocess(x), train=False))


def predict_logits(logits_fn, variables: dict, images: np.ndarray, batch_size: int) -> np.ndarray:
  """Logits of one (unvmapped) set of weights on host images, in batches, on this process's
  devices (pass host arrays, from ``parallel.to_host``, when they are sharded over processes)."""
  apply = jax.jit(logits_fn)
  return np.concatenate([np.asarray(apply(variables, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


# ------------------------------------------------------------------------------------------ train


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  validate(config)
  return fit_and_test(config, workdir)


def fit_and_test(config: ml_collections.ConfigDict, workdir: str | Path, *,
                 make_learner: Callable[..., Learner] = flax_learner) -> dict:
  """Trains ``config`` in ``workdir`` (resuming what is there), tests the best checkpoint once."""
  start = time.perf_counter()
  if (done := rundir.finished(workdir, config)) is not None:
    return done
  data = load_data(config.data)  # Before the workdir: a data error leaves no trace there.
  workdir = rundir.prepare(workdir, config)  # Every process checks; process 0 writes.
  main_process = parallel.is_main_process()
  mesh = parallel.make_mesh(config.parallel.fsdp)
  train_split = data.train.take(config.data.get("train_limit"))
  as_batch = lambda split: {"image": split.x, "label": split.y}
  if main_process:
    (workdir / INPUTS_FILE).write_text(json.dumps(
        {"class_names": list(data.class_names), "input_shape": list(train_split.x.shape[1:])}))
  # Each process puts only its own rows of the training set on its devices.
  train_rows = parallel.shard_rows(as_batch(train_split), mesh)
  batch_size = config.train.batch_size  # Global: every step sees this many examples.
  steps_per_epoch = len(train_split) // batch_size
  learner = make_learner(config, len(data.class_names), train_split.x, steps_per_epoch)
  swept = sweep.parse(config)
  num_models = swept.num_models if swept else config.num_seeds

  augment_fn = augment.image_augmenter(max_shift=config.augment.max_shift,
                                       flip_lr=config.augment.flip_lr,
                                       pad_mode=config.augment.get("pad_mode", "constant"))
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  # The test set after every epoch, for the curves only (the reported figure is still one
  # evaluation of the best-on-validation checkpoint).
  curve_data = {"test_curve": as_batch(data.test)} if config.train.get("test_curve") else None
  result = fit(init_fn=learner.init_fn, loss_fn=learner.loss_fn, tx=learner.tx,
               train_step=learner.train_step, train_data=train_rows,
               val_data=as_batch(data.val), cfg=config.train, workdir=workdir, seed=config.seed,
               num_seeds=num_models, augment_fn=augment_fn, progress=config.progress,
               writer=writer, mesh=mesh, curve_data=curve_data,
               hparams=swept.hparams() if swept else None,
               seed_cycle=swept.seeds if swept else None)

  # The test set, once, on the best checkpoint (per seed; in a sweep, each model's own best).
  test = loop.evaluate(result.state, as_batch(data.test), loss_fn=learner.loss_fn,
                       batch_size=config.train.eval_batch_size, num_seeds=num_models,
                       mesh=mesh)
  final_step = result.history[-1]["step"] if result.history else 0
  writer.write(final_step, "test", test)
  writer.close()

  # The figures need seed 0's logits on host: gather the (possibly sharded) weights to every
  # process (a collective), then predict locally on process 0 only.
  variants = sweep_results(swept, result, test, config.train) if swept else None
  shown = variants["best_index"] * swept.seeds if swept else 0  # Seed 0 of the best variant.
  weights = parallel.to_host({"params": result.state.params,
                              "model_state": result.state.model_state})
  if num_models > 1:
    weights = jax.tree.map(lambda a: a[shown], weights)
  results = {
      "task": config.task,
      "study": config.study,
      "data": f"{config.data.name} ({config.data.source}); train {len(train_split)}, "
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
                   "peak_learning_rate": peak_learning_rate(config.optim, batch_size)
                   if "lr_scaling" in config.optim else config.optim.learning_rate},
  }
  if swept:  # The headline is the best variant (chosen on validation); every variant is listed.
    best = variants["variants"][variants["best_index"]]
    results |= {"variants": variants["variants"], "best_variant": best["name"],
                "test_accuracy": best["test_accuracy"], "test_loss": best["test_loss"]}
  if not main_process:
    return results
  if swept:
    plot_sweep(swept, variants["variants"], workdir / "plots" / "sweep.png", best["name"],
               config.train)
  variables = {"params": weights["params"], **weights["model_state"]}
  logits = predict_logits(learner.logits_fn, variables, data.test.x,
                          config.train.eval_batch_size)
  regularised = (config.model.get("dropout", 0) > 0 or config.augment.max_shift
                 or config.augment.flip_lr)
  plot_results(workdir, result.history, test, logits, data, epoch_seconds=result.epoch_seconds,
               curves_title="Learning curves" + (" (train metrics measured with dropout and "
                                                 "augmentation on)" if regularised else ""))
  acc = results["test_accuracy"]
  return rundir.finish(
      workdir, results, start=start,
      summary=f"{config.study}: "
              + (f"{swept.describe()}; best (on validation) {results['best_variant']}: "
                 if swept else "")
              + f"test accuracy {100 * acc['mean']:.2f} %"
              + (f" ± {100 * acc['std']:.2f} (mean ± std of {config.num_seeds} seeds)"
                 if config.num_seeds > 1 else "") + f" on the {results['data_copy']}")


def sweep_results(swept: sweep.Sweep, result, test: dict, train_cfg) -> dict:
  """Per variant: test accuracy and loss (mean ± std over its seeds) and the validation score
  each model selected its best epoch by; the best variant by that validation score."""
  epochs = result.best_epochs or [result.best_epoch] * swept.num_models
  val = f"val_{train_cfg.best_metric}"
  return sweep.variants(swept, {
      "test_accuracy": test["accuracy"], "test_loss": test["xent"],
      val: sweep.at_best_epochs(result.history, epochs, "val", train_cfg.best_metric)},
      epochs, select=val, mode=train_cfg.best_mode)


def plot_sweep(swept: sweep.Sweep, variants: list[dict], path: Path, best: str | None,
               train_cfg) -> Path:
  """Test accuracy against each swept value, validation accuracy dashed when it selects."""
  return plots.sweep(variants, {n: swept.keys[n] for n in swept.names}, path,
                     metric="test_accuracy", ylabel="accuracy (%)", seeds=swept.seeds,
                     guide="val_accuracy" if train_cfg.best_metric == "accuracy" else None,
                     scale=100.0, min_span=1.0, best=best)


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
                   title="Most confidently wrong test images",
                   confidences=probs[worst, predictions[worst]])


# ------------------------------------------------------------------------ predict and export


def stored_model(config: ml_collections.ConfigDict, workdir: str | Path,
                 seed_index: int | None) -> tuple[int, int]:
  """(models stacked in the run's checkpoints, the one to restore): ``sweep.stored_model``."""
  return sweep.stored_model(sweep.parse(config), config.num_seeds, workdir, seed_index)


def restore_learner(config: ml_collections.ConfigDict, workdir: str | Path, *,
                    make_learner: Callable[..., Learner] = flax_learner,
                    seed_index: int | None = None):
  """(learner, variables, meta, inputs) of a run's best checkpoint, without its data: model
  ``seed_index`` of the stacked ones (default: ``stored_model``'s)."""
  inputs = json.loads(rundir.run_file(workdir, INPUTS_FILE).read_text())
  sample = np.zeros((1, *inputs["input_shape"]), np.uint8)
  learner = make_learner(config, len(inputs["class_names"]), sample, 1)
  params, model_state = jax.eval_shape(learner.init_fn, jax.random.PRNGKey(0))
  num_models, seed_index = stored_model(config, workdir, seed_index)
  variables, meta = rundir.restore_best(workdir, {"params": params, **model_state},
                                        num_seeds=num_models, seed_index=seed_index)
  return learner, variables, meta, inputs


def predictor(config: ml_collections.ConfigDict, workdir: str | Path, *,
              make_learner: Callable[..., Learner] = flax_learner) -> Predictor:
  """Class probabilities of uint8 images shaped like the training images (seed 0's best; a
  sweep's best variant's)."""
  learner, variables, _, inputs = restore_learner(config, workdir, make_learner=make_learner)
  logits = jax.jit(learner.logits_fn)
  return Predictor(predict=lambda images: np.asarray(jax.nn.softmax(logits(variables, images))),
                   class_names=inputs["class_names"], input_shape=tuple(inputs["input_shape"]),
                   resize="squash")


def exporter(config: ml_collections.ConfigDict, workdir: str | Path, *,
             seed_index: int | None = None, data_dir: str | None = None):
  """The run's best checkpoint as an ``Exportable`` (images -> logits), built from the plain
  ops (``adapters.plain_ops``), standardisation inside, tested on the run's test set; model
  ``seed_index`` of a vmapped run (default: seed 0, or a sweep's best variant's first seed)."""
  from playbook.export import adapters  # Export is not imported by training.
  data = load_data(config.data, data_dir)
  model = models.build(adapters.plain_ops(config.model), len(data.class_names))
  sample = jnp.zeros((1, *data.test.x.shape[1:]), jnp.float32)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), sample, train=False))
  num_models, seed_index = stored_model(config, workdir, seed_index)
  variables, meta = rundir.restore_best(workdir, dict(abstract), num_seeds=num_models,
                                        seed_index=seed_index)
  return adapters.classifier_exportable(
      name=config.study, model=model, variables=variables,
      preprocess=make_preprocess(config.data), data=data, seed=config.seed,
      description=f"{config.study}: best checkpoint (epoch {meta.get('epoch')}, validation "
                  f"{config.train.best_metric} {meta.get('val')}), seed {seed_index}")
