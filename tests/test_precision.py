"""Mixed precision (``config.precision``): float32 parameters, bfloat16 compute, float32 logits,
losses and normalisation statistics, for every model family; float32 is the unchanged default."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from playbook import models
from playbook.models import efficientnet_lite, precision, scratch, scratch_cnn, vgg
from playbook.models.lstm import zero_carry
from playbook.stylize.losses import StyleObjective, gram_matrix
from playbook.tasks import ConfigError
from playbook.train.losses import classification_loss

BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
IMAGES = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3), jnp.float32)
TOKENS = jax.random.randint(jax.random.PRNGKey(2), (4, 16), 0, 20)

CONFIGS = {
    "mlp": dict(name="mlp", hidden=(64, 32), dropout=0.2),
    "seed_cnn": dict(name="seed_cnn", widths=(8, 16), hidden=32, conv_dropout=0.25, dropout=0.5,
                     fast_conv=True),
    "seed_cnn_plain": dict(name="seed_cnn", widths=(8, 16), hidden=32, conv_dropout=0.25,
                           dropout=0.5, fast_conv=False),
    "fast_resnet": dict(name="fast_resnet", widths=(8, 16, 16), bn_momentum=0.4, tta_flip=True,
                        fast_conv=True),
}


def image_model(name, dtype):
  return models.build(ml_collections.ConfigDict(CONFIGS[name]), 10, dtype=dtype)


def lstm(dtype):
  cfg = ml_collections.ConfigDict(dict(name="char_lstm", hidden=32, num_layers=2, dropout=0.5,
                                       unroll=1))
  return models.build(cfg, 20, dtype=dtype)


def heavy_ops(fn, *args) -> list[tuple[str, tuple]]:
  """(primitive, input dtypes) of every matmul and convolution ``fn`` traces to, sub-programs
  (scan, custom VJPs, jit) included; not Winograd's kernel transform, a (t*t, 9) constant times
  the weights, which runs in float32 (``winograd.kernel_transform``)."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      kernel_transform = eqn.primitive.name == "dot_general" and eqn.invars[0].aval.shape in (
          (16, 9), (36, 9))
      if eqn.primitive.name in ("dot_general", "conv_general_dilated") and not kernel_transform:
        found.append((eqn.primitive.name, tuple(jnp.dtype(v.aval.dtype) for v in eqn.invars)))
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if hasattr(sub, "eqns"):
            walk(sub)
          elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
            walk(sub.jaxpr)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  assert found, "no matmul or convolution traced"
  return found


def all_in(ops, dtype) -> bool:
  return all(d == dtype for _, dtypes in ops for d in dtypes)


def assert_float32_tree(tree):
  leaves = jax.tree.leaves(tree)
  assert leaves and all(leaf.dtype == F32 for leaf in leaves), {leaf.dtype for leaf in leaves}


def assert_close(low, full, rtol):
  scale = float(jnp.max(jnp.abs(full)))
  assert float(jnp.max(jnp.abs(low - full))) <= rtol * scale, (float(jnp.max(jnp.abs(low - full))),
                                                               scale)


# ---- the config value ---------------------------------------------------------------------------

def test_compute_dtype_maps_the_config_value():
  config = ml_collections.ConfigDict({"precision": "bfloat16"})
  assert precision.compute_dtype(config) == BF16
  config.precision = "float32"
  assert precision.compute_dtype(config) == F32
  assert precision.compute_dtype(ml_collections.ConfigDict()) == F32  # No key: float32.


def test_stylize_validates_precision():
  from playbook.tasks import stylize
  config = stylize.quick(stylize.base_config())
  config.precision = "bfloat16"
  stylize.validate(config)
  config.precision = "float16"
  with pytest.raises(ConfigError, match="precision"):
    stylize.validate(config)


def test_a_bfloat16_matmul_and_its_gradient_sum_in_float32():
  """``precision.matmul``: bfloat16 operands in the product and in both gradient matmuls, float32
  sums and result; the gradients in their inputs' dtypes and close to float32's."""
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 64))
  w = jax.random.normal(jax.random.PRNGKey(5), (64, 32))
  y = precision.matmul(x, w, BF16)
  assert y.dtype == F32
  np.testing.assert_array_equal(y, precision.dot(x, w, BF16))
  np.testing.assert_array_equal(precision.matmul(x, w, F32), x @ w)  # Untouched in float32.
  loss = lambda dtype: lambda x, w: jnp.sum(jnp.sin(precision.matmul(x, w, dtype)))
  ops = heavy_ops(jax.grad(loss(BF16), argnums=(0, 1)), x, w)
  assert len(ops) == 3 and all_in(ops, BF16)  # Forward, dx, dw: all with bfloat16 operands.
  for low, full in zip(jax.grad(loss(BF16), argnums=(0, 1))(x, w),
                       jax.grad(loss(F32), argnums=(0, 1))(x, w)):
    assert low.dtype == F32
    assert_close(low, full, rtol=5e-2)


SCRATCH = {"scratch_mlp": dict(name="scratch_mlp", hidden=(64, 32), activation="tanh", init="he"),
           "scratch_cnn": dict(name="scratch_cnn", widths=(4, 8), hidden=(16,), init="he")}


