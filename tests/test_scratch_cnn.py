"""The scratch CNN's hand-derived layer and network gradients, checked against XLA and autodiff.

Each layer's forward pass is compared with XLA's own operation (``lax.conv_general_dilated``,
``lax.reduce_window``) and its backward pass with ``jax.vjp`` of that operation; the network's
parameter gradients with ``jax.grad`` of its objective. Gradient checks run in float64 inside
``jax.enable_x64(True)`` (no other test sees 64-bit mode), where a correct formula agrees to
~1e-16 and the tolerance is 1e-8. Every check is one jitted call: eager dispatch is slow.
"""

from __future__ import annotations

import functools
import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from playbook.models import scratch, scratch_cnn

TOLERANCE = 1e-8


def _relative_error(a, b) -> float:
  a, b = np.asarray(a), np.asarray(b)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b)))


def _assert_close(hand, auto, what: str):
  assert hand.shape == auto.shape, f"{what}: shape {hand.shape} != {auto.shape}"
  assert np.linalg.norm(auto) > 1e-6, f"{what}: a vanishing gradient would make the check vacuous"
  error = _relative_error(hand, auto)
  assert error <= TOLERANCE, f"{what}: relative error {error:.2e}"


def _lax_conv(x, w, b, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


def _lax_pool(x, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), padding)


# --- Convolution ----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def _conv_hand_and_autodiff(x, w, b, dy, *, stride, padding):
  y, cache = scratch_cnn.conv2d_forward(x, w, b, stride=stride, padding=padding)
  reference, vjp = jax.vjp(lambda x, w, b: _lax_conv(x, w, b, stride, padding), x, w, b)
  return (y, *scratch_cnn.conv2d_backward(dy, cache)), (reference, *vjp(dy))


# (x shape NHWC, kernel (kh, kw)): odd and even sizes, square and non-square, odd and even kernels.
CONV_CASES = [((2, 7, 9, 3), (3, 3)), ((2, 8, 6, 2), (3, 3)), ((1, 9, 8, 2), (2, 3))]


@pytest.mark.parametrize("shape, kernel", CONV_CASES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d_forward_and_backward_match_xla_and_its_vjp(shape, kernel, stride, padding):
  rng = np.random.default_rng(sum(shape) + stride)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=shape))
    w = jnp.asarray(rng.normal(size=(*kernel, shape[-1], 4)))
    b = jnp.asarray(rng.normal(size=4))
    out_h = scratch_cnn.conv_geometry(shape[1], kernel[0], stride, padding)[0]
    out_w = scratch_cnn.conv_geometry(shape[2], kernel[1], stride, padding)[0]
    dy = jnp.asarray(rng.normal(size=(shape[0], out_h, out_w, 4)))
    hand, auto = _conv_hand_and_autodiff(x, w, b, dy, stride=stride, padding=padding)
    assert hand[0].dtype == jnp.float64
    for name, h, a in zip(("y", "dx", "dw", "db"), hand, auto):
      _assert_close(h, a, name)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_input_gradient_is_the_full_convolution_with_the_flipped_kernel(stride):
  """dx = (dy dilated by the stride, zero-padded by k - 1) correlated with w flipped in space and
  with its channel axes swapped, then cropped by the forward padding (docs/conv_backprop.md)."""
  rng = np.random.default_rng(stride)
  with jax.enable_x64(True):
    x, w = jnp.asarray(rng.normal(size=(2, 8, 7, 3))), jnp.asarray(rng.normal(size=(3, 3, 3, 5)))
    out_h, top, bottom = scratch_cnn.conv_geometry(8, 3, stride, "SAME")
    out_w, left, right = scratch_cnn.conv_geometry(7, 3, stride, "SAME")
    out = (out_h, out_w)
    dy = jnp.asarray(rng.normal(size=(2, *out, 5)))

    @jax.jit
    def both(x, w, dy):
      _, cache = scratch_cnn.conv2d_forward(x, w, jnp.zeros(5), stride=stride, padding="SAME")
      flipped = w[::-1, ::-1].transpose(0, 1, 3, 2)  # (kh, kw, O, C).
      hp, wp = 8 + top + bottom, 7 + left + right
      pads = [(2, hp - (out[0] - 1) * stride - 1), (2, wp - (out[1] - 1) * stride - 1)]
      dxp = lax.conv_general_dilated(dy, flipped, (1, 1), pads, lhs_dilation=(stride, stride),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return scratch_cnn.conv2d_backward(dy, cache)[0], dxp[:, top:top + 8, left:left + 7]

    hand, full = both(x, w, dy)
    _assert_close(hand, full, "dx")


# --- Max-pooling ----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="padding")
def _pool_hand_and_autodiff(x, dy, *, padding):
  y, cache = scratch_cnn.max_pool_forward(x, padding=padding)
  reference, vjp = jax.vjp(lambda x: _lax_pool(x, padding), x)
  return (y, scratch_cnn.max_pool_backward(dy, cache)), (reference, vjp(dy)[0])


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (2, 8, 6, 2), (1, 5, 8, 1)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_max_pool_forward_and_backward_match_xla_and_its_vjp(shape, padding):
  rng = np.random.default_rng(sum(shape))
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=shape))  # Continuous values: no ties.
    ceil = padding == "SAME"
    out = [(n + ceil) // 2 for n in shape[1:3]]
    dy = jnp.asarray(rng.normal(size=(shape[0], *out, shape[3])))
    (y, dx), (reference, vjp_dx) = _pool_hand_and_autodiff(x, dy, padding=padding)
    np.testing.assert_array_equal(y, reference)
    _assert_close(dx, vjp_dx, "dx")
    # Each window's gradient lands on one element, so dx holds exactly dy's values.
    np.testing.assert_array_equal(np.sort(np.asarray(dx)[np.asarray(dx) != 0]),
                                  np.sort(np.asarray(dy).ravel()))


def test_max_pool_routes_a_tie_to_the_first_maximum_only():
  """Windows in row-major order (top-left first): the gradient goes to the first maximal element,
  whole, never split; an odd last row/column that no VALID window covers gets 0."""
  x = np.zeros((1, 5, 4, 1), np.float32)  # All-zero windows: four-way ties.
  x[0, 2, 1, 0] = x[0, 3, 0, 0] = 1.0     # Window (1, 0): a tie between its 2nd and 3rd elements.
  dy = np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 2, 2, 1)

  @jax.jit
  def pool(x, dy):
    y, cache = scratch_cnn.max_pool_forward(x, padding="VALID")
    return y, scratch_cnn.max_pool_backward(dy, cache)

  y, dx = map(np.asarray, pool(x, dy))
  np.testing.assert_array_equal(y[0, :, :, 0], [[0.0, 0.0], [1.0, 0.0]])
  expected = np.zeros((5, 4), np.float32)
  expected[0, 0], expected[0, 2], expected[2, 1], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
  np.testing.assert_array_equal(dx[0, :, :, 0], expected)


