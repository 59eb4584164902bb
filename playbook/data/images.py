"""Image files decoded on the host: one image to RGB, resize + centre crop, batches with a bounded
prefetch (a thread pool decodes the next batches while the device works on the current one)."""

from __future__ import annotations

import concurrent.futures
import os
from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from playbook.data.paths import DataError

# The largest image decoded (width x height): a 64-megapixel photo passes; a file declaring more
# (a decompression bomb, a few KB that would expand to GBs) is refused from its header.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = None  # PIL's own limit, replaced by the check in read_rgb (one message).


def read_rgb(path: str | os.PathLike, *, what: str = "image", hint: str = "") -> np.ndarray:
  """The image at ``path`` as uint8 RGB (H, W, 3); a ``DataError`` names a missing or undecodable
  file (``what`` says which image it is, ``hint`` where to find a good one)."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise DataError(f"Missing {what} {path}: no such file.{hint}")
  try:
    with Image.open(path) as image:  # Reads the header only.
      width, height = image.size
      if width * height > MAX_PIXELS:  # Refused before a byte of pixels is decoded.
        raise DataError(f"Refused {what} {path}: it declares {width} x {height} pixels, more "
                        f"than the {MAX_PIXELS:,} read here (a decompression bomb, or a photo "
                        f"to scale down first).{hint}")
      image.load()  # Decode now: a truncated file fails here, not later.
      return np.asarray(image.convert("RGB"))
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise DataError(f"Unreadable {what} (file {path} cannot be decoded: {type(e).__name__}: "
                    f"{e}); it is not a readable JPEG/PNG/... file. Replace or remove it.{hint}"
                    ) from e


def resize_center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
  """Scales the shorter side to ``size`` (bicubic) and crops the centre ``size`` x ``size``."""
  image = Image.fromarray(np.asarray(rgb, np.uint8))
  width, height = image.size
  scale = size / min(width, height)
  image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                       Image.BICUBIC)
  width, height = image.size
  left, top = (width - size) // 2, (height - size) // 2
  return np.asarray(image.crop((left, top, left + size, top + size)))


def resize_whole(rgb: np.ndarray, size: int) -> np.ndarray:
  """Scales the whole image to ``size`` x ``size`` (bicubic), aspect ratio not kept."""
  return np.asarray(Image.fromarray(np.asarray(rgb, np.uint8)).resize((size, size), Image.BICUBIC))


def resize_eval_crop(rgb: np.ndarray, size: int, fraction: float = 0.875) -> np.ndarray:
  """The EfficientNet/Inception evaluation crop: the central square of ``fraction`` of the
  shorter side (224 of 256), scaled to ``size`` x ``size`` (bicubic)."""
  image = Image.fromarray(np.asarray(rgb, np.uint8))
  width, height = image.size
  side = fraction * min(width, height)
  left, top = (width - side) / 2, (height - side) / 2
  return np.asarray(image.resize((size, size), Image.BICUBIC,
                                 box=(left, top, left + side, top + side)))


RESIZERS = {"crop": resize_center_crop, "squash": resize_whole, "eval_crop": resize_eval_crop}


def load_image(path: str | os.PathLike, size: int, resize: str = "crop") -> np.ndarray:
  return RESIZERS[resize](read_rgb(path), size)


def image_batches(paths: Sequence[Path], size: int, batch_size: int, *, prefetch: int = 2,
                  workers: int = 2, resize: str = "crop") -> Iterator[np.ndarray]:
  """uint8 batches (B, size, size, 3) of ``paths`` in order; at most ``prefetch`` batches are
  decoded ahead, so memory stays bounded whatever the number of images."""
  starts = range(0, len(paths), batch_size)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending: deque = deque()
    for start in starts:
      pending.append([pool.submit(load_image, p, size, resize)
                      for p in paths[start:start + batch_size]])
      if len(pending) > prefetch:
        yield np.stack([f.result() for f in pending.popleft()])
    while pending:
      yield np.stack([f.result() for f in pending.popleft()])
