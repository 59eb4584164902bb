"""CIFAR-10 models: the custom-VJP conv equals XLA's, whitening whitens, lookahead syncs,
reflect crops, and both quick configs train end to end on tiny official-layout batches."""

from __future__ import annotations

import hashlib
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from playbook import tasks
from playbook.data import augment, cifar10
from playbook.models import fast_conv, resnet_fast
import ml_collections

from playbook.train.optim import learning_rate_schedule, lookahead, make_optimizer
from test_cifar_data import official_batches


@pytest.mark.parametrize("kernel_size,padding", [(3, "SAME"), (3, "VALID"), (2, "VALID")])
def test_fast_conv_matches_xla_in_value_and_gradient(kernel_size, padding):
  kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (4, 9, 9, 5))
  w = jax.random.normal(kw, (kernel_size, kernel_size, 5, 7))
  reference = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=fast_conv.DIMENSION_NUMBERS)
  y = fast_conv.conv2d(x, w, padding)
  np.testing.assert_allclose(y, reference(x, w), rtol=1e-5, atol=1e-5)  # Matmul vs conv: rounding.
  g = jax.random.normal(kg, y.shape)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * g)
  fast_dx, fast_dw = jax.grad(loss(lambda x, w: fast_conv.conv2d(x, w, padding)), (0, 1))(x, w)
  ref_dx, ref_dw = jax.grad(loss(reference), (0, 1))(x, w)
  np.testing.assert_allclose(fast_dw, ref_dw, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(fast_dx, ref_dx, rtol=1e-5, atol=1e-4)


def test_conv_module_fast_and_plain_share_parameters_and_gradients():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))
  fast, plain = fast_conv.Conv(4, fast=True), fast_conv.Conv(4, fast=False)
  params = fast.init(jax.random.PRNGKey(2), x)
  grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               grad(fast), grad(plain))


def test_whitening_kernel_whitens_2x2_patches():
  images = np.random.default_rng(0).normal(size=(64, 8, 8, 3)) @ np.diag([1.0, 3.0, 0.5])
  kernel = resnet_fast.whitening_kernel(images, eps=0.0)
  assert kernel.shape == (2, 2, 3, 24)
  out = jax.lax.conv_general_dilated(jnp.asarray(images, jnp.float32), kernel, (1, 1), "VALID",
                                     dimension_numbers=fast_conv.DIMENSION_NUMBERS)
  half = np.asarray(out).reshape(-1, 24)[:, :12]
  cov = np.cov(half, rowvar=False)
  np.testing.assert_allclose(cov, np.eye(12), atol=0.02)


def test_lookahead_moves_slow_weights_and_resets_fast_ones_every_k_steps():
  tx = optax.chain(optax.sgd(1.0), lookahead(every=2, step_size=0.5))
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  grads = {"w": jnp.array(-1.0)}  # Each SGD step adds 1.
  updates, state = tx.update(grads, state, params)
  params = optax.apply_updates(params, updates)
  assert float(params["w"]) == 1.0  # Step 1: plain SGD.
  updates, state = tx.update(grads, state, params)
  params = optax.apply_updates(params, updates)
  assert float(params["w"]) == 1.0  # Step 2: fast 2.0, slow 0 + 0.5 * (2 - 0); fast := slow.


def test_lookahead_ramp_follows_the_fast_weights_early_and_averages_late():
  tx = optax.chain(optax.sgd(1.0), lookahead(every=1, step_size=0.5, ramp_power=3.0,
                                             total_steps=2))
  params, grads = {"w": jnp.zeros(())}, {"w": jnp.array(-1.0)}
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  params = optax.apply_updates(params, updates)
  # Step 1 of 2: slow keeps 0.5 * (1/2)**3 = 1/16 of itself (0): 0 + 15/16 * (1 - 0).
  np.testing.assert_allclose(params["w"], 15 / 16)
  updates, state = tx.update(grads, state, params)
  params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params["w"], 0.5 * 15 / 16 + 0.5 * (15 / 16 + 1))  # Keeps 1/2.


def test_norm_bias_lr_scale_is_lr_times_s_with_weight_decay_over_s():
  cfg = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, momentum=0.9,
                                       weight_decay=0.01, schedule="constant", warmup_epochs=0.0,
                                       norm_bias_lr_scale=64.0))
  params = {"BatchNorm_0": {"bias": jnp.array([1.0])}, "Conv_0": {"kernel": jnp.array([1.0])}}
  grads = {"BatchNorm_0": {"bias": jnp.array([0.5])}, "Conv_0": {"kernel": jnp.array([0.5])}}
  updates, _ = make_optimizer(cfg, 1, 1).update(grads, make_optimizer(cfg, 1, 1).init(params),
                                                params)
  # Nesterov's first step is (1 + momentum) x the step; airbench: lr 64 x 0.1, decay 0.01 / 64.
  np.testing.assert_allclose(updates["BatchNorm_0"]["bias"], -1.9 * 6.4 * (0.5 + 0.01 / 64))
  np.testing.assert_allclose(updates["Conv_0"]["kernel"], -1.9 * 0.1 * (0.5 + 0.01))