# --- ReLU and dense -------------------------------------------------------------------------------


def test_relu_backward_matches_vjp_and_is_zero_at_zero():
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    z, da = jnp.asarray(rng.normal(size=(3, 5, 4, 2))), jnp.asarray(rng.normal(size=(3, 5, 4, 2)))

    @jax.jit
    def both(z, da):
      a, cache = scratch_cnn.relu_forward(z)
      return scratch_cnn.relu_backward(da, cache), jax.vjp(jax.nn.relu, z)[1](da)[0]

    hand, auto = both(z, da)
    _assert_close(hand, auto, "dz")
    zero = scratch_cnn.relu_backward(jnp.ones(3), scratch_cnn.relu_forward(jnp.zeros(3))[1])
    np.testing.assert_array_equal(zero, 0.0)


def test_dense_backward_matches_vjp():
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    x, w, b = (jnp.asarray(rng.normal(size=s)) for s in ((6, 7), (7, 3), (3,)))
    dz = jnp.asarray(rng.normal(size=(6, 3)))

    @jax.jit
    def both(x, w, b, dz):
      z, cache = scratch_cnn.dense_forward(x, w, b)
      reference, vjp = jax.vjp(lambda x, w, b: x @ w + b, x, w, b)
      return (z, *scratch_cnn.dense_backward(dz, cache)), (reference, *vjp(dz))

    for name, h, a in zip(("z", "dx", "dw", "db"), *both(x, w, b, dz)):
      _assert_close(h, a, name)


# --- The network ----------------------------------------------------------------------------------


