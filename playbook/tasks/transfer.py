"""Transfer learning: an ImageNet backbone and a new head, frozen (cached features) or fine-tuned.

``frozen``: the backbone's pooled features of every image (and of its mirror image, as
augmentation, for the training images) are computed once and cached in ``DIR/features/``; a
linear head on standardised features then trains in seconds. ``finetune``: backbone and head train
together from the pretrained weights with only the head and the backbone's top blocks unfrozen
(``models.transfer.BACKBONES[...].top_blocks``), BatchNorm statistics fixed, a lower learning rate
(``finetune.*``) and random flips and shifts on the device.

``data.select_size`` training images are held out for model selection (the ``best`` checkpoint);
the validation images are the test set, evaluated once per run: that is the figure reported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from playbook.data import augment
from playbook.data.image_folder import FileSplit, image_folder_split
from playbook.data.images import image_batches, load_image
from playbook.models import precision, transfer
from playbook.run import plots, rundir
from playbook.run.writer import MetricWriter
from playbook.tasks import Predictor, classify, run_config, schema
from playbook.train import fit, freeze, loop, sweep
from playbook.train.losses import classification_loss
from playbook.train.optim import make_optimizer


def base_config(study: str = "cats_dogs") -> ml_collections.ConfigDict:
  """Cats vs dogs from a VGG16 backbone, frozen; ``backbone`` and ``mode`` pick the others."""
  config = run_config("transfer", study)
  config.backbone = "vgg16"      # vgg16 | efficientnet_lite0
  config.mode = "frozen"         # frozen | finetune

  config.data = ml_collections.ConfigDict()
  config.data.name = "cats_and_dogs"
  config.data.dir = ""  # Empty: $PLAYBOOK_DATA_DIR, else ~/.cache/playbook.
  config.data.select_size = 400  # Training images held out for model selection.
  config.data.split_seed = 0
  config.data.train_limit = ml_collections.config_dict.placeholder(int)  # Quick runs only.
  config.data.test_limit = ml_collections.config_dict.placeholder(int)
  config.data.image_size = 0     # Input side in pixels; 0: the backbone's own (224).

  config.features = ml_collections.ConfigDict()
  config.features.flip = True    # Mirror-image features of the training images as augmentation.
  config.features.batch_size = 25
  config.features.cache_dir = ""  # Empty: DIR/features.

  config.head = ml_collections.ConfigDict()
  config.head.dropout = 0.3

  # The head's optimiser (frozen mode); finetune mode replaces the numbers in finetune.*.
  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adamw"
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 1e-2
  config.optim.schedule = "cosine"
  config.optim.warmup_epochs = 1.0
  config.optim.label_smoothing = 0.0
  config.optim.clip_norm = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.num_epochs = 30
  config.train.eval_batch_size = 200
  config.train.patience = 0
  # Model selection on the held-out images' cross-entropy: their accuracy (400 images, steps of
  # 0.25 %) ties between most epochs of a head that trains in seconds.
  config.train.best_metric = "xent"
  config.train.best_mode = "min"
  config.train.log_every_steps = 10
  config.train.steps_per_call = 10  # Progress inside an epoch (finetune steps take seconds).

  config.finetune = ml_collections.ConfigDict()
  config.finetune.learning_rate = 1e-4
  config.finetune.num_epochs = 3
  config.finetune.batch_size = 16
  config.finetune.max_shift = 16  # Random translation (pixels) on the device, with random flips.

  # Sweeps in one program (playbook/train/sweep.py) of the head's (frozen) or the network's
  # (finetune: learning_rate is finetune.learning_rate) numbers, crossed with num_seeds.
  config.sweep = sweep.config_block()
  return config


def parse_sweep(config: ml_collections.ConfigDict) -> sweep.Sweep | None:
  """``config.sweep``, its names mapped to this task's keys: dropout is the head's, and in
  finetune mode the learning rate is finetune.learning_rate."""
  keys = {"dropout": "head.dropout"}
  if config.mode == "finetune":
    keys["learning_rate"] = "finetune.learning_rate"
  return sweep.parse(config, keys)


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """120 training images, 60 test images, a few epochs: for tests and quick looks."""
  config.update_from_flattened_dict({
      "data.train_limit": 120, "data.select_size": 40, "data.test_limit": 60,
      "train.num_epochs": 3, "train.batch_size": 16, "train.eval_batch_size": 20,
      "finetune.num_epochs": 1, "finetune.batch_size": 8})
  return config


# ---- data -----------------------------------------------------------------------------------

def subsample(split: FileSplit, limit: int | None, seed: int) -> FileSplit:
  """The first ``limit`` images of a fixed shuffle (both classes), or all of them."""
  if limit is None:
    return split
  return split.subset(np.sort(np.random.default_rng(seed).permutation(len(split))[:limit]))


def load_splits(config):
  """(train, select, test) file lists: select is held out of train; test is validation/."""
  data_dir = config.data.dir or None
  train = subsample(image_folder_split("train", data_dir), config.data.train_limit,
                    config.data.split_seed)
  test = subsample(image_folder_split("validation", data_dir), config.data.test_limit,
                   config.data.split_seed)
  order = np.random.default_rng(config.data.split_seed).permutation(len(train))
  select = train.subset(np.sort(order[:config.data.select_size]))
  train = train.subset(np.sort(order[config.data.select_size:]))
  return train, select, test


def image_size(config, backbone) -> int:
  return config.data.image_size or backbone.image_size


def load_pixels(paths, size: int, batch_size: int = 50) -> np.ndarray:
  return np.concatenate(list(image_batches(paths, size, batch_size)))


# ---- the two modes: each returns what the shared part needs ---------------------------------

def frozen_setup(config, workdir: Path, backbone, splits):
  """Cached backbone features in, a ``Head`` on standardised features out."""
  train, select, test = splits
  cache = Path(config.features.cache_dir or workdir / "features")
  variables = transfer.pretrained_variables(backbone.name)
  extract = lambda files, name, flip: transfer.cached_features(
      backbone, variables, files.paths, cache / name, flip=flip,
      image_size=image_size(config, backbone), batch_size=config.features.batch_size,
      progress=config.progress, dtype=precision.compute_dtype(config))
  train_x = extract(train, "train", config.features.flip)
  train_y = train.labels
  if config.features.flip:  # Mirror images as extra training examples.
    train_x, train_y = train_x.reshape(-1, train_x.shape[-1]), np.repeat(train.labels, 2)
  select_x, test_x = extract(select, "select", False), extract(test, "test", False)
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  np.savez(workdir / "feature_stats.npz", mean=mean, std=std)
  model, init_fn, tx = frozen_head(config, len(train.class_names), train_x.shape[-1],
                                    len(train_x))
  preprocess = lambda f: (f - mean) / std
  return dict(model=model, preprocess=preprocess, init_fn=init_fn, tx=tx, train_cfg=config.train,
              augment_fn=None, train=(train_x, train_y), select=(select_x, select.labels),
              test=(test_x, test.labels))


def make_tx(optim, train_cfg, num_train: int, swept: sweep.Sweep | None):
  """``optim``'s optimiser over ``train_cfg``'s epochs; a sweep's values data in its state."""
  make = lambda block: make_optimizer(block, max(1, num_train // train_cfg.batch_size),
                                      train_cfg.num_epochs, train_cfg.batch_size)
  return sweep.injected(make, optim, swept) if swept else make(optim)


def frozen_head(config, num_classes: int, feature_dim: int, num_train: int):
  """The head, its initialiser and optimiser, for features of width ``feature_dim``."""
  model = transfer.Head(num_classes, config.head.dropout)
  swept = parse_sweep(config)
  hparams = sweep.model_hparams(config, swept)

  def init_fn(rng):
    return model.init(rng, jnp.zeros((1, feature_dim)))["params"], dict(hparams)

  return model, init_fn, make_tx(config.optim, config.train, num_train, swept)


def finetune_optim(config):
  """The optimiser and train blocks of finetune mode: config.optim/train with finetune.*."""
  optim, train = ml_collections.ConfigDict(config.optim), ml_collections.ConfigDict(config.train)
  optim.learning_rate = config.finetune.learning_rate
  train.num_epochs = config.finetune.num_epochs
  train.batch_size = config.finetune.batch_size
  train.eval_batch_size = min(train.eval_batch_size, 50)
  return optim, train


def finetune_net(config, backbone, num_classes: int, num_train: int):
  """Backbone + head from the pretrained weights, and an optimiser that moves only the head and
  the backbone's top blocks."""
  model = transfer.TransferNet(backbone.make(True, dtype=precision.compute_dtype(config)),
                               num_classes, config.head.dropout)
  size = image_size(config, backbone)
  swept = parse_sweep(config)
  hparams = sweep.model_hparams(config, swept)

  def init_fn(rng):
    variables = transfer.with_pretrained(
        model.init(rng, jnp.zeros((1, size, size, 3)), train=False),
        transfer.pretrained_variables(backbone.name))
    params = variables.pop("params")
    return params, {**variables, **hparams}

  optim, train_cfg = finetune_optim(config)
  tx = freeze.frozen(make_tx(optim, train_cfg, num_train, swept),
                     transfer.finetune_trainable(backbone))
  return model, init_fn, tx


def finetune_setup(config, workdir: Path, backbone, splits):
  """Whole images in; the backbone's top blocks and the head train, BatchNorm fixed."""
  del workdir
  train, select, test = splits
  model, init_fn, tx = finetune_net(config, backbone, len(train.class_names), len(train))
  train_cfg = finetune_optim(config)[1]
  size = image_size(config, backbone)
  pixels = lambda split: load_pixels(split.paths, size)
  return dict(model=model, preprocess=backbone.preprocess, init_fn=init_fn, tx=tx,
              train_cfg=train_cfg, trainable=transfer.finetune_trainable(backbone),
              augment_fn=augment.image_augmenter(max_shift=config.finetune.max_shift,
                                                 flip_lr=True),
              train=(pixels(train), train.labels), select=(pixels(select), select.labels),
              test=(pixels(test), test.labels))


SETUPS = {"frozen": frozen_setup, "finetune": finetune_setup}


# ---- the run ----------------------------------------------------------------------------------

def validate(config: ml_collections.ConfigDict) -> None:
  """Refuses, before anything is read or written, a value transfer learning cannot take."""
  schema.check(config, schema.TRAINING, {
      "mode": schema.one_of(*SETUPS), "backbone": schema.one_of(*transfer.BACKBONES),
      "head.dropout": schema.FRACTION, "data.select_size": schema.POSITIVE_INT,
      "data.image_size": schema.NON_NEGATIVE_INT, "features.batch_size": schema.POSITIVE_INT,
      "features.flip": schema.BOOL, "finetune.learning_rate": schema.POSITIVE,
      "finetune.num_epochs": schema.POSITIVE_INT, "finetune.batch_size": schema.POSITIVE_INT,
      "finetune.max_shift": schema.NON_NEGATIVE_INT,
      "optim.name": schema.one_of("adam", "adamw", "sgd", "rmsprop"),
      "optim.schedule": schema.one_of("constant", "cosine", "onecycle"),
      "train.best_metric": schema.one_of("xent", "accuracy", "loss"),
  })
  schema.check_sweep(config, parse_sweep(config), sweep.USED_BY,
                     rules={"head.dropout": schema.FRACTION,
                            "finetune.learning_rate": schema.POSITIVE})


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
  start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
  validate(config)
  if (done := rundir.finished(workdir, config)) is not None:
    return done
  backbone = transfer.get_backbone(config.backbone)
  splits = load_splits(config)  # Before the workdir: a data error leaves no trace there.
  workdir = rundir.prepare(workdir, config)
  class_names = splits[0].class_names
  (workdir / "classes.json").write_text(json.dumps(class_names))
  setup = SETUPS[config.mode](config, workdir, backbone, splits)
  inputs_seconds = time.perf_counter() - start

  as_batch = lambda pair: {"image": pair[0], "label": pair[1]}
  loss_fn = classification_loss(setup["model"], preprocess=setup["preprocess"],
                                label_smoothing=config.optim.label_smoothing)
  if "trainable" in setup:  # Finetune: no backward pass through the frozen lower blocks.
    loss_fn = freeze.stop_frozen_gradients(loss_fn, setup["trainable"])
  swept = parse_sweep(config)
  num_models = swept.num_models if swept else config.num_seeds
  writer = MetricWriter(workdir, tensorboard=config.tensorboard)
  result = fit(init_fn=setup["init_fn"], loss_fn=loss_fn, tx=setup["tx"],
               train_data=as_batch(setup["train"]), val_data=as_batch(setup["select"]),
               cfg=setup["train_cfg"], workdir=workdir, seed=config.seed,
               num_seeds=num_models, augment_fn=setup["augment_fn"],
               progress=config.progress, writer=writer,
               hparams=swept.hparams() if swept else None,
               seed_cycle=swept.seeds if swept else None)
  test = loop.evaluate(result.state, as_batch(setup["test"]), loss_fn=loss_fn,
                       batch_size=setup["train_cfg"].eval_batch_size, num_seeds=num_models)
  writer.write(result.history[-1]["step"] if result.history else 0, "test", test)
  writer.close()

  # The headline and the figures: seed 0, or in a sweep the best variant (on the held-out
  # images), its first seed for the figures.
  variants = classify.sweep_results(swept, result, test, setup["train_cfg"]) if swept else None
  shown = variants["best_index"] * swept.seeds if swept else 0
  state = result.state if num_models == 1 else jax.tree.map(lambda a: a[shown], result.state)
  model, preprocess = setup["model"], setup["preprocess"]
  logits = classify.predict_logits(
      lambda v, x: model.apply(v, preprocess(x), train=False),
      {"params": state.params, **state.model_state}, setup["test"][0],
      setup["train_cfg"].eval_batch_size)
  plot_results(workdir, result.history, test, logits, splits[2])
  train_n, select_n, test_n = (len(s) for s in splits)
  augmentation = {"frozen": " (+ mirror images)" * config.features.flip,
                  "finetune": " (random flips and shifts)"}[config.mode]
  results = {
      "task": config.task, "study": config.study, "backbone": config.backbone,
      "mode": config.mode,
      "data": f"cats_and_dogs: train {train_n}{augmentation}, held out for selection "
              f"{select_n}, test (validation/) {test_n}",
      "test_accuracy": sweep.mean_std(test["accuracy"]),
      "test_correct": int(round(float(np.mean(test["accuracy"])) * test_n)),
      "test_count": test_n,
      "test_loss": sweep.mean_std(test["xent"]),
      "select_accuracy_best": float(np.max([  # The seeds' mean; a sweep's shown model's.
          np.atleast_1d(r["val"]["accuracy"])[shown] if swept else np.mean(r["val"]["accuracy"])
          for r in result.history])),
      "best_epoch": result.best_epoch, "epochs_run": len(result.history),
      "inputs_seconds": inputs_seconds,  # Image decoding (+ backbone features in frozen mode).
      "train_seconds": result.train_seconds,
      "train_steps_per_second": result.steps_per_second,
      "process_cpu_seconds": time.process_time() - cpu_start,
      "load_average_1min": {"start": load_start[0], "end": os.getloadavg()[0]},
  }
  if swept:  # The headline is the best variant's; every variant is listed.
    best = variants["variants"][variants["best_index"]]
    results |= {"variants": variants["variants"], "best_variant": best["name"],
                "test_accuracy": best["test_accuracy"], "test_loss": best["test_loss"],
                "test_correct": int(round(best["test_accuracy"]["mean"] * test_n))}
    classify.plot_sweep(swept, variants["variants"], workdir / "plots" / "sweep.png",
                        best["name"], setup["train_cfg"])
  return rundir.finish(
      workdir, results, start=start,
      summary=f"{config.study} {config.backbone} {config.mode}: "
              + (f"{swept.describe()}; best (held-out) {best['name']}: " if swept else "")
              + "test accuracy "
              f"{100 * results['test_accuracy']['mean']:.2f} % ({results['test_correct']}/"
              f"{test_n}; load average {load_start[0]:.1f} at start)")


def plot_results(workdir: Path, history, test, logits, test_split: FileSplit,
                 display_size: int = 128) -> None:
  """Curves, confusion matrix, 32 test images with predictions, the most confident mistakes."""
  plot_dir = workdir / "plots"
  labels, names = test_split.labels, test_split.class_names
  predictions = logits.argmax(-1)
  probs = np.asarray(jax.nn.softmax(logits))
  show = lambda idx: np.stack([load_image(test_split.paths[i], display_size) for i in idx])
  plots.learning_curves(history, plot_dir / "learning_curves.png", test=test,
                        title="Learning curves (val = images held out of train/)")
  plots.confusion_matrix(labels, predictions, names, plot_dir / "confusion_matrix.png")
  sample = np.sort(np.random.default_rng(0).permutation(len(labels))[:32])
  plots.image_grid(show(sample), labels[sample], predictions[sample], names,
                   plot_dir / "test_predictions.png", confidences=probs[sample, predictions[sample]],
                   title="Validation images: predicted (true)")
  wrong = np.flatnonzero(predictions != labels)
  worst = wrong[np.argsort(-probs[wrong, predictions[wrong]])][:32]
  if len(worst):
    plots.image_grid(show(worst), labels[worst], predictions[worst], names,
                     plot_dir / "most_confident_mistakes.png",
                     confidences=probs[worst, predictions[worst]],
                     title="Most confidently wrong validation images")


# ---- prediction from a finished run (launch/predict.py) --------------------------------------

def restore_head(config: ml_collections.ConfigDict, workdir: Path, class_names, *,
                 seed_index: int | None = None):
  """(model, variables, meta, feature stats or None) of a run's best checkpoint: the head alone
  in frozen mode, backbone + head in finetune mode; model ``seed_index`` of several (default:
  seed 0, or a sweep's best variant's first seed)."""
  backbone = transfer.get_backbone(config.backbone)
  stats = None
  if config.mode == "frozen":
    stats = np.load(rundir.run_file(workdir, "feature_stats.npz"))
    model, init_fn, _ = frozen_head(config, len(class_names), stats["mean"].shape[-1], 1)
  else:
    model, init_fn, _ = finetune_net(config, backbone, len(class_names), 1)
  params, model_state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  num_models, seed_index = sweep.stored_model(parse_sweep(config), config.num_seeds, workdir,
                                              seed_index)
  variables, meta = rundir.restore_best(workdir, {"params": params, **model_state},
                                        num_seeds=num_models, seed_index=seed_index)
  return model, variables, meta, stats


def predictor(config: ml_collections.ConfigDict, workdir: str | Path) -> Predictor:
  """Class probabilities of uint8 images (n, s, s, 3) from ``workdir``'s best checkpoint."""
  workdir = Path(workdir)
  backbone = transfer.get_backbone(config.backbone)
  class_names = json.loads(rundir.run_file(workdir, "classes.json").read_text())
  model, variables, _, stats = restore_head(config, workdir, class_names)
  if stats is not None:
    features = transfer.features_fn(backbone, transfer.pretrained_variables(backbone.name), False,
                                    precision.compute_dtype(config))
    preprocess = lambda images: (features(images) - stats["mean"]) / stats["std"]
  else:
    preprocess = backbone.preprocess
  predict = lambda images: np.asarray(jax.nn.softmax(classify.predict_logits(
      lambda v, x: model.apply(v, preprocess(x), train=False), variables, images, 16)))
  size = image_size(config, backbone)
  return Predictor(predict=predict, class_names=class_names, input_shape=(size, size, 3),
                   resize="crop")


# ---- export (python -m launch.export) ---------------------------------------------------------

def exporter(config: ml_collections.ConfigDict, workdir: str | Path, *,
             seed_index: int | None = None,
             data_dir: str | None = None, num_calibration: int = 32):
  """The whole classifier, ``images (B, s, s, 3) float32 RGB on 0..255 -> logits``, at the run's
  image size: the backbone's preprocessing, the pretrained backbone in eval mode (BatchNorm on its
  running statistics) and the trained head; in frozen mode with the training features'
  standardisation between them (``transfer.FrozenTransferNet``). Test images: the run's test
  split (``validation/``, ``data.test_limit`` of it), decoded and resized as training did;
  full-int8 calibration on ``num_calibration`` training images."""
  from playbook.data.splits import ImageDataset, Split  # Export-only imports.
  from playbook.export import adapters
  workdir = Path(workdir)
  class_names = json.loads(rundir.run_file(workdir, "classes.json").read_text())
  if data_dir:
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.dir = data_dir
  backbone = transfer.get_backbone(config.backbone)
  model, variables, meta, stats = restore_head(config, workdir, class_names,
                                               seed_index=seed_index)
  chosen = f"seed {seed_index}" if seed_index is not None else (
      "the sweep's best variant" if parse_sweep(config) else "seed 0")
  if config.mode == "frozen":
    model = transfer.FrozenTransferNet(backbone.make(True), len(class_names))
  else:  # An export computes in float32 whatever the run's precision (its weights are float32).
    model = model.clone(backbone=backbone.make(True))
  # The export holds the backbone's export form (Lite0: grouped depthwise convolutions).
  export_model = model.clone(backbone=backbone.make(True, export=True))
  if config.mode == "frozen":  # The pretrained backbone under backbone/, as TransferNet has it.
    pretrained = transfer.pretrained_variables(backbone.name)
    head = variables["params"]
    variables = {collection: {"backbone": tree} for collection, tree in pretrained.items()}
    variables["params"]["head"] = head
    variables["feature_stats"] = {"mean": stats["mean"], "std": stats["std"]}

  size = image_size(config, backbone)
  train, _, test = load_splits(config)
  pick = np.sort(np.random.default_rng(config.seed).permutation(len(train))[:num_calibration])
  calibration = train.subset(pick)
  calibration = Split(load_pixels(calibration.paths, size), calibration.labels)
  test_x = load_pixels(test.paths, size)
  data = ImageDataset(train=calibration, val=Split(test_x[:0], test.labels[:0]),
                      test=Split(test_x, test.labels), class_names=class_names)
  return adapters.classifier_exportable(
      name=f"{config.study}_{config.backbone}_{config.mode}", model=model, variables=variables,
      preprocess=backbone.preprocess, data=data, parity_batch=min(32, len(test_x)),
      num_calibration=len(pick), seed=config.seed, eval_batch=config.features.batch_size,
      export_model=export_model,
      description=f"{config.study} {config.backbone} {config.mode} at {size} px: best checkpoint "
                  f"(epoch {meta.get('epoch')}, held-out {config.train.best_metric} "
                  f"{meta.get('val')}), {chosen}; test: {len(test_x)} validation/ images")
