"""A fully connected network in ``jax.numpy`` alone, its backward pass derived and coded by hand.

No ``jax.grad``, ``jax.vjp`` or Flax: the forward pass keeps what the backward pass needs, the
backward pass is the chain rule written out layer by layer, and the update (SGD with momentum) is
two lines. ``docs/backprop.md`` derives every formula here and maps its symbols to these names.

Notation (the doc's): a batch of B examples through L layers; layer l (1-based) maps width
n_{l-1} to n_l, and its parameters are ``params[l - 1]``.

  x, a[0]   (B, n_0)          the inputs
  w, b      (n_{l-1}, n_l), (n_l,)   layer l's weights and biases
  z         (B, n_l)          pre-activations, z_l = a_{l-1} w_l + b_l
  a[l]      (B, n_l)          activations, a_l = f(z_l), for l < L; the last layer has no f:
  logits    (B, K)            z_L, with K = n_L classes
  probs     (B, K)            softmax(logits)
  delta     (B, n_l)          dJ/dz_l, the loss's gradient with respect to layer l's pre-activations
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from playbook.models import precision
from playbook.models.precision import dot  # x @ y, in bfloat16: rounded operands, float32 sums.

Params = list[dict[str, jax.Array]]  # One {"w", "b"} per layer, input side first.

# --- Activations and their derivatives ------------------------------------------------------------
# Each derivative is written in terms of the activation's output a = f(z): the forward pass keeps a
# anyway (the next layer's weight gradient needs it), so the backward pass never needs z.


def relu(z: jax.Array) -> jax.Array:
  return jnp.maximum(z, 0.0)


def relu_derivative(a: jax.Array) -> jax.Array:
  return (a > 0).astype(a.dtype)  # f'(z) = 1 where z > 0, i.e. where a > 0; 0 elsewhere.


def sigmoid(z: jax.Array) -> jax.Array:
  return 0.5 * (jnp.tanh(0.5 * z) + 1.0)  # = 1 / (1 + e^-z), without overflowing exp.


def sigmoid_derivative(a: jax.Array) -> jax.Array:
  return a * (1.0 - a)


def tanh_derivative(a: jax.Array) -> jax.Array:
  return 1.0 - a * a


ACTIVATIONS = {
    "relu": (relu, relu_derivative),
    "sigmoid": (sigmoid, sigmoid_derivative),
    "tanh": (jnp.tanh, tanh_derivative),
}

# --- Initialisation -------------------------------------------------------------------------------
# Weights ~ N(0, variance); biases 0. He keeps the activations' scale through ReLU layers (which
# zero half their inputs); Xavier (Glorot) balances forward and backward scale for tanh/sigmoid.
INIT_VARIANCE = {
    "he": lambda fan_in, fan_out: 2.0 / fan_in,
    "xavier": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
}


def init_params(rng: jax.Array, sizes: tuple[int, ...], init: str = "he") -> Params:
  """Parameters of a network with layer widths ``sizes`` = (n_0, ..., n_L)."""
  if init not in INIT_VARIANCE:
    raise ValueError(f"Unknown init {init!r}; known: {sorted(INIT_VARIANCE)}.")
  keys = jax.random.split(rng, len(sizes) - 1)
  params = []
  for key, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
    scale = math.sqrt(INIT_VARIANCE[init](fan_in, fan_out))
    params.append({"w": scale * jax.random.normal(key, (fan_in, fan_out)),
                   "b": jnp.zeros((fan_out,))})
  return params


# --- Forward pass ---------------------------------------------------------------------------------


def forward(params: Params, x: jax.Array, activation: str,
            dtype=jnp.float32) -> tuple[jax.Array, list[jax.Array]]:
  """The logits (B, K), and a = [a_0, ..., a_{L-1}]: every layer's input, kept for backward.

  In bfloat16 (``dtype``) the kept activations are bfloat16, half the memory, and every matmul
  takes bfloat16 operands; the pre-activations and the logits are float32 (``precision.dot``)."""
  f, _ = ACTIVATIONS[activation]
  a = [precision.cast(x, dtype)]
  for layer in params[:-1]:
    a.append(precision.cast(f(dot(a[-1], layer["w"], dtype) + layer["b"]), dtype))
  logits = dot(a[-1], params[-1]["w"], dtype) + params[-1]["b"]
  return logits, a


# --- Loss: softmax cross-entropy plus L2 weight decay ---------------------------------------------


def log_softmax(logits: jax.Array) -> jax.Array:
  # Subtracting the row maximum changes nothing mathematically and keeps exp from overflowing.
  shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
  return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def one_hot(labels: jax.Array, num_classes: int, dtype=jnp.float32) -> jax.Array:
  return (labels[:, None] == jnp.arange(num_classes)).astype(dtype)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The batch mean of -log p(y_i | x_i), and the softmax probabilities (B, K)."""
  log_probs = log_softmax(logits)
  xent = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
  return xent, jnp.exp(log_probs)


def l2_penalty(params: Params, l2: float) -> jax.Array:
  """(l2 / 2) * sum_l ||w_l||_F^2: weights only; biases are not decayed."""
  return 0.5 * l2 * sum(jnp.sum(layer["w"] ** 2) for layer in params)


def objective(params: Params, x: jax.Array, labels: jax.Array, *, activation: str,
              l2: float, dtype=jnp.float32) -> jax.Array:
  """J = cross-entropy + L2 penalty: the function ``backward`` differentiates."""
  logits, _ = forward(params, x, activation, dtype)
  return softmax_cross_entropy(logits, labels)[0] + l2_penalty(params, l2)


# --- Backward pass --------------------------------------------------------------------------------


