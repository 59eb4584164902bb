"""The VGG module: named intermediate outputs, early stop, pooling, Caffe preprocessing."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from playbook.models import vgg


@pytest.fixture(scope="module")
def vgg16_params():
  return vgg.VGG(16).init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]


def test_named_outputs_have_the_right_shapes(vgg16_params):
  x = np.ones((2, 32, 32, 3), np.float32)
  out = vgg.VGG(16).apply({"params": vgg16_params}, x,
                          outputs=("block1_conv1", "block2_pool", "block4_conv2", "block5_pool"))
  assert {k: v.shape for k, v in out.items()} == {
      "block1_conv1": (2, 32, 32, 64), "block2_pool": (2, 8, 8, 128),
      "block4_conv2": (2, 4, 4, 512), "block5_pool": (2, 1, 1, 512)}
  assert min(float(v.min()) for v in out.values()) >= 0.0  # Post-ReLU.
  full = vgg.VGG(16).apply({"params": vgg16_params}, x)
  np.testing.assert_array_equal(out["block5_pool"], full)


def test_nothing_past_the_deepest_requested_layer_is_computed(vgg16_params):
  shallow = {k: v for k, v in vgg16_params.items() if k.startswith("block1")}
  out = vgg.VGG(16).apply({"params": shallow}, np.ones((1, 16, 16, 3)), outputs=("block1_conv2",))
  assert out["block1_conv2"].shape == (1, 16, 16, 64)
  with pytest.raises(Exception):  # Asking for a deeper layer does need the deeper params.
    vgg.VGG(16).apply({"params": shallow}, np.ones((1, 16, 16, 3)), outputs=("block2_conv1",))


def test_unknown_output_name_lists_the_valid_ones(vgg16_params):
  with pytest.raises(ValueError, match="block1_conv1"):
    vgg.VGG(16).apply({"params": vgg16_params}, np.ones((1, 32, 32, 3)), outputs=("conv9",))


def test_vgg19_layers_and_pooled_vector():
  assert vgg.layer_names(19)[:5] == ["block1_conv1", "block1_conv2", "block1_pool",
                                     "block2_conv1", "block2_conv2"]
  assert len(vgg.conv_layer_names(19)) == 16 and len(vgg.conv_layer_names(16)) == 13
  model = vgg.VGG(19, pooling="avg")
  variables = model.init(jax.random.key(0), np.ones((1, 32, 32, 3)))
  assert model.apply(variables, np.ones((3, 64, 64, 3))).shape == (3, 512)


def test_top_gives_logits_and_fc_layers():
  model = vgg.VGG(16, include_top=True, num_classes=7)
  shapes = jax.eval_shape(model.init, jax.random.key(0), np.ones((1, 32, 32, 3)))["params"]
  assert shapes["fc1"]["kernel"].shape == (512, 4096)
  assert shapes["predictions"]["kernel"].shape == (4096, 7)


def test_caffe_preprocessing_and_its_inverse():
  rgb = np.array([[[[10.0, 20.0, 30.0]]]])
  np.testing.assert_allclose(vgg.preprocess(rgb)[0, 0, 0],
                             [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
  np.testing.assert_allclose(vgg.deprocess(vgg.preprocess(rgb)), rgb, atol=1e-4)