def _cosine(a, b) -> float:
  a, b = np.ravel(a), np.ravel(b)
  return float(np.vdot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


@pytest.mark.parametrize("name", list(SCRATCH))
def test_hand_derived_networks_compute_in_bfloat16_with_float32_gradients(name):
  """Every matmul of the hand-derived forward and backward passes takes bfloat16 operands; the
  kept activations are bfloat16, the logits and gradients float32; and the gradients agree with
  autodiff of the same bfloat16 forward pass, and with the float32 network's gradients as far as
  bfloat16's rounding of the activations allows (a max-pool's winner can change with it)."""
  module = scratch if name == "scratch_mlp" else scratch_cnn
  full, low = (models.build(ml_collections.ConfigDict(SCRATCH[name]), 10, dtype=d)
               for d in (F32, BF16))
  images = jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))
  labels = jnp.arange(8) % 10
  params = full.init_params(jax.random.PRNGKey(0), images.shape[1:])
  x = images if name == "scratch_cnn" else images.reshape(8, -1)
  kw = {} if name == "scratch_cnn" else {"activation": "tanh"}
  logits, kept = module.forward(params, x, dtype=BF16, **kw)
  assert logits.dtype == F32
  weights = {id(layer["w"]) for layer in params}  # The caches hold them; the rest is activations.
  activations = [a for a in jax.tree.leaves(kept)
                 if jnp.issubdtype(a.dtype, jnp.floating) and id(a) not in weights]
  assert activations and all(a.dtype == BF16 for a in activations)
  ops = heavy_ops(lambda p: low.loss_and_grads(p, images, labels, l2=1e-3)[2], params)
  assert all_in(ops, BF16) and len(ops) >= 3 * len(params) - 1  # Forward, dw and dx matmuls.
  step = lambda net: jax.jit(lambda p: net.loss_and_grads(p, images, labels, l2=1e-3)[2])
  low_grads, full_grads = step(low)(params), step(full)(params)
  assert_float32_tree(low_grads)
  autodiff = jax.jit(jax.grad(lambda p: module.objective(p, x, labels, l2=1e-3, dtype=BF16,
                                                          **kw)))(params)
  for hand, auto, full_g in zip(*map(jax.tree.leaves, (low_grads, autodiff, full_grads))):
    assert _cosine(hand, auto) > 0.999 and _cosine(hand, full_g) > 0.99
  relative = lambda a, b: np.linalg.norm(_flat(a) - _flat(b)) / np.linalg.norm(_flat(b))
  assert relative(low_grads, autodiff) < 1e-2
  assert 0 < relative(low_grads, full_grads) < 0.1  # Not zero: it did compute in bfloat16.


# ---- classifiers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONFIGS))
def test_image_classifiers_compute_in_bfloat16_with_float32_params_and_logits(name):
  full, low = image_model(name, jnp.float32), image_model(name, jnp.bfloat16)
  variables = full.init(jax.random.PRNGKey(0), IMAGES, train=False)
  assert_float32_tree(variables)
  assert_float32_tree(low.init(jax.random.PRNGKey(0), IMAGES, train=False))  # param_dtype f32.

  # Every matmul and convolution, forward and backward, takes bfloat16 operands.
  loss_fn = classification_loss(low, preprocess=lambda x: x)
  state = {k: v for k, v in variables.items() if k != "params"}
  batch = {"image": IMAGES, "label": jnp.arange(4) % 10}
  grad_fn = jax.grad(lambda p: loss_fn(p, state, batch, jax.random.PRNGKey(3), True)[0])
  assert all_in(heavy_ops(grad_fn, variables["params"]), BF16)
  assert all_in(heavy_ops(lambda p: full.apply({**variables, "params": p}, IMAGES, train=False),
                          variables["params"]), F32)

  (loss, (new_state, metrics)), grads = jax.value_and_grad(
      lambda p: loss_fn(p, state, batch, jax.random.PRNGKey(3), True), has_aux=True)(
          variables["params"])
  assert loss.dtype == F32 and metrics["xent"].dtype == F32
  assert_float32_tree(grads)
  if new_state:
    assert_float32_tree(new_state)  # BatchNorm's running statistics (fast_resnet).

  logits_low = low.apply(variables, IMAGES, train=False)
  logits_full = full.apply(variables, IMAGES, train=False)
  assert logits_low.dtype == F32 and logits_full.dtype == F32
  assert_close(logits_low, logits_full, 0.05)


def test_batchnorm_statistics_are_float32_and_close_in_bfloat16():
  full, low = image_model("fast_resnet", jnp.float32), image_model("fast_resnet", jnp.bfloat16)
  variables = full.init(jax.random.PRNGKey(0), IMAGES, train=False)
  stats = {}
  for key, model in (("full", full), ("low", low)):
    _, updated = model.apply(variables, IMAGES, train=True, mutable=["batch_stats"])
    assert_float32_tree(updated["batch_stats"])
    stats[key] = updated["batch_stats"]
  for a, b in zip(jax.tree.leaves(stats["low"]), jax.tree.leaves(stats["full"])):
    assert_close(a, b, 0.05)


