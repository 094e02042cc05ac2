"""NIQE against references written here from the paper and the MATLAB release, and MATLAB's value.

Independent of jsr's code: the Gaussian window from `fspecial`'s formula, MSCN from Eq. 1 with an
explicit 7x7 sum, the AGGD fit by a continuous root solve (not the release's lookup table) and on
samples drawn from a known AGGD, the half-scale image from tests/np_reference.py's MATLAB imresize,
and a whole NIQE assembled from those pieces. The golden value is MATLAB's 5.72957338 on Set14
baboon.png (Y, no crop); scripts/niqe_check.py is the figure of record for it.
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, optimize, special, stats

from jsr import niqe
from tests import np_reference

BENCHMARKS = Path(os.environ.get("JSR_BENCHMARKS",
                                 Path(__file__).resolve().parents[2] / "shared/data/benchmarks"))
MATLAB_BABOON = 5.72957338  # MATLAB R2021a, niqe_release, Y channel, no crop (BasicSR's figure)
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # computefeature.m's circshift offsets


# -- References ----------------------------------------------------------------------------------

def fspecial_gaussian(size=7, sigma=7 / 6):
  ax = np.arange(size) - (size - 1) / 2
  xx, yy = np.meshgrid(ax, ax)
  w = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
  return w / w.sum()


def ref_mscn(img):
  """Eq. 1 with C = 1: each pixel's 7x7 Gaussian-weighted mean and deviation, borders replicated."""
  w = fspecial_gaussian()
  pad = np.pad(img, 3, mode="edge")
  win = np.lib.stride_tricks.sliding_window_view(pad, (7, 7))
  mu = np.einsum("ijkl,kl->ij", win, w)
  sigma = np.sqrt(np.abs(np.einsum("ijkl,kl->ij", win**2, w) - mu**2))
  return (img - mu) / (sigma + 1)


def ratio(alpha):
  # E|x|^2 / E[x^2] of a generalized Gaussian of shape alpha.
  return special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha))


def ref_aggd(x, table=False):
  """Lasmar et al.'s moment estimator: alpha solves ratio(alpha) = the corrected sample ratio.

  table=False solves it continuously (brentq); table=True picks the nearest entry of
  estimateaggdparam.m's gam = 0.2:0.001:10, as the release does.
  """
  x = x.ravel()
  sl, sr = np.sqrt(np.mean(x[x < 0] ** 2)), np.sqrt(np.mean(x[x > 0] ** 2))
  g = sl / sr
  rhat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
  target = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
  if table:
    gam = 0.2 + 0.001 * np.arange(9801)
    alpha = gam[np.argmin((ratio(gam) - target) ** 2)]
  else:
    alpha = optimize.brentq(lambda a: ratio(a) - target, 0.2, 10.0, xtol=1e-12)
  k = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
  return alpha, sl * k, sr * k


def ref_block_features(block, table=False):
  a, bl, br = ref_aggd(block, table)
  out = [a, (bl + br) / 2]
  for s in SHIFTS:
    a, bl, br = ref_aggd(block * np.roll(block, s, axis=(0, 1)), table)
    out += [a, (br - bl) * special.gamma(2 / a) / special.gamma(1 / a), bl, br]
  return np.array(out)


