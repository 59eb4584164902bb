"""Style transfer: the losses, the optimisation over pixels, colour preservation and the errors.

The optimisation tests use VGG16 with random weights at 32 px (fast, no data needed); the
end-to-end ones read the real weights and images and skip without PLAYBOOK_DATA_DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from playbook.data.images import read_rgb
from playbook.data.paths import DataError
from playbook.models import vgg
from playbook.stylize import colors, images, optimize
from playbook.stylize.losses import gram_matrix, total_variation_loss
from playbook.tasks import ConfigError, stylize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def random_vgg16_params():
  """He-normal random VGG16 weights (numpy: much faster than tracing VGG16's init)."""
  shapes = jax.eval_shape(vgg.VGG(16).init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  rng = np.random.default_rng(0)
  def init(leaf):
    if leaf.ndim == 1:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = np.prod(leaf.shape[:-1])
    return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), leaf.dtype)
  return jax.tree.map(init, shapes["params"])


@pytest.fixture(scope="module")
def photos():
  rng = np.random.default_rng(0)
  content = rng.uniform(0, 255, (40, 48, 3)).astype(np.float32)
  style = rng.uniform(0, 255, (36, 36, 3)).astype(np.float32)
  return content, style


def small_config(**overrides):
  config = stylize.base_config()
  config.sizes, config.steps, config.progress = (32,), (4,), False
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def style_data_dir():
  """$PLAYBOOK_DATA_DIR with the staged style images and the VGG16 weights, else skip."""
  root = os.environ.get("PLAYBOOK_DATA_DIR")
  needed = ("style/tubingen.jpg", "style/starry_night.jpg",
            "weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
  if not root or not all(os.path.exists(os.path.join(root, n)) for n in needed):
    pytest.skip("needs the style images and VGG16 weights: set PLAYBOOK_DATA_DIR")
  return root


def test_gram_matrix_of_a_known_tensor():
  # Two positions (1, 2) and (3, 4): F^T F = [[10, 14], [14, 20]], divided by H*W*C = 1*2*2.
  features = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
  np.testing.assert_allclose(gram_matrix(features), [[[2.5, 3.5], [3.5, 5.0]]])


def test_total_variation_is_zero_for_a_flat_image_and_grows_with_edges():
  assert float(total_variation_loss(jnp.full((1, 8, 8, 3), 7.0))) == 0.0
  stripes = jnp.zeros((1, 8, 8, 3)).at[:, :, ::2, :].set(1.0)  # Vertical stripes: dx only.
  np.testing.assert_allclose(total_variation_loss(stripes), 1.0)


def test_losses_vanish_at_their_own_target(random_vgg16_params, photos):
  objective = optimize.make_objective(small_config())
  content_rgb = images.resize(photos[0], 32)
  style_rgb = images.resize_to(photos[1], *content_rgb.shape[:2])
  content, style = (vgg.preprocess(jnp.asarray(p[None])) for p in (content_rgb, style_rgb))
  targets = objective.targets(random_vgg16_params, content, style)
  at_content = objective.parts(random_vgg16_params, content, targets)
  at_style = objective.parts(random_vgg16_params, style, targets)
  assert float(at_content["content"]) == 0.0 and float(at_content["style"]) > 0
  assert float(at_style["style"]) < 1e-6 * float(at_content["style"])
  assert float(at_style["content"]) > 0


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_few_steps_lower_the_total_loss(random_vgg16_params, photos, optimizer):
  config = small_config(init="noise")
  config.optim.name = optimizer
  result = optimize.stylize(config, random_vgg16_params, *photos)
  losses = [row["loss"] for row in result.history]
  assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]
  assert result.compilations == 1  # One jitted step, compiled once (no weak-type recompile).
  if optimizer == "lbfgs":  # The line search guarantees a decrease at every step.
    assert all(b < a for a, b in zip(losses, losses[1:] + [result.parts["total"]]))


def test_same_seed_gives_the_same_image_and_another_seed_another(random_vgg16_params, photos):
  config = small_config(init="noise", seed=3)
  config.optim.name = "adam"
  first = optimize.stylize(config, random_vgg16_params, *photos).image
  again = optimize.stylize(config, random_vgg16_params, *photos).image
  config.seed = 4
  other = optimize.stylize(config, random_vgg16_params, *photos).image
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 1.0


def test_coarse_to_fine_schedule_and_gif_frames(random_vgg16_params, photos):
  config = small_config(sizes=(24, 40), steps=(2, 3), gif_every=2)
  config.optim.name = "adam"  # L-BFGS's line search compiles for long; the schedule is the same.
  result = optimize.stylize(config, random_vgg16_params, *photos)
  assert [row["size"] for row in result.history] == [24, 24, 40, 40, 40]
  assert result.image.shape == (33, 40, 3)  # Content 40x48 -> longer side 40.
  assert len(result.frames) == 4  # Steps 0, 2, 4, and the final image.
  assert result.compilations == 2  # Once per scale.


def test_luminance_transfer_keeps_content_chroma_and_result_luminance(photos):
  content, _ = photos
  result = np.clip(content[::-1] * 0.5 + 60, 0, 255)
  out = colors.luminance_transfer(result, content)
  inside = np.all((out > 0) & (out < 255), -1)  # Out-of-gamut pixels are clipped: skip those.
  assert inside.mean() > 0.5
  out, result, content = out[inside], result[inside], content[inside]
  np.testing.assert_allclose(colors.rgb_to_yiq(out)[..., 0], colors.rgb_to_yiq(result)[..., 0],
                             atol=0.5)
  np.testing.assert_allclose(colors.rgb_to_yiq(out)[..., 1:], colors.rgb_to_yiq(content)[..., 1:],
                             atol=0.5)


