"""A character-level LSTM language model, the LSTM written out as a cell under ``lax.scan``.

Hochreiter & Schmidhuber (1997), with the forget gate of Gers et al. (2000), as in Karpathy's
char-rnn and the seed notebook (2 layers x 512, dropout 0.5 between layers and before the output):

    i, f, g, o = split(x_t W_x + h_{t-1} W_h + b)          # the four gates, one fused matmul
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Two things make it fast on a CPU. ``x_t W_x`` does not depend on the recurrence, so it is computed
for all time steps at once, outside the scan, as one big matmul (for the first layer, whose input
is a one-hot character, that matmul is a row lookup of ``W_x``: an embedding). Inside the scan
only ``h_{t-1} W_h`` remains, one (batch, H) x (H, 4H) matmul per step for all four gates.
Sequences are time-major inside (``(T, B, ...)``), so the scan slices contiguous rows.

Not ``flax.linen.RNN``: it does not export through jax2onnx. ``CharLSTM.step`` is the one-step
function with the state explicit in and out that sampling and the exporters use.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from playbook.models import precision
from playbook.models.dropout import Dropout

# The recurrent state: (h, c), each (num_layers, batch, hidden).
Carry = tuple[jax.Array, jax.Array]


def lstm_cell(w_h: jax.Array, carry: tuple[jax.Array, jax.Array], x_proj: jax.Array):
  """One step of one layer. ``x_proj`` = x_t W_x + b, precomputed; returns ((h, c), h)."""
  h, c = carry
  gates = x_proj + precision.matmul(h, w_h, h.dtype)  # float32 gates in either precision.
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  # Each state keeps its dtype: in mixed precision h in the compute dtype, the cell state c, a
  # running sum over the whole sequence, in float32 (no-op casts otherwise).
  c = (jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)).astype(c.dtype)
  h = (jax.nn.sigmoid(o) * jnp.tanh(c)).astype(h.dtype)
  return (h, c), h


def lstm_scan(w_h: jax.Array, carry: tuple[jax.Array, jax.Array], x_proj: jax.Array,
              unroll: int = 1):
  """The cell over time: ``x_proj`` (T, B, 4H) -> final (h, c), outputs (T, B, H)."""
  return jax.lax.scan(lambda carry, x: lstm_cell(w_h, carry, x), carry, x_proj, unroll=unroll)


def zero_carry(num_layers: int, batch_size: int, hidden: int) -> Carry:
  shape = (num_layers, batch_size, hidden)
  return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)  # Two buffers: donated.


def _forget_bias_one(key, shape, dtype=jnp.float32):
  """Zero biases but 1 for the forget gate: start by remembering (Jozefowicz et al. 2015)."""
  del key
  hidden = shape[0] // 4
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


class CharLSTM(nn.Module):
  """Characters (B, T) int -> next-character logits (B, T, vocab), carrying (h, c) through."""
  vocab_size: int
  hidden: int = 512
  num_layers: int = 2
  dropout: float = 0.5  # Or a traced scalar: one rate per model of a sweep (dropout.py).
  unroll: int = 1  # lax.scan unroll: steps per loop iteration (a speed knob, same numbers).
  # Compute dtype (precision.py): the weights, the matmuls' operands and h cast to it; the
  # parameters, the matmuls' sums, the gates, the cell state c, the logits and the carried
  # (h, c) stay float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, carry: Carry, *, train: bool) -> tuple[jax.Array, Carry]:
    dtype = precision.narrowed(self.dtype)
    h0, c0 = carry
    x = tokens.T  # Time-major (T, B): the scan walks the leading axis.
    new_h, new_c = [], []
    for layer in range(self.num_layers):
      fan_in = self.vocab_size if layer == 0 else self.hidden
      w_x = self.param(f"w_x_{layer}", nn.initializers.lecun_normal(), (fan_in, 4 * self.hidden))
      w_h = self.param(f"w_h_{layer}", nn.initializers.orthogonal(column_axis=-1),
                       (self.hidden, 4 * self.hidden))
      b = self.param(f"b_{layer}", _forget_bias_one, (4 * self.hidden,))
      w_x, w_h, b = (precision.cast(w, dtype) for w in (w_x, w_h, b))
      # Hoisted out of the scan: every time step's input projection in one op.
      x_proj = (jnp.take(w_x, x, axis=0) if layer == 0 else precision.matmul(x, w_x, dtype)) + b
      # index_in_dim (a slice), not h0[layer]: with a symbolic batch size jnp indexing becomes a
      # dynamic gather, which TFLite cannot hold. The same numbers.
      h, c = (jax.lax.index_in_dim(s, layer, keepdims=False) for s in (h0, c0))
      (h, c), x = lstm_scan(w_h, (precision.cast(h, dtype), c), x_proj, self.unroll)
      new_h.append(precision.to_float32(h, dtype))
      new_c.append(c)
      x = Dropout(self.dropout, deterministic=not train)(x)  # Between layers, before fc.
    fc = nn.Dense(self.vocab_size, dtype=dtype, dot_general=precision.dot_general(dtype), name="fc")
    logits = precision.to_float32(fc(x), dtype)
    return logits.transpose(1, 0, 2), (jnp.stack(new_h), jnp.stack(new_c))

  def step(self, token: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """One character per stream, (B,) -> logits (B, vocab) and the next state (eval mode)."""
    logits, carry = self(token[:, None], carry, train=False)
    return jnp.squeeze(logits, 1), carry  # Not logits[:, 0]: see index_in_dim above.


def carry_from_state(model_state: dict[str, Any]) -> Carry:
  return model_state["carry"]["h"], model_state["carry"]["c"]
