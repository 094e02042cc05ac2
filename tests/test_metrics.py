"""Metrics against numpy formulas written here (Wang et al. 2004 SSIM, PSNR definition)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr import metrics

jax.config.update("jax_disable_most_optimizations", True)


def _ref_ssim(a, b, peak=255.0):
  """SSIM of two 2-D float64 images: Gaussian 11x11 (sigma 1.5), valid region, K=(0.01, 0.03)."""
  ax = np.arange(11) - 5
  g = np.exp(-(ax**2) / (2 * 1.5**2))
  win = np.outer(g, g)
  win /= win.sum()
  c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
  h, w = a.shape
  vals = []
  for i in range(h - 10):
    for j in range(w - 10):
      pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
      ma, mb = np.sum(win * pa), np.sum(win * pb)
      va = np.sum(win * pa * pa) - ma**2
      vb = np.sum(win * pb * pb) - mb**2
      cov = np.sum(win * pa * pb) - ma * mb
      vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
  return float(np.mean(vals))


def _y255(rgb):
  rgb = np.round(rgb * 255)  # the 8-bit images the MATLAB scripts read
  return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def test_psnr_known_mse_on_gray_and_shave():
  hr = np.full((1, 20, 20, 1), 100 / 255)
  sr = hr + 10 / 255
  sr[:, :2] = 0.0  # a wrecked border that shave=2 must remove
  p = metrics.psnr(jnp.asarray(sr), jnp.asarray(hr), shave=2)
  np.testing.assert_allclose(p, [20 * math.log10(255 / 10)], atol=1e-3)


def test_psnr_y_matches_reference_and_identity_is_infinite():
  rng = np.random.default_rng(0)
  hr = rng.random((2, 16, 18, 3))
  sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
  yh, ys = _y255(hr)[:, 3:-3, 3:-3], _y255(sr)[:, 3:-3, 3:-3]
  ref = [10 * math.log10(255**2 / np.mean((yh[i] - ys[i]) ** 2)) for i in range(2)]
  out = metrics.psnr(jnp.asarray(sr), jnp.asarray(hr), shave=3)
  np.testing.assert_allclose(out, ref, atol=2e-3)
  assert bool(jnp.all(jnp.isinf(metrics.psnr(jnp.asarray(hr), jnp.asarray(hr)))))
  rgb = metrics.psnr(jnp.asarray(sr), jnp.asarray(hr), y_channel=False)
  ref_rgb = [10 * math.log10(255**2 / np.mean((np.round(sr[i] * 255) - np.round(hr[i] * 255)) ** 2))
             for i in range(2)]
  np.testing.assert_allclose(rgb, ref_rgb, atol=2e-3)


def test_ssim_y_matches_wang_reference():
  rng = np.random.default_rng(1)
  hr = rng.random((1, 26, 24, 3))
  # A smooth image plus noise, so SSIM is far from both 0 and 1.
  hr = 0.5 * hr + 0.5 * np.linspace(0, 1, 24)[None, None, :, None]
  sr = np.clip(hr + rng.normal(0, 0.08, hr.shape), 0, 1)
  ref = _ref_ssim(_y255(sr)[0, 2:-2, 2:-2], _y255(hr)[0, 2:-2, 2:-2])
  out = metrics.ssim(jnp.asarray(sr), jnp.asarray(hr), shave=2)
  np.testing.assert_allclose(out, [ref], atol=2e-4)
  assert 0.2 < ref < 0.95
  same = metrics.ssim(jnp.asarray(hr), jnp.asarray(hr))
  np.testing.assert_allclose(same, [1.0], atol=1e-5)


def test_metrics_reject_bad_shapes():
  with pytest.raises(ValueError, match="differ"):
    metrics.psnr(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 9, 3)))
  with pytest.raises(ValueError, match="too small"):
    metrics.psnr(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)), shave=4)