def _problem(seed: int, input_shape, widths, hidden, batch: int = 4, num_classes: int = 5):
  """Parameters with non-zero biases (gradients in general position), inputs and labels, drawn
  with numpy (eager ``jax.random`` compiles every call): float64 inside enable_x64."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: scratch_cnn.init_params(
      jax.random.PRNGKey(0), input_shape, widths=widths, num_classes=num_classes, hidden=hidden))
  params = [{"w": jnp.asarray(rng.normal(0, np.sqrt(2 / np.prod(p["w"].shape[:-1])),
                                         p["w"].shape)),
             "b": jnp.asarray(rng.normal(0, 0.1, p["b"].shape))} for p in shapes]
  x = jnp.asarray(rng.normal(size=(batch, *input_shape)))
  labels = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  return params, x, labels


@jax.jit
def _network_hand_and_autodiff(params, x, labels, l2):
  loss, metrics, hand = scratch_cnn.loss_and_grads(params, x, labels, l2=l2)
  objective, auto = jax.value_and_grad(scratch_cnn.objective)(params, x, labels, l2=l2)
  return loss, objective, metrics, hand, auto


# (input shape, conv widths, hidden dense widths): even sizes; odd sizes (a pool drops a row)
# with three channels and a hidden dense layer.
NETWORKS = [((12, 8, 1), (3, 4), ()), ((11, 9, 3), (2, 3), (6,))]


@pytest.mark.parametrize("input_shape, widths, hidden", NETWORKS)
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_network_parameter_gradients_match_autodiff(input_shape, widths, hidden, l2):
  with jax.enable_x64(True):
    params, x, labels = _problem(len(hidden), input_shape, widths, hidden)
    loss, objective, metrics, hand, auto = _network_hand_and_autodiff(params, x, labels, l2)
    assert len(hand) == len(params) == len(widths) + len(hidden) + 1
    np.testing.assert_allclose(loss, objective, rtol=1e-14)
    penalty = 0.5 * l2 * sum(float(jnp.sum(p["w"] ** 2)) for p in params)
    np.testing.assert_allclose(float(loss - metrics["xent"]), penalty, rtol=1e-12, atol=1e-15)
    for layer, (p, h, a) in enumerate(zip(params, hand, auto), start=1):
      for name in ("w", "b"):
        assert h[name].shape == p[name].shape and h[name].dtype == jnp.float64
        _assert_close(h[name], a[name], f"layer {layer} {name}")


def test_network_forward_is_the_xla_reference_network():
  """The objective itself is right: jax.grad of a wrong forward pass would agree with its own
  hand gradient, so the logits are compared with a network built from XLA's conv and pool."""
  params, x, labels = _problem(2, (12, 10, 2), (3, 4), (5,), batch=6)

  @jax.jit
  def both(params, x, labels):
    h = x
    for p in params[:2]:
      h = _lax_pool(jax.nn.relu(_lax_conv(h, p["w"], p["b"], 1, "SAME")), "VALID")
    h = jax.nn.relu(h.reshape(len(h), -1) @ params[2]["w"] + params[2]["b"])
    reference = h @ params[3]["w"] + params[3]["b"]
    logits, _ = scratch_cnn.forward(params, x)
    _, metrics, _ = scratch_cnn.loss_and_grads(params, x, labels, l2=0.0)
    return logits, reference, metrics

  logits, reference, metrics = both(params, x, labels)
  assert logits.shape == (6, 5)
  np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-5)
  xent, _ = scratch.softmax_cross_entropy(reference, labels)
  np.testing.assert_allclose(metrics["xent"], xent, rtol=1e-5)
  accuracy = np.mean(np.argmax(np.asarray(reference), -1) == np.asarray(labels))
  assert float(metrics["accuracy"]) == pytest.approx(accuracy)


def test_default_network_shapes_and_init():
  # The trainer's entry point; jitted, so the draws compile once together, not one by one.
  init = jax.jit(scratch_cnn.ScratchCNN().init_params, static_argnums=1)
  params = init(jax.random.PRNGKey(0), (28, 28, 1))
  assert [p["w"].shape for p in params] == [(3, 3, 1, 32), (3, 3, 32, 64), (7 * 7 * 64, 10)]
  assert [p["b"].shape for p in params] == [(32,), (64,), (10,)]
  np.testing.assert_allclose(float(jnp.var(params[1]["w"])), 2 / (9 * 32), rtol=0.05)  # He.
  assert all(float(jnp.abs(p["b"]).max()) == 0.0 for p in params)
  with pytest.raises(ValueError, match="Unknown init"):
    scratch_cnn.init_params(jax.random.PRNGKey(0), init="lecun")
  with pytest.raises(ValueError, match="too small"):
    scratch_cnn.init_params(jax.random.PRNGKey(0), (3, 3, 1))


def test_the_module_uses_no_autodiff():
  source = inspect.getsource(scratch_cnn)
  assert not re.search(r"jax\.(grad|vjp|value_and_grad|jvp|linearize)|custom_vjp|flax", source)


def test_hand_sgd_steps_lower_the_loss_of_a_small_batch():
  """Thirty steps of hand gradients and hand SGD fit 16 examples (float32, as in training)."""
  net = scratch_cnn.ScratchCNN(widths=(4, 8), num_classes=3)
  params, x, labels = _problem(3, (8, 8, 1), net.widths, net.hidden, batch=16, num_classes=3)

  @jax.jit
  def train(params):
    def step(carry, _):
      params, velocity = carry
      loss, metrics, grads = net.loss_and_grads(params, x, labels, l2=1e-4)
      params, velocity = scratch.sgd_momentum(params, velocity, grads, learning_rate=0.05,
                                              momentum=0.9)
      return (params, velocity), (loss, metrics["accuracy"])
    (params, _), history = lax.scan(step, (params, scratch.momentum_init(params)), length=30)
    return params, history

  params, (losses, accuracy) = train(params)
  assert float(losses[-1]) < 0.5 * float(losses[0]), losses
  assert float(accuracy[-1]) >= 0.9
