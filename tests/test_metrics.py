"""Metrics against numpy formulas written here (Wang et al. 2004 SSIM, PSNR definition)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr import metrics
from tests import np_reference

jax.config.update("jax_disable_most_optimizations", True)


def _y255(rgb):
  return np_reference.y255(np.round(rgb * 255))  # the 8-bit images the MATLAB scripts read


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
  ref = np_reference.ssim(_y255(sr)[0, 2:-2, 2:-2], _y255(hr)[0, 2:-2, 2:-2])
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
