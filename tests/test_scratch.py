"""The scratch network's hand-derived gradients, checked against jax.grad and finite differences.

Every gradient check runs in float64 inside ``jax.enable_x64(True)``, so rounding cannot hide a
wrong formula (float32 rounding alone can exceed the 1e-7 tolerance), and no other test sees
64-bit mode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from playbook.models import scratch

ARCHITECTURES = [(7, 3), (6, 5, 4), (8, 6, 5, 3)]  # (n_0, ..., n_L): 1, 2 and 3 layers.
ACTIVATIONS = sorted(scratch.ACTIVATIONS)
BATCH = 9


def _problem(seed: int, sizes, batch: int = BATCH):
  """Xavier-scaled weights, non-zero biases (gradients in general position), inputs and labels.

  Drawn with numpy: eager ``jax.random`` compiles every call, which would dominate the test time.
  Arrays are float64 inside ``jax.enable_x64(True)`` and float32 outside it.
  """
  rng = np.random.default_rng(seed)
  params = [{"w": jnp.asarray(rng.normal(0, np.sqrt(2 / (n_in + n_out)), (n_in, n_out))),
             "b": jnp.asarray(rng.normal(0, 0.1, n_out))}
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]
  x = jnp.asarray(rng.normal(size=(batch, sizes[0])))
  labels = jnp.asarray(rng.integers(0, sizes[-1], batch), jnp.int32)
  return params, x, labels


@functools.partial(jax.jit, static_argnames="activation")
def _hand_and_autodiff(params, x, labels, l2, *, activation):
  """Both gradients of the same J, in one compiled call (eager op-by-op dispatch is slow)."""
  hand = scratch.loss_and_grads(params, x, labels, activation=activation, l2=l2)[2]
  auto = jax.grad(scratch.objective)(params, x, labels, activation=activation, l2=l2)
  return hand, auto


def _relative_error(a, b) -> float:
  a, b = np.asarray(a), np.asarray(b)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b)))


@pytest.mark.parametrize("sizes", ARCHITECTURES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_hand_gradients_match_autodiff(sizes, activation, l2):
  with jax.enable_x64(True):
    params, x, labels = _problem(len(sizes), sizes)
    assert x.dtype == jnp.float64 and params[0]["w"].dtype == jnp.float64
    hand, auto = _hand_and_autodiff(params, x, labels, l2, activation=activation)
    assert len(hand) == len(params)
    for layer, (h, a) in enumerate(zip(hand, auto)):
      for name in ("w", "b"):
        assert h[name].shape == params[layer][name].shape
        assert h[name].dtype == jnp.float64
        assert np.linalg.norm(a[name]) > 1e-6, "a vanishing gradient would make the check vacuous"
        error = _relative_error(h[name], a[name])
        assert error <= 1e-7, f"layer {layer + 1} {name}: relative error {error:.2e}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_hand_gradients_match_finite_differences(activation):
  """Central differences (J(theta + eps e_i) - J(theta - eps e_i)) / 2 eps at a few coordinates."""
  eps = 1e-6
  with jax.enable_x64(True):
    params, x, labels = _problem(7, ARCHITECTURES[-1])
    hand, _ = _hand_and_autodiff(params, x, labels, 0.01, activation=activation)
    objective = jax.jit(functools.partial(scratch.objective, activation=activation, l2=0.01))
    loss = lambda p: float(objective(p, x, labels))
    rng = np.random.default_rng(0)
    for layer in range(len(params)):
      for name in ("w", "b"):
        shape = params[layer][name].shape
        for _ in range(3):
          index = tuple(int(rng.integers(n)) for n in shape)
          plus, minus = jax.tree.map(np.array, (params, params))  # Host copies to perturb.
          plus[layer][name][index] += eps
          minus[layer][name][index] -= eps
          numeric = (loss(plus) - loss(minus)) / (2 * eps)
          analytic = float(hand[layer][name][index])
          assert abs(numeric - analytic) <= 1e-7 + 1e-6 * abs(analytic), (
              f"layer {layer + 1} {name}{index}: numeric {numeric:.10f}, hand {analytic:.10f}")


def test_l2_weight_decay_adds_l2_times_weights_and_spares_biases():
  l2 = 0.05
  with jax.enable_x64(True):
    params, x, labels = _problem(3, (6, 5, 4))
    loss_and_grads = jax.jit(functools.partial(scratch.loss_and_grads, activation="tanh"))
    loss_0, _, grads_0 = loss_and_grads(params, x, labels, l2=0.0)
    loss_l2, metrics, grads_l2 = loss_and_grads(params, x, labels, l2=l2)
    squared = sum(float(jnp.sum(p["w"] ** 2)) for p in params)
    np.testing.assert_allclose(float(loss_l2 - loss_0), 0.5 * l2 * squared, rtol=1e-12)
    np.testing.assert_allclose(float(metrics["xent"]), float(loss_0), rtol=1e-12)  # Data term only.
    for p, g0, g in zip(params, grads_0, grads_l2):
      np.testing.assert_allclose(g["w"] - g0["w"], l2 * p["w"], rtol=1e-10, atol=1e-14)
      np.testing.assert_array_equal(g["b"], g0["b"])


def test_loss_is_cross_entropy_of_a_plain_forward_pass():
  """The objective itself is right (jax.grad of a wrong loss would agree with its hand gradient)."""
  params, x, labels = _problem(4, (5, 4, 3))

  @jax.jit
  def compute(params, x, labels, huge_logits):
    logits, a = scratch.forward(params, x, "relu")
    huge_xent, _ = scratch.softmax_cross_entropy(huge_logits, jnp.array([1]))
    return logits, a, scratch.softmax_cross_entropy(logits, labels), huge_xent

  huge = jnp.array([[1e4, 0.0, -1e4]])
  logits, a, (xent, probs), huge_xent = jax.tree.map(np.asarray, compute(params, x, labels, huge))
  w1, b1, w2, b2 = (np.asarray(p[k], np.float64) for p in params for k in ("w", "b"))
  expected = np.maximum(np.asarray(x) @ w1 + b1, 0) @ w2 + b2
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  assert len(a) == 2
  np.testing.assert_allclose(a[1], np.maximum(np.asarray(x) @ w1 + b1, 0), rtol=1e-5, atol=1e-6)
  reference = np.mean(np.log(np.exp(expected).sum(-1)) - expected[np.arange(len(labels)), labels])
  np.testing.assert_allclose(xent, reference, rtol=1e-5)
  np.testing.assert_allclose(probs, np.exp(expected) / np.exp(expected).sum(-1, keepdims=True),
                             rtol=1e-5)
  # Huge logits: the max-shift keeps log-softmax finite where a naive exp would overflow.
  np.testing.assert_allclose(huge_xent, 1e4, rtol=1e-6)


def test_activations_and_their_derivatives():
  z = jnp.array([-3.0, -0.5, 0.5, 3.0])

  @jax.jit
  def compute(z):
    return {name: (f(z), f_derivative(f(z)), jax.vmap(jax.grad(f))(z))
            for name, (f, f_derivative) in scratch.ACTIVATIONS.items()}

  values = jax.tree.map(np.asarray, compute(z))
  np.testing.assert_allclose(values["sigmoid"][0], 1 / (1 + np.exp(-np.asarray(z))), rtol=1e-6)
  np.testing.assert_allclose(values["tanh"][0], np.tanh(np.asarray(z)), rtol=1e-6)
  np.testing.assert_array_equal(values["relu"][0], [0.0, 0.0, 0.5, 3.0])
  for name, (_, from_output, autodiff) in values.items():
    np.testing.assert_allclose(from_output, autodiff, rtol=1e-5, err_msg=name)


def test_initialisation_scale_and_determinism():
  sizes = (300, 300, 300)  # Equal shapes: jax.random.normal compiles once (seconds on a CPU).
  for init, variance in (("he", 2 / 300), ("xavier", 2 / (300 + 300))):
    params = scratch.init_params(jax.random.PRNGKey(0), sizes, init)
    assert [p["w"].shape for p in params] == [(300, 300), (300, 300)]
    np.testing.assert_allclose([float(jnp.var(p["w"])) for p in params], variance, rtol=0.03)
    assert float(jnp.abs(params[0]["b"]).max()) == 0.0
  again = scratch.init_params(jax.random.PRNGKey(0), sizes, "xavier")
  np.testing.assert_array_equal(params[1]["w"], again[1]["w"])  # Deterministic for a seed.
  assert not np.allclose(params[0]["w"], params[1]["w"])       # Each layer has its own key.
  with pytest.raises(ValueError, match="Unknown init"):
    scratch.init_params(jax.random.PRNGKey(0), sizes, "lecun")


def test_sgd_momentum_update_rule():
  params, velocity = [{"w": jnp.array([1.0])}], [{"w": jnp.array([0.0])}]
  grads = [{"w": jnp.array([0.5])}]
  params, velocity = scratch.sgd_momentum(params, velocity, grads, learning_rate=0.1,
                                          momentum=0.9)
  np.testing.assert_allclose(velocity[0]["w"], [0.5])        # v = 0.9 * 0 + 0.5
  np.testing.assert_allclose(params[0]["w"], [0.95])         # 1 - 0.1 * 0.5
  params, velocity = scratch.sgd_momentum(params, velocity, grads, learning_rate=0.1,
                                          momentum=0.9)
  np.testing.assert_allclose(velocity[0]["w"], [0.95])       # 0.9 * 0.5 + 0.5
  np.testing.assert_allclose(params[0]["w"], [0.855], rtol=1e-6)  # 0.95 - 0.1 * 0.95


def test_sgd_momentum_transform_is_the_hand_update_and_lowers_the_loss():
  """The optax-protocol form the trainer holds computes exactly ``sgd_momentum``."""
  params, x, labels = _problem(5, (10, 16, 3), batch=32)
  tx = scratch.sgd_momentum_transform(lambda step: 0.1, 0.9)
  opt_state, velocity = tx.init(params), scratch.momentum_init(params)
  reference, losses = params, []
  for _ in range(30):
    loss, metrics, grads = scratch.loss_and_grads(params, x, labels, activation="relu", l2=1e-4)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    reference, velocity = scratch.sgd_momentum(reference, velocity, grads, learning_rate=0.1,
                                               momentum=0.9)
    np.testing.assert_array_equal(params[0]["w"], reference[0]["w"])
    losses.append(float(loss))
  assert int(opt_state["count"]) == 30
  assert losses[-1] < 0.5 * losses[0], losses
  assert float(metrics["accuracy"]) >= 0.9
  assert set(scratch.layer_grad_norms(grads)) == {"grad_norm_w1", "grad_norm_b1", "grad_norm_w2",
                                                  "grad_norm_b2"}


def test_learning_rate_schedule():
  lr = functools.partial(scratch.learning_rate, peak=0.1, warmup_steps=10, total_steps=110)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 5, 10, 60, 110, 200)],
                             [0.0, 0.05, 0.1, 0.05, 0.0, 0.0], atol=1e-7)
  np.testing.assert_allclose(float(lr(60, schedule="constant")), 0.1)
  with pytest.raises(ValueError, match="Unknown schedule"):
    lr(0, schedule="step")


def test_study_config_refuses_what_a_scratch_network_does_not_implement():
  from experiments import scratch_nn
  config = scratch_nn.get_config("quick")
  assert config.task == "scratch" and config.model.name == "scratch_mlp"
  assert "dropout" not in config.model and "weight_decay" not in config.optim  # Refused.


def test_scratch_task_trains_through_fit_without_autodiff(tmp_path, monkeypatch):
  """The scratch task's steps come from the hand gradients: with jax.grad broken, it still
  trains, and the learner's step equals one hand-written update."""
  from experiments import scratch_nn
  from playbook.tasks import scratch as scratch_task
  config = scratch_nn.get_config("quick")
  config.optim.warmup_epochs = 0.0  # A non-zero learning rate at step 0.
  learner = scratch_task.make_learner(config, 2, np.zeros((8, 2, 2, 1), np.uint8), 8)
  monkeypatch.setattr(jax, "value_and_grad", None)  # Any autodiff on the path would fail.
  monkeypatch.setattr(jax, "grad", None)
  from playbook.train.state import init_train_state
  state = init_train_state(learner.init_fn, learner.tx, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 255, (16, 2, 2, 1)).astype(np.uint8),
           "label": rng.integers(0, 2, 16).astype(np.int32)}
  new, metrics = jax.jit(learner.train_step)(state, batch, jax.random.PRNGKey(1))
  x = ((batch["image"].astype(np.float32) / 255.0 - 0.1307) / 0.3081).reshape(16, -1)
  _, _, grads = scratch.loss_and_grads(state.params, x, batch["label"], activation="relu",
                                       l2=config.optim.l2)
  lr = float(metrics["learning_rate"])
  assert lr == pytest.approx(config.optim.learning_rate)
  expected, _ = scratch.sgd_momentum(state.params, scratch.momentum_init(state.params), grads,
                                     learning_rate=lr, momentum=config.optim.momentum)
  np.testing.assert_allclose(new.params[0]["w"], expected[0]["w"], rtol=1e-5, atol=1e-7)
  assert int(new.step) == 1 and "grad_norm_w3" in metrics


def test_a_finished_run_run_again_draws_nothing(real_data_dir, tmp_path):
  from experiments import scratch_nn
  from playbook.tasks import scratch as scratch_task
  config = scratch_nn.get_config("quick")
  config.progress, config.tensorboard = False, False
  first = scratch_task.train(config, tmp_path)
  plot = tmp_path / "plots" / "gradient_norms.png"
  drawn = plot.stat().st_mtime_ns
  again = scratch_task.train(config, tmp_path)
  assert again["test_accuracy"] == first["test_accuracy"]
  assert plot.stat().st_mtime_ns == drawn