def test_color_matching_gives_the_style_the_content_colour_statistics():
  rng = np.random.default_rng(1)
  content = rng.normal([120, 100, 80], [20, 10, 30], (50, 50, 3)).clip(0, 255)
  style = rng.normal([60, 160, 90], [5, 40, 15], (40, 40, 3)).clip(0, 255)
  out = colors.match_color_statistics(style, content).reshape(-1, 3)
  np.testing.assert_allclose(out.mean(0), content.reshape(-1, 3).mean(0), atol=0.5)
  np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(content.reshape(-1, 3),
                                                               rowvar=False), rtol=0.05, atol=5)


def test_missing_and_unreadable_images_are_clear_errors(tmp_path):
  with pytest.raises(DataError, match="Missing style image .*nope.jpg"):
    read_rgb(tmp_path / "nope.jpg", what="style image")
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  with pytest.raises(DataError, match="Unreadable content image .*broken.jpg"):
    read_rgb(broken, what="content image")


def test_backbone_without_weights_is_a_clear_error(tmp_path, monkeypatch):
  for name in ("content.png", "style.png"):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / name)
  for var in ("PLAYBOOK_DATA_DIR", "PLAYBOOK_MIRROR"):
    monkeypatch.delenv(var, raising=False)
  for var in ("XDG_CACHE_HOME", "KERAS_HOME", "TORCH_HOME"):  # Empty caches.
    monkeypatch.setenv(var, str(tmp_path / "empty" / var))
  monkeypatch.setenv("PLAYBOOK_OFFLINE", "1")
  config = small_config()
  config.data.dir = str(tmp_path)  # Holds no weights/ folder.
  with pytest.raises(DataError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
    optimize.stylize_files(config, tmp_path / "content.png", tmp_path / "style.png")


def test_config_mismatch_is_refused():
  with pytest.raises(ConfigError, match="one entry per scale"):
    stylize.validate(small_config(sizes=(32, 64), steps=(3,)))


def test_experiment_quick_writes_result_figure_gif_and_results(style_data_dir, tmp_path):
  from experiments import style_transfer
  config = style_transfer.get_config("quick")
  config.data.dir, config.progress = style_data_dir, False
  config.optim.name = "adam"  # Compiles in seconds; L-BFGS is covered above.
  results = stylize.train(config, tmp_path / "run")
  for name in ("result.png", "progress.gif", "plots/side_by_side.png", "plots/loss.png"):
    assert (tmp_path / "run" / name).is_file(), name
  history = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert history[-1]["loss"] < history[0]["loss"]
  assert results["size"] == [48, 64]  # Tuebingen is 1024x768; the last scale is 64.


def test_cli_reports_a_missing_image_and_exits_1(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.stylize", f"--content={tmp_path / 'a.jpg'}",
       f"--style={tmp_path / 'b.jpg'}", "--noprogress"], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 1
  assert "Missing content image" in proc.stderr and "a.jpg" in proc.stderr


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])  # vmapped; one image after another.
def test_a_weight_sweep_optimises_each_image_as_its_own_run(random_vgg16_params, photos,
                                                            optimizer):
  config = small_config(sizes=(24, 32), steps=(2, 2))
  config.optim.name = optimizer
  swept = optimize.stylize(config, random_vgg16_params, *photos,
                           weights={"style_weight": np.array([10.0, 1000.0])})
  assert swept.image.shape == (2, 27, 32, 3) and swept.compilations == 2  # One per scale.
  assert len(swept.history[0]["loss"]) == 2
  config.loss.style_weight = 1000.0
  alone = optimize.stylize(config, random_vgg16_params, *photos)
  np.testing.assert_allclose(swept.image[1], alone.image, atol=0.05)
  assert swept.parts["total"][1] == pytest.approx(alone.parts["total"], rel=1e-4)
  assert np.abs(swept.image[0] - swept.image[1]).max() > 1.0  # Its own weight each.


@pytest.mark.parametrize("overrides, message", [
    ({"sweep.style_weight": "10,-1"}, r"config.loss.style_weight=-1.0 is not accepted"),
    ({"sweep.tv_weight": "0,1", "gif_every": 5}, "a sweep draws its images side by side"),
])
def test_a_sweep_the_schedule_cannot_run_is_refused(overrides, message):
  config = small_config()
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ConfigError, match=message):
    stylize.validate(config)


def test_experiment_quick_sweep_writes_each_image_and_the_row(style_data_dir, tmp_path):
  from experiments import style_transfer
  config = style_transfer.get_config("quick")
  config.data.dir, config.progress, config.gif_every = style_data_dir, False, 0
  config.optim.name = "adam"
  config.sweep.style_weight = "10,1000"
  results = stylize.train(config, tmp_path / "run")
  assert [v["name"] for v in results["variants"]] == ["style_weight=10", "style_weight=1000"]
  style_loss = [v["final_loss"]["style"] for v in results["variants"]]
  assert style_loss[1] > style_loss[0]  # Weighted by 1000 against 10.
  for name in ("result_style_weight=10.png", "result_style_weight=1000.png", "plots/sweep.png",
               "plots/loss.png"):
    assert (tmp_path / "run" / name).stat().st_size > 1000, name