def test_float32_is_the_default_path_bit_for_bit():
  for name in CONFIGS:
    default = models.build(ml_collections.ConfigDict(CONFIGS[name]), 10)
    explicit = image_model(name, jnp.float32)
    variables = default.init(jax.random.PRNGKey(0), IMAGES, train=False)
    np.testing.assert_array_equal(default.apply(variables, IMAGES, train=False),
                                  explicit.apply(variables, IMAGES, train=False))


# ---- the LSTM ----------------------------------------------------------------------------------

def test_lstm_computes_in_bfloat16_and_keeps_float32_state_and_logits():
  full, low = lstm(jnp.float32), lstm(jnp.bfloat16)
  carry = zero_carry(2, 4, 32)
  params = full.init(jax.random.PRNGKey(0), TOKENS, carry, train=False)["params"]
  assert_float32_tree(params)

  def loss(p):
    logits, _ = low.apply({"params": p}, TOKENS, carry, train=False)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  assert all_in(heavy_ops(jax.grad(loss), params), BF16)  # Recurrent matmuls in the scan too.
  assert_float32_tree(jax.grad(loss)(params))
  logits_low, (h, c) = low.apply({"params": params}, TOKENS, carry, train=False)
  logits_full, (h32, c32) = full.apply({"params": params}, TOKENS, carry, train=False)
  assert logits_low.dtype == F32 and h.dtype == F32 and c.dtype == F32  # The carried state.
  assert_close(logits_low, logits_full, 0.05)
  assert_close(c, c32, 0.05)


# ---- the backbones and style transfer ---------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda d: vgg.VGG(16, pooling="avgmax", dtype=d),
    lambda d: vgg.VGG(16, pooling="avgmax", conv_impl="winograd", dtype=d),
    lambda d: efficientnet_lite.EfficientNetLite("lite0", include_top=False, dtype=d),
], ids=["vgg16", "vgg16_winograd", "efficientnet_lite0"])
def test_backbones_compute_in_bfloat16_and_return_float32_features(make):
  full, low = make(jnp.float32), make(jnp.bfloat16)
  variables = full.init(jax.random.PRNGKey(0), IMAGES, train=False)
  assert_float32_tree(variables)
  ops = heavy_ops(lambda v: low.apply(v, IMAGES, train=False), variables)
  assert all_in(ops, BF16)
  features_low = low.apply(variables, IMAGES, train=False)
  assert features_low.dtype == F32
  assert_close(features_low, full.apply(variables, IMAGES, train=False), 0.05)
  if "batch_stats" in variables:  # EfficientNet's BatchNorm, fine-tuning mode.
    _, updated = low.apply(variables, IMAGES, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.PRNGKey(0)})
    assert_float32_tree(updated["batch_stats"])


def test_style_losses_are_float32_on_bfloat16_features():
  def objective(dtype):
    return StyleObjective(backbone=vgg.VGG(16, dtype=dtype),
                          content_layers={"block2_conv2": 1.0},
                          style_layers={"block1_conv1": 0.5, "block2_conv1": 0.5},
                          content_weight=1.0, style_weight=1.0, tv_weight=1e-3)

  full, low = objective(jnp.float32), objective(jnp.bfloat16)
  params = vgg.VGG(16).init(jax.random.PRNGKey(0), IMAGES[:1])["params"]
  image, content, style = 50 * IMAGES[:1], 50 * IMAGES[1:2], 50 * IMAGES[2:3]
  assert low.features(params, image)["block1_conv1"].dtype == BF16  # Activations in bfloat16.
  targets = low.targets(params, content, style)
  assert all(g.dtype == F32 for g in targets["style"].values())  # Gram matrices in float32.
  assert gram_matrix(jnp.ones((1, 4, 4, 3), jnp.bfloat16)).dtype == F32
  parts = low.parts(params, image, targets)
  assert all(v.dtype == F32 for v in parts.values())
  grad = jax.grad(lambda x: low(params, x, targets))(image)
  assert grad.dtype == F32 and bool(jnp.all(jnp.isfinite(grad)))
  ops = heavy_ops(jax.grad(lambda x: low(params, x, targets)), image)
  assert all_in([op for op in ops if op[0] == "conv_general_dilated"], BF16)  # VGG, both ways.
  assert all_in([op for op in ops if op[0] == "dot_general"], F32)  # The Gram matrices.
  full_parts = full.parts(params, image, full.targets(params, content, style))
  for key in ("content", "style", "total"):
    assert abs(float(parts[key]) - float(full_parts[key])) <= 0.05 * abs(float(full_parts[key]))


# ---- a run -------------------------------------------------------------------------------------

def test_quick_mnist_mlp_trains_in_bfloat16(real_data_dir, tmp_path):
  from experiments import mnist_mlp
  from playbook import tasks
  config = mnist_mlp.get_config("quick")
  config.precision = "bfloat16"
  config.progress = False
  config.tensorboard = False
  results = tasks.get(config.task).train(config, tmp_path)
  assert results["test_accuracy"]["mean"] > 0.8  # Chance is 0.1; float32 reaches about 0.88.