def test_triangle_schedule_is_airbench_piecewise_linear():
  cfg = ml_collections.ConfigDict(dict(learning_rate=2.0, schedule="triangle",
                                       warmup_fraction=0.25, start_factor=0.2,
                                       end_factor=0.1, warmup_epochs=0.0))
  schedule = learning_rate_schedule(cfg, steps_per_epoch=10, num_epochs=4)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(25),
                              schedule(40)], [0.4, 1.2, 2.0, 1.1, 0.2], rtol=1e-6)


def test_dirac_init_starts_the_first_filters_as_the_identity():
  kernel = resnet_fast.dirac_conv_init(jax.random.PRNGKey(0), (3, 3, 4, 6))
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 5, 4))
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                   dimension_numbers=fast_conv.DIMENSION_NUMBERS)
  np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
  bound = 1 / np.sqrt(3 * 3 * 4)  # The other filters: PyTorch's U(-1/sqrt(fan_in), +).
  assert 0.5 * bound < float(jnp.abs(kernel[..., 4:]).max()) <= bound


def test_reflect_crop_never_brings_in_zeros_and_follows_the_rng():
  images = jnp.ones((16, 8, 8, 3))
  zero = augment.random_translate(jax.random.PRNGKey(0), images, 2)
  reflect = augment.random_translate(jax.random.PRNGKey(0), images, 2, pad_mode="reflect")
  assert reflect.shape == images.shape and float(reflect.min()) == 1.0
  assert float(zero.min()) == 0.0
  again = augment.random_translate(jax.random.PRNGKey(0), images * jnp.arange(8.0)[:, None],
                                   2, pad_mode="reflect")
  np.testing.assert_array_equal(
      again, augment.random_translate(jax.random.PRNGKey(0), images * jnp.arange(8.0)[:, None],
                                      2, pad_mode="reflect"))


@pytest.mark.parametrize("study", ["cifar10_cnn", "cifar10_fast"])
def test_quick_config_trains_end_to_end(study, tmp_path, monkeypatch):
  members, _ = official_batches(n=40)
  folder = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
  folder.mkdir(parents=True)
  for name, data in members.items():
    (folder / name).write_bytes(data)
  monkeypatch.setattr(cifar10, "BATCH_MD5",
                      {k: hashlib.md5(v).hexdigest() for k, v in members.items()})
  experiment = importlib.import_module(f"experiments.{study}")
  config = experiment.get_config("quick")
  config.data.source, config.data.dir = "official", str(tmp_path / "data")
  config.data.train_limit, config.data.val_size = 160, 40
  config.train.batch_size, config.train.eval_batch_size = 32, 40
  config.train.num_epochs, config.progress = 2, False
  config.tensorboard = study == "cifar10_cnn"  # Off: metrics.jsonl only, no TensorFlow writer.
  results = tasks.get(config.task).train(config, tmp_path / "run")
  assert (tmp_path / "run" / "tensorboard").exists() == config.tensorboard
  assert results["epochs_run"] == 2
  assert results["data_copy"] == "official CIFAR-10 python batches"
  assert 0.0 <= results["test_accuracy"]["mean"] <= 1.0
  assert np.isfinite(results["test_loss"]["mean"])
  rows = [json.loads(line)
          for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  epochs = [row for row in rows if row["split"] == "test_curve"]
  assert len(epochs) == 2  # The test set after each epoch, for the curves.
  for plot in ("learning_curves", "confusion_matrix", "test_predictions",
               "most_confident_mistakes", "accuracy_vs_time"):
    assert (tmp_path / "run" / "plots" / f"{plot}.png").is_file()


def test_reshape_max_pool_matches_nn_max_pool_in_value_and_gradient():
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 7, 6, 3))  # Odd height: last row dropped.
  pool = lambda fast: lambda x: fast_conv.max_pool_2x2(x, fast=fast)
  np.testing.assert_array_equal(pool(True)(x), pool(False)(x))
  assert pool(True)(x).shape == (2, 3, 3, 3)
  grad = lambda fast: jax.grad(lambda x: jnp.sum(pool(fast)(x) ** 3))(x)
  np.testing.assert_allclose(grad(True), grad(False), rtol=1e-6)
