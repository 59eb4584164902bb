"""Keras h5 importer, weight lookup and tensor-hash verification, VGG parity with Keras."""

from __future__ import annotations

import h5py
import jax
import numpy as np
import pytest

from playbook.data.paths import DataError
from playbook.models import vgg
from playbook.weights import load_vgg, locate, read_keras_h5, tensor_sha256
from playbook.weights import vgg as vgg_weights

VGG16_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def write_legacy_h5(path, layers: dict) -> None:
  """Keras-1-era layout of the official application files: root layer_names, <layer>_W_1:0."""
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = np.array([n.encode() for n in ["input_1", *layers]])
    f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
    for name, (kernel, bias) in layers.items():
      group = f.create_group(name)
      names = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
      group.attrs["weight_names"] = np.array(names)
      group[names[0].decode()] = kernel
      group[names[1].decode()] = bias


def vgg_layers(depth: int, fill) -> dict:
  shapes = jax.eval_shape(lambda: vgg.VGG(depth).init(jax.random.key(0), np.zeros((1, 32, 32, 3))))
  return {n: (fill(shapes["params"][n]["kernel"].shape), fill(shapes["params"][n]["bias"].shape))
          for n in vgg.conv_layer_names(depth)}


def test_legacy_h5_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  layers = {"conv_a": (rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
                       rng.normal(size=4).astype(np.float32)),
            "dense_b": (rng.normal(size=(4, 5)).astype(np.float32),
                        rng.normal(size=5).astype(np.float32))}
  write_legacy_h5(tmp_path / "w.h5", layers)
  read = read_keras_h5(tmp_path / "w.h5")
  assert list(read) == ["conv_a", "dense_b"]  # File order kept; the weightless input dropped.
  for name, (kernel, bias) in layers.items():
    np.testing.assert_array_equal(read[name]["kernel"], kernel)
    np.testing.assert_array_equal(read[name]["bias"], bias)
  assert tensor_sha256(a for w in read.values() for a in w.values()) == tensor_sha256(
      a for pair in layers.values() for a in pair)


def test_tensor_hash_is_over_float32_values_in_order():
  a, b = np.arange(6.0).reshape(2, 3), np.ones(2, np.float32)
  assert tensor_sha256([a, b]) == tensor_sha256([a.astype(np.float32), b])
  assert tensor_sha256([a, b]) != tensor_sha256([b, a])
  assert tensor_sha256([a.T]) != tensor_sha256([a])


def test_not_legacy_layout_is_a_clear_error(tmp_path):
  with h5py.File(tmp_path / "x.weights.h5", "w") as f:
    f.create_group("layers")
  with pytest.raises(DataError, match="layer_names"):
    read_keras_h5(tmp_path / "x.weights.h5")
  (tmp_path / "junk.h5").write_bytes(b"not hdf5")
  with pytest.raises(DataError, match="not a readable HDF5"):
    read_keras_h5(tmp_path / "junk.h5")


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
  for var in ("PLAYBOOK_DATA_DIR", "KERAS_HOME", "TORCH_HOME"):
    (tmp_path / var).mkdir()
    monkeypatch.setenv(var, str(tmp_path / var))
  return tmp_path


def test_missing_weights_name_the_file_and_every_place(empty_caches):
  with pytest.raises(DataError) as error:
    load_vgg(16)
  message = str(error.value)
  assert VGG16_NOTOP in message and "keras-applications" in message
  for var, sub in [("PLAYBOOK_DATA_DIR", "weights"), ("KERAS_HOME", "models"),
                   ("TORCH_HOME", "hub/checkpoints")]:
    assert str(empty_caches / var / sub / VGG16_NOTOP) in message


def test_lookup_order_data_dir_before_keras_cache(empty_caches):
  for folder in [empty_caches / "PLAYBOOK_DATA_DIR" / "weights",
                 empty_caches / "KERAS_HOME" / "models"]:
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"")
  assert locate("w.bin", where_to_get="x").parent.parent.name == "PLAYBOOK_DATA_DIR"


def test_found_file_with_wrong_tensors_is_refused(empty_caches):
  cache = empty_caches / "KERAS_HOME" / "models"
  cache.mkdir(parents=True)
  write_legacy_h5(cache / VGG16_NOTOP, vgg_layers(16, lambda s: np.zeros(s, np.float32)))
  with pytest.raises(DataError, match="different tensors.*not used"):
    load_vgg(16)


def test_vgg19_without_reference_hash_is_refused_unless_asked():
  with pytest.raises(DataError, match="expected_sha256=.*verify=False"):
    load_vgg(19)


def test_real_vgg16_base_tensor_hash(real_weights_dir):
  params = load_vgg(16, path=real_weights_dir / VGG16_NOTOP)  # Raises unless the hash matches.
  assert tensor_sha256(vgg_weights.tensors(params, 16)) == vgg_weights.TENSOR_SHA256[(16, False)]
  np.testing.assert_allclose(params["block1_conv1"]["bias"][:3],
                             [0.73429835, 0.093403675, 0.06775674])


@pytest.mark.parametrize("depth", [16, 19])
def test_keras_saved_vgg_matches_keras_forward(tmp_path, depth):
  keras = pytest.importorskip("keras")
  builder = keras.applications.VGG16 if depth == 16 else keras.applications.VGG19
  model = builder(weights=None, include_top=False, input_shape=(32, 32, 3))
  rng = np.random.default_rng(depth)
  for layer in model.layers:  # Random biases too (Keras initialises them to zero).
    if layer.weights:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model.save(tmp_path / "vgg.h5")  # Keras 3 legacy h5: weights under model_weights/.
  images = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  x = np.asarray(vgg.preprocess(images))
  expected = np.asarray(model(x))
  params = load_vgg(depth, path=tmp_path / "vgg.h5", verify=False)
  actual = vgg.VGG(depth).apply({"params": params}, x)
  scale = np.abs(expected).max()
  assert scale > 0 and np.abs(actual - expected).max() <= 1e-4 * max(scale, 1.0)
