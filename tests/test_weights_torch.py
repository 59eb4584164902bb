"""The torch-free .pth reader: both containers, refusal of pickled code, VGG parity with torch."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from playbook.data.paths import DataError
from playbook.models import vgg
from playbook.weights import read_torch_pth
from playbook.weights import vgg as vgg_weights

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("zip_format", [True, False])
def test_state_dict_round_trip(tmp_path, zip_format):
  state = {"w": torch.randn(3, 4).t(), "step": torch.tensor(7), "half": torch.randn(5).half(),
           "slice": torch.arange(10)[2:6], "p": torch.nn.Parameter(torch.randn(2, 2))}
  torch.save(state, tmp_path / "s.pth", _use_new_zipfile_serialization=zip_format)
  read = read_torch_pth(tmp_path / "s.pth")
  assert list(read) == list(state)
  for name, tensor in state.items():
    expected = tensor.detach().numpy()
    assert read[name].dtype == expected.dtype and read[name].shape == expected.shape
    np.testing.assert_array_equal(read[name], expected)


class _RunsCode:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    import os
    return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickled_code_is_refused_without_running(tmp_path, zip_format):
  marker = tmp_path / "pwned"
  payload = pickle.dumps({"w": _RunsCode(marker)}, protocol=2)
  path = tmp_path / "evil.pth"
  if zip_format:
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("evil/data.pkl", payload)
  else:
    header = b"".join(pickle.dumps(x, protocol=2) for x in
                      (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    path.write_bytes(header + payload)
  with pytest.raises(DataError, match="system"):
    read_torch_pth(path)
  assert not marker.exists()


def test_a_plain_pickle_that_is_not_torch_is_refused(tmp_path):
  (tmp_path / "x.pth").write_bytes(pickle.dumps([1, 2, 3]))
  with pytest.raises(DataError, match="neither a torch zip"):
    read_torch_pth(tmp_path / "x.pth")


def test_truncated_legacy_file_is_a_clear_error(tmp_path):
  torch.save({"w": torch.randn(100)}, tmp_path / "s.pth", _use_new_zipfile_serialization=False)
  data = (tmp_path / "s.pth").read_bytes()
  (tmp_path / "s.pth").write_bytes(data[:-40])
  with pytest.raises(DataError, match="truncated"):
    read_torch_pth(tmp_path / "s.pth")


def torch_vgg_features(depth: int) -> "torch.nn.Sequential":
  """torchvision's ``vgg16().features`` layout: conv, relu per conv; a max pool per block."""
  layers, c_in = [], 3
  for convs, width in zip(vgg.BLOCK_DEPTHS[depth], vgg.BLOCK_WIDTHS):
    for _ in range(convs):
      layers += [torch.nn.Conv2d(c_in, width, 3, padding=1), torch.nn.ReLU()]
      c_in = width
    layers.append(torch.nn.MaxPool2d(2, 2))
  return torch.nn.Sequential(*layers)


def test_torch_saved_vgg16_matches_torch_forward(tmp_path):
  torch.manual_seed(0)
  model = torch.nn.Module()
  model.features = torch_vgg_features(16)
  torch.save(model.state_dict(), tmp_path / "vgg16.pth")
  x = np.random.default_rng(0).normal(0, 50, (2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = model.features(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  params = vgg_weights.params_from_torch(read_torch_pth(tmp_path / "vgg16.pth"), 16)
  actual = np.asarray(vgg.VGG(16).apply({"params": params}, x))
  assert np.abs(expected).max() > 0
  np.testing.assert_allclose(actual, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_nchw_flatten_reorder_matches_torch_flatten():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)  # NCHW
  weight = rng.normal(size=(5, 3 * 2 * 4)).astype(np.float32)  # torch Linear (out, in)
  expected = features.reshape(2, -1) @ weight.T
  kernel = vgg_weights.nchw_flatten_to_nhwc(weight.T, channels=3, height=2, width=4)
  np.testing.assert_allclose(features.transpose(0, 2, 3, 1).reshape(2, -1) @ kernel, expected,
                             rtol=1e-5)