def ref_niqe(y255, table=False):
  """The release's computequality.m from the pieces above (images without flat 7x7 areas)."""
  params = niqe.pristine_params()
  h, w = (s // 96 * 96 for s in y255.shape)
  img, rows = y255[:h, :w], []
  for scale in (1, 2):
    z, b = ref_mscn(img), 96 // scale
    rows.append([ref_block_features(z[i:i + b, j:j + b], table)
                 for j in range(0, z.shape[1], b) for i in range(0, z.shape[0], b)])
    img = np_reference.imresize(img[..., None], h // 2, w // 2, 0.5, 0.5)[..., 0]
  feats = np.concatenate([np.array(r) for r in rows], axis=1)
  d = params["mu"] - feats.mean(0)
  return float(np.sqrt(d @ np.linalg.pinv((params["cov"] + np.cov(feats.T)) / 2) @ d))


def sample_aggd(rng, alpha, beta_l, beta_r, n):
  """Draws from the AGGD: a side with probability beta / (beta_l + beta_r), then |GGD| * beta."""
  left = rng.random(n) < beta_l / (beta_l + beta_r)
  mag = np.abs(stats.gennorm.rvs(alpha, size=n, random_state=rng))
  return np.where(left, -beta_l * mag, beta_r * mag)


def smooth_field(rng, h, w):
  """A smooth random test image in [0.1, 0.9]: octaves of cubic-upsampled noise, 1/f-like."""
  img = sum(ndimage.zoom(rng.standard_normal((h // f + 1, w // f + 1)), f, order=3)[:h, :w] / f**0.5
            for f in (1, 2, 4, 8, 16))
  img = (img - img.min()) / (img.max() - img.min())
  return 0.1 + 0.8 * img


# -- Tests ---------------------------------------------------------------------------------------

def test_pristine_params_load_with_expected_shapes():
  p = niqe.pristine_params()
  assert p["mu"].shape == (36,) and p["cov"].shape == (36, 36) and p["window"].shape == (7, 7)
  np.testing.assert_allclose(p["cov"], p["cov"].T, atol=1e-12)
  assert np.linalg.eigvalsh(p["cov"]).min() > -1e-9 * np.abs(p["cov"]).max()
  np.testing.assert_allclose(p["window"], fspecial_gaussian(), rtol=1e-12, atol=0)
  assert not p["mu"].flags.writeable
  assert niqe.pristine_params() is p  # loaded once


def test_params_file_errors_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.npz"):
    niqe.load_params(tmp_path / "absent.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="junk.npz"):
    niqe.load_params(tmp_path / "junk.npz")
  np.savez(tmp_path / "short.npz", mu_pris_param=np.zeros(35), cov_pris_param=np.eye(36),
           gaussian_window=fspecial_gaussian())
  with pytest.raises(ValueError, match=r"short.npz.*mu has shape \(35,\)"):
    niqe.load_params(tmp_path / "short.npz")
  np.savez(tmp_path / "nokey.npz", mu_pris_param=np.zeros(36))
  with pytest.raises(ValueError, match="nokey.npz"):
    niqe.load_params(tmp_path / "nokey.npz")


def test_mscn_matches_eq1_and_is_exactly_zero_on_flat_areas():
  rng = np.random.default_rng(0)
  img = np.round(255 * smooth_field(rng, 40, 50))
  img[5:20, 30:48] = 117.0  # a flat area: x - mu is exactly 0 there, whatever the rounding
  out = niqe.mscn(img)
  np.testing.assert_allclose(out, ref_mscn(img), rtol=0, atol=1e-10)
  assert np.all(out[8:17, 33:45] == 0.0)
  assert np.count_nonzero(out == 0.0) == 9 * 12  # nothing else snapped


@pytest.mark.parametrize("alpha,beta_l,beta_r", [(2.0, 1.0, 1.0), (0.8, 0.5, 1.5), (1.4, 2.0, 0.7)])
def test_aggd_fit_recovers_known_distribution(alpha, beta_l, beta_r):
  x = sample_aggd(np.random.default_rng(1), alpha, beta_l, beta_r, 200_000)
  a, bl, br = niqe.fit_aggd(x)
  assert abs(a - alpha) < 0.03 * alpha
  np.testing.assert_allclose([bl, br], [beta_l, beta_r], rtol=0.02)
  # The release's lookup table (step 0.001) against a continuous solve on the same samples.
  ra, rbl, rbr = ref_aggd(x)
  assert abs(a - ra) <= 6e-4
  np.testing.assert_allclose([bl, br], [rbl, rbr], rtol=2e-3)  # d beta / d alpha is large at 0.8
  np.testing.assert_allclose([a, bl, br], ref_aggd(x, table=True), rtol=1e-12)


def test_aggd_fit_degenerate_samples_follow_matlab():
  a, bl, br = niqe.fit_aggd(np.abs(np.random.default_rng(2).standard_normal(100)) + 0.1)
  assert a == pytest.approx(0.2) and math.isnan(bl) and br > 0  # min over all-NaN: first entry


def test_block_features_match_reference():
  z = ref_mscn(np.round(255 * smooth_field(np.random.default_rng(3), 96, 96)))
  ours, ref = niqe.block_features(z), ref_block_features(z)
  assert ours.shape == (18,)
  np.testing.assert_allclose(ours[[0, 2, 6, 10, 14]], ref[[0, 2, 6, 10, 14]], atol=6e-4)  # shapes
  np.testing.assert_allclose(ours, ref, rtol=3e-3, atol=2e-5)
  np.testing.assert_allclose(ours, ref_block_features(z, table=True), rtol=1e-10, atol=1e-12)


def test_downscale_half_is_matlab_imresize():
  img = 255 * np.random.default_rng(4).random((96, 144))
  ref = np_reference.imresize(img[..., None], 48, 72, 0.5, 0.5)[..., 0]
  np.testing.assert_allclose(niqe.downscale_half(img), ref, rtol=0, atol=1e-9)


def test_niqe_matches_reference_pipeline():
  rgb = smooth_field(np.random.default_rng(5), 200, 200)[..., None] * [1.0, 0.9, 0.8]
  rgb = np.clip(rgb + np.random.default_rng(6).normal(0, 0.02, rgb.shape), 0, 1)
  y = np.floor(np_reference.y255(np.round(rgb * 255)) + 0.5)  # rgb2ycbcr on uint8: rounded Y
  np.testing.assert_array_equal(niqe.to_gray255(rgb), y)
  ours = niqe.niqe(rgb)
  assert ours == pytest.approx(ref_niqe(y, table=True), rel=1e-9)
  # With alpha solved continuously the value moves by the table's 0.001 steps in alpha only.
  assert ours == pytest.approx(ref_niqe(y), rel=5e-3)


def test_noise_raises_niqe():
  rng = np.random.default_rng(7)
  clean = smooth_field(rng, 192, 192)[..., None]
  values = [niqe.niqe(np.clip(clean + rng.normal(0, s, clean.shape), 0, 1)) for s in (0, 0.03, 0.1)]
  assert values[0] < values[1] < values[2], values
  assert values[2] > values[0] + 2


def test_input_conventions():
  rng = np.random.default_rng(8)
  rgb = np.round(255 * smooth_field(rng, 192, 210)[..., None] * [1.0, 0.7, 0.4]).astype(np.uint8)
  v = niqe.niqe(rgb)
  assert niqe.niqe(rgb.astype(np.float32) / 255) == v  # float in [0, 1] is the same 8-bit image
  gray = rgb[..., :1]
  assert niqe.niqe(gray) == niqe.niqe(gray[..., 0])  # (H, W, 1) and (H, W)
  # y_channel=False is MATLAB rgb2gray (coefficients from its documentation), rounded.
  g = np.floor(rgb.astype(np.float64) @ [0.298936021293775, 0.587043074451121, 0.114020904255103]
               + 0.5)
  np.testing.assert_array_equal(niqe.to_gray255(rgb, y_channel=False), g)
  assert niqe.niqe(rgb, y_channel=False) == pytest.approx(niqe.niqe(g.astype(np.uint8)), abs=1e-12)
  # crop_border removes that many pixels at each side before the blocks are cut.
  assert niqe.niqe(rgb, crop_border=4) == niqe.niqe(rgb[4:-4, 4:-4])
  batch = niqe.niqe_batch(np.stack([rgb, rgb[::-1]]))
  assert batch.shape == (2,) and batch.dtype == np.float64
  np.testing.assert_array_equal(batch, [v, niqe.niqe(rgb[::-1])])


def test_minimum_size_and_bad_inputs():
  rng = np.random.default_rng(9)
  ok = rng.random((96, 192, 1))
  assert np.isfinite(niqe.niqe(ok))  # two blocks: the smallest image with a covariance
  for shape in ((96, 191, 1), (95, 400, 1), (150, 150, 3)):
    with pytest.raises(ValueError, match="too small.*96x192"):
      niqe.niqe(rng.random(shape))
  with pytest.raises(ValueError, match="too small.*104x200.*crop_border=4"):
    niqe.niqe(ok, crop_border=4)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    niqe.niqe(255 * ok)  # a 0..255 float image
  with pytest.raises(ValueError, match="dtype"):
    niqe.niqe(ok.astype(np.int32))
  with pytest.raises(ValueError, match="shape"):
    niqe.niqe(rng.random((192, 192, 4)))


def test_flat_image_is_nan_with_warning():
  with pytest.warns(RuntimeWarning, match="finite features"):
    assert math.isnan(niqe.niqe(np.full((192, 192, 3), 0.5)))


def test_baboon_matches_matlab():
  path = BENCHMARKS / "Set14" / "baboon.png"
  if not path.is_file():
    pytest.skip(f"{path} not found (set JSR_BENCHMARKS to the benchmarks folder)")
  from PIL import Image
  with Image.open(path) as im:
    rgb = np.asarray(im.convert("RGB"))
  assert niqe.niqe(rgb) == pytest.approx(MATLAB_BABOON, abs=1e-3)
