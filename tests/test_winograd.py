"""Winograd F(2x2) and F(4x4) 3x3 convolutions against XLA's: values, gradients, VGG activations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from playbook.models import vgg, winograd

# Max error relative to the largest reference value. F(4x4)'s transforms have constants up to 8
# (points +-2), so its float32 rounding is about 10x F(2x2)'s.
TOLERANCE = {2: 1e-5, 4: 1e-4}


def lax_conv(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def relative_error(a, b) -> float:
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def inputs(n, h, w, c_in, c_out):
  x = jax.random.normal(jax.random.key(0), (n, h, w, c_in))
  k = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out))
  return x, k


SHAPES = [(2, 8, 12, 5, 7), (1, 7, 9, 6, 4), (1, 5, 6, 3, 8), (1, 1, 2, 4, 4)]  # Even, odd, tiny.


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_lax(shape, m):
  x, k = inputs(*shape)
  y = winograd.conv3x3(x, k, m)
  assert y.shape == shape[:3] + (shape[4],)
  assert relative_error(y, lax_conv(x, k)) < TOLERANCE[m]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES[:2])
def test_input_and_kernel_gradients_match_lax(shape, m):
  x, k = inputs(*shape)
  loss = lambda conv: lambda x, k: jnp.sum(jnp.sin(conv(x, k)))  # noqa: E731
  dx, dk = jax.grad(loss(lambda x, k: winograd.conv3x3(x, k, m)), (0, 1))(x, k)
  rx, rk = jax.grad(loss(lax_conv), (0, 1))(x, k)
  assert relative_error(dx, rx) < TOLERANCE[m]
  assert relative_error(dk, rk) < TOLERANCE[m]


def test_unused_kernel_gradient_is_not_computed():
  """Grad to the input only: the custom VJP's kernel gradient (an XLA convolution) is dead code."""
  x, k = inputs(1, 8, 8, 4, 4)
  grad_x = jax.jit(jax.grad(lambda x, k: jnp.sum(winograd.conv3x3(x, k, 2) ** 2)))
  assert " convolution(" not in grad_x.lower(x, k).compile().as_text()


def test_choose_tile():
  assert winograd.choose_tile(192, 256, 3) == 0       # The RGB layer stays on XLA.
  assert winograd.choose_tile(96, 128, 128) == 4      # 768 tiles of 4x4 >= 128 channels.
  assert winograd.choose_tile(24, 32, 512) == 2       # 48 tiles < 512 channels.


def test_vgg_winograd_gives_the_xla_activations():
  x = jax.random.uniform(jax.random.key(2), (1, 20, 28, 3), minval=-120.0, maxval=120.0)
  names = ("block1_conv1", "block1_conv2", "block2_conv1", "block3_conv2", "block4_conv2",
           "block5_conv1")
  params = vgg.VGG(16).init(jax.random.key(0), x, outputs=names)["params"]
  ref = vgg.VGG(16).apply({"params": params}, x, outputs=names)
  out = vgg.VGG(16, conv_impl="winograd").apply({"params": params}, x, outputs=names)
  assert out.keys() == ref.keys()
  for name in names:
    assert relative_error(out[name], ref[name]) < 1e-4, name
  # The image gradient, what style transfer follows.
  grad = lambda impl: jax.grad(lambda x: jnp.sum(vgg.VGG(16, conv_impl=impl).apply(  # noqa: E731
      {"params": params}, x, outputs=("block4_conv2",))["block4_conv2"] ** 2))(x)
  assert relative_error(grad("winograd"), grad("xla")) < 1e-4
