"""Colour preservation for style transfer (Gatys, Bethge, Hertzmann, Shechtman, arXiv:1606.05897).

Two ways to keep the content photo's colours while taking the style's brush strokes:

* ``luminance_transfer``: keep the result's luminance (Y of YIQ) and put back the content's chroma
  (I, Q), as jcjohnson/neural-style's ``-original_colors 1`` does after the optimisation.
* ``match_color_statistics``: before the optimisation, map the style image's pixels with the affine
  transform that gives them the content's colour mean and covariance (the paper's "colour
  histogram matching", in its linear form: A = Sigma_c^1/2 Sigma_s^-1/2).

Images are float RGB in 0..255, shape (H, W, 3).
"""

from __future__ import annotations

import numpy as np

# NTSC RGB -> YIQ (FCC 1953); rows give Y, I, Q.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
  return image.astype(np.float64) @ _RGB_TO_YIQ.T


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
  return image @ _YIQ_TO_RGB.T


def luminance_transfer(result: np.ndarray, content: np.ndarray) -> np.ndarray:
  """The result's luminance with the content's chroma, clipped to 0..255 (same shapes)."""
  if result.shape != content.shape:
    raise ValueError(f"Result {result.shape} and content {content.shape} must have one shape.")
  yiq = rgb_to_yiq(content)
  yiq[..., 0] = rgb_to_yiq(result)[..., 0]
  return np.clip(yiq_to_rgb(yiq), 0, 255).astype(np.float32)


def _sqrtm(cov: np.ndarray, power: float) -> np.ndarray:
  """cov ** power for a symmetric positive semi-definite 3x3 matrix (eigenvalues floored)."""
  values, vectors = np.linalg.eigh(cov)
  values = np.maximum(values, 1e-5)
  return (vectors * values ** power) @ vectors.T


def match_color_statistics(style: np.ndarray, content: np.ndarray) -> np.ndarray:
  """``style`` recoloured to the mean and covariance of ``content``'s RGB pixels, in 0..255."""
  s = style.reshape(-1, 3).astype(np.float64)
  c = content.reshape(-1, 3).astype(np.float64)
  mu_s, mu_c = s.mean(0), c.mean(0)
  transform = _sqrtm(np.cov(c, rowvar=False), 0.5) @ _sqrtm(np.cov(s, rowvar=False), -0.5)
  out = (s - mu_s) @ transform.T + mu_c
  return np.clip(out, 0, 255).reshape(style.shape).astype(np.float32)
