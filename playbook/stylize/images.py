"""Images being stylized, on the host: resize, save, GIF, figure.

Images here are float32 RGB arrays of shape (H, W, 3) with values in 0..255, the scale the Caffe
VGG weights expect; ``save_image`` rounds and clips to uint8. Files are read by the one image
reader, ``playbook.data.images.read_rgb``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from playbook.run import plots


def resize(image: np.ndarray, long_side: int) -> np.ndarray:
  """Resizes so that the longer side is ``long_side`` pixels, keeping the aspect ratio (bicubic)."""
  if long_side < 16:
    raise ValueError(f"Image size {long_side} is too small: the VGG pools five times; use >= 16.")
  h, w = image.shape[:2]
  scale = long_side / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  pil = Image.fromarray(to_uint8(image))
  return np.asarray(pil.resize(size, Image.Resampling.BICUBIC), np.float32)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes to exactly (height, width) in float (bicubic), e.g. a coarse result to the next scale."""
  channels = [Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F")
              .resize((width, height), Image.Resampling.BICUBIC) for c in range(image.shape[-1])]
  return np.stack([np.asarray(c, np.float32) for c in channels], -1)


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
  """Writes an RGB image (0..255 float or uint8) atomically; the format follows the suffix."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  Image.fromarray(to_uint8(image)).save(tmp, format=Image.registered_extensions().get(
      path.suffix.lower(), "PNG"))
  tmp.replace(path)
  return path


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, *, frame_ms: int = 100) -> Path:
  """Writes the frames (same size) as a looping GIF, the last frame held three times as long."""
  if not frames:
    raise ValueError("No frames to write; record at least one (gif_every > 0).")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  size = frames[-1].shape[1], frames[-1].shape[0]
  pils = [Image.fromarray(to_uint8(f)).resize(size, Image.Resampling.BICUBIC) for f in frames]
  durations = [frame_ms] * (len(pils) - 1) + [3 * frame_ms]
  tmp = path.with_name(f".{path.name}.tmp")
  pils[0].save(tmp, format="GIF", save_all=True, append_images=pils[1:], duration=durations,
               loop=0)
  tmp.replace(path)
  return path


def side_by_side(images: dict[str, np.ndarray], path: str | os.PathLike, *,
                 title: str = "") -> Path:
  """One row of captioned images, e.g. {'content': c, 'style': s, 'result': r}."""
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.0), squeeze=False)
  for ax, (caption, image) in zip(axes[0], images.items()):
    ax.imshow(to_uint8(image))
    ax.set_title(caption)
    ax.axis("off")
  if title:
    fig.suptitle(title)
  return plots.save(fig, Path(path))