def backward(params: Params, a: list[jax.Array], probs: jax.Array, labels: jax.Array, *,
             activation: str, l2: float, dtype=jnp.float32) -> Params:
  """dJ/dw and dJ/db of every layer, from the forward pass's ``a`` and ``probs``.

  Runs from the loss back to the inputs: delta starts as dJ/dlogits and each layer turns it into
  its own gradients and the previous layer's delta. In bfloat16 (``dtype``) the matmuls take
  bfloat16 operands and sum in float32 (``precision.dot``), so delta and every gradient stay
  float32: they update float32 parameters, and a weight gradient is a sum over the whole batch.
  """
  _, f_derivative = ACTIVATIONS[activation]
  batch, num_classes = probs.shape
  delta = (probs - one_hot(labels, num_classes, probs.dtype)) / batch  # dJ/dz_L, (B, K).
  grads = [None] * len(params)
  for l in range(len(params), 0, -1):  # l = L, ..., 1.
    w = params[l - 1]["w"]
    grads[l - 1] = {"w": dot(a[l - 1].T, delta, dtype) + l2 * w,  # (n_{l-1}, B) @ (B, n_l).
                    "b": jnp.sum(delta, axis=0)}                  # (n_l,).
    if l > 1:  # dJ/dz_{l-1}: back through w_l, then through f at a_{l-1} = f(z_{l-1}).
      delta = dot(delta, w.T, dtype) * f_derivative(a[l - 1])     # (B, n_{l-1}).
  return grads


def loss_and_grads(params: Params, x: jax.Array, labels: jax.Array, *, activation: str,
                   l2: float, dtype=jnp.float32) -> tuple[jax.Array, dict[str, jax.Array], Params]:
  """J, batch metrics ({'xent', 'accuracy'}) and the hand-derived gradients, in one pass."""
  logits, a = forward(params, x, activation, dtype)
  xent, probs = softmax_cross_entropy(logits, labels)
  grads = backward(params, a, probs, labels, activation=activation, l2=l2, dtype=dtype)
  accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
  return xent + l2_penalty(params, l2), {"xent": xent, "accuracy": accuracy}, grads


# --- The update rule: SGD with (heavy-ball) momentum ----------------------------------------------


def momentum_init(params: Params) -> Params:
  """The velocity starts at zero, one array per parameter."""
  return jax.tree.map(jnp.zeros_like, params)


def sgd_momentum(params: Params, velocity: Params, grads: Params, *, learning_rate,
                 momentum: float) -> tuple[Params, Params]:
  """v <- momentum * v + g;  theta <- theta - learning_rate * v  (as PyTorch's SGD)."""
  velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
  params = jax.tree.map(lambda p, v: p - learning_rate * v, params, velocity)
  return params, velocity


def learning_rate(step: jax.Array, *, peak: float, warmup_steps: int, total_steps: int,
                  schedule: str = "cosine") -> jax.Array:
  """Linear warm-up from 0 to ``peak``, then constant or a cosine decay to 0 at ``total_steps``."""
  step = jnp.asarray(step, jnp.float32)
  warmup = peak * step / max(warmup_steps, 1)
  if schedule == "constant":
    after = jnp.asarray(peak, jnp.float32)
  elif schedule == "cosine":
    progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    after = 0.5 * peak * (1.0 + jnp.cos(jnp.pi * progress))
  else:
    raise ValueError(f"Unknown schedule {schedule!r}; known: 'cosine', 'constant'.")
  return jnp.where(step < warmup_steps, warmup, after)


def sgd_momentum_transform(learning_rate_fn, momentum: float) -> optax.GradientTransformation:
  """``sgd_momentum`` in optax's (init, update) protocol, so the common trainer's state can hold
  it: the velocity and a step count (for ``learning_rate_fn(step)``). Written by hand; optax
  provides only the tuple it is packed in."""

  def init(params: Params) -> dict:
    return {"count": jnp.zeros((), jnp.int32), "velocity": momentum_init(params)}

  def update(grads: Params, state: dict, params: Params | None = None):
    velocity = jax.tree.map(lambda v, g: momentum * v + g, state["velocity"], grads)
    lr = learning_rate_fn(state["count"])
    updates = jax.tree.map(lambda v: -lr * v, velocity)  # theta + updates = theta - lr * v.
    return updates, {"count": state["count"] + 1, "velocity": velocity}

  return optax.GradientTransformation(init, update)


def layer_grad_norms(grads: Params) -> dict[str, jax.Array]:
  """||dJ/dw_l||_F and ||dJ/db_l|| of every layer l = 1..L, as grad_norm_w1, grad_norm_b1, ..."""
  norms = {}
  for l, layer in enumerate(grads, start=1):
    norms |= {f"grad_norm_{name}{l}": jnp.sqrt(jnp.sum(g ** 2)) for name, g in layer.items()}
  return norms


# --- The network as the trainer sees it -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScratchMLP:
  """The network above, in the form ``playbook.tasks.scratch`` trains: parameters from a key and
  the input shape, logits, and the hand-derived loss and gradients of a batch."""
  hidden: tuple[int, ...]
  num_classes: int
  activation: str = "relu"
  init: str = "he"
  dtype: Any = jnp.float32  # The compute dtype; the parameters are float32 either way.

  def init_params(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Params:
    return init_params(rng, (math.prod(input_shape), *self.hidden, self.num_classes), self.init)

  def logits(self, params: Params, x: jax.Array) -> jax.Array:
    return forward(params, x.reshape(len(x), -1), self.activation, self.dtype)[0]

  def loss_and_grads(self, params: Params, x: jax.Array, labels: jax.Array, *, l2: float):
    return loss_and_grads(params, x.reshape(len(x), -1), labels, activation=self.activation,
                          l2=l2, dtype=self.dtype)
