"""KernelGAN: the generator's kernel and its convention, alignment, constraints, the x4 kernel,
and a tiny blind run through jsr.zeroshot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jsr import io as jio
from jsr import zeroshot
from jsr.methods import kernelgan
from jsr.models import kernelgan_net
from jsr.ops import degrade

ROOT = Path(__file__).resolve().parents[1]


def load_config(arg: str = "runlocal"):
  spec = importlib.util.spec_from_file_location("kernelgan_config", ROOT / "configs/kernelgan.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_generator_is_its_kernel_then_direct_subsampling():
  gen = kernelgan_net.KernelGenerator(structure=(3, 5, 1), features=4, scale=2)
  x = jnp.asarray(np.random.default_rng(0).random((1, 24, 24, 1)), jnp.float32)
  params = gen.init(jax.random.key(1), x)["params"]
  w = kernelgan.effective_kernel(gen.apply, params, gen.kernel_size)
  chex.assert_shape(w, (7, 7))
  g = gen.apply({"params": params}, x)[0, ..., 0]
  # Independent form: G(x)[i, j] = sum_uv w[u, v] x[2i + u, 2j + v] (valid correlation).
  xn, wn = np.asarray(x[0, ..., 0], np.float64), np.asarray(w, np.float64)
  ref = np.array([[np.sum(wn * xn[2 * i:2 * i + 7, 2 * j:2 * j + 7]) for j in range(g.shape[1])]
                  for i in range(g.shape[0])])
  np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-4, atol=1e-6)
  # jsr.ops.degrade with the flipped kernel is the same operator: degrade(y)[i] =
  # sum_u w[u] y[2i + u - 3]; with y = x[1:], that is G(x)[i - 1] wherever no padding is read.
  k = kernelgan.to_degrade_convention(np.asarray(w))
  d = np.asarray(degrade.degrade(x[:, 1:, 1:], 2, kernel=k, mode="direct"))[0, ..., 0]
  n = g.shape[0]
  np.testing.assert_allclose(d[2:1 + n, 2:1 + n], ref[1:, 1:], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_centred_kernel_samples_lr_pixel_i_at_hr_s_i_plus_half_cell(scale):
  # Blurring a ramp with a normalised kernel gives the ramp at the kernel's mean position, so
  # LR pixel i of the ramp x[r] = r must read s*i + (s - 1)/2 (MATLAB's bicubic alignment).
  corr = degrade.gaussian_kernel(13, 1.7, 0.9, 0.6)
  w2 = kernelgan.center_kernel(corr, 2)
  w = w2 if scale == 2 else kernelgan.center_kernel(kernelgan.analytic_x4(w2), 4)
  assert w.shape[0] % 2 == 1 and abs(w.sum() - 1) < 1e-9
  k = kernelgan.to_degrade_convention(w)
  ramp = jnp.broadcast_to(jnp.arange(96.0)[:, None, None], (96, 96, 1))[None]
  lr = np.asarray(degrade.degrade(ramp, scale, kernel=k, mode="direct", padding="edge"))[0, :, 10, 0]
  i = np.arange(len(lr))
  interior = slice(w.shape[0] // scale + 1, len(lr) - w.shape[0] // scale - 1)
  np.testing.assert_allclose(lr[interior], (scale * i + (scale - 1) / 2)[interior], atol=1e-3)


def test_analytic_x4_is_the_x2_kernel_applied_twice():
  w2 = kernelgan.center_kernel(degrade.gaussian_kernel(13, 1.2, 0.8, 0.3), 2)
  k2 = kernelgan.to_degrade_convention(w2)
  w4 = kernelgan.analytic_x4(w2)
  x = jnp.asarray(np.random.default_rng(2).random((1, 160, 160, 1)), jnp.float32)
  twice = np.asarray(degrade.degrade(degrade.degrade(x, 2, kernel=k2, mode="direct"), 2,
                                     kernel=k2, mode="direct"))[0, 8:-8, 8:-8, 0]
  # Same operator up to a whole-pixel shift: find it, then compare (the x4 kernel's edges are
  # cropped, so allow a small difference).
  once = np.asarray(degrade.degrade(x, 4, kernel=kernelgan.to_degrade_convention(w4),
                                    mode="direct"))[0, ..., 0]
  best = min(np.mean(np.abs(twice - once[8 + dy:32 + dy, 8 + dx:32 + dx]))
             for dy in (-1, 0, 1) for dx in (-1, 0, 1))
  assert best < 2e-3


def test_penalty_mask_matches_the_formula():
  m = kernelgan.penalty_mask(13)
  g = lambda r: np.exp(-r ** 2 / (2 * 13.0 ** 2))
  assert m[0, 0] == pytest.approx(30 * (1 - g(6) * g(6)), rel=1e-5)
  assert m[0, 6] == pytest.approx(30 * (1 - g(6) * g(0)), rel=1e-5)
  assert np.all(m[2:-2, 2:-2] == 0) and m[1, 6] > 0


def test_kernel_terms_of_a_centred_delta():
  w = np.zeros((13, 13), np.float32)
  w[6, 6] = 1.0
  t = {k: float(v) for k, v in kernelgan.kernel_terms(jnp.asarray(w), 2).items()}
  assert t["sum2one"] == pytest.approx(0.0, abs=1e-6)
  assert t["boundaries"] == pytest.approx(0.0, abs=1e-6)
  assert t["centralized"] == pytest.approx(0.25)  # centre 6, wanted 6.5 on both axes
  assert t["sparse"] == pytest.approx((1 + 168 * 1e-12 ** 0.2) / 169, rel=1e-4)


def test_clean_kernel_keeps_the_largest_values():
  w = np.full((5, 5), 0.001)
  w[2, 2], w[2, 3] = 0.5, 0.3
  c = kernelgan.clean_kernel(w, n=1)  # floor: 0.75 * second largest = 0.225
  assert np.count_nonzero(c) == 2 and c.sum() == pytest.approx(1.0)
  assert c[2, 2] == pytest.approx((0.5 - 0.225) / (0.5 + 0.3 - 0.45))


def test_too_small_image_is_an_error():
  config = load_config()
  with pytest.raises(ValueError, match="smaller than config.kernelgan.crop_size"):
    kernelgan.estimate_kernel(np.zeros((10, 40, 3), np.float32), config)


def test_blind_run_saves_kernels_and_sr(tmp_path):
  lr_dir = tmp_path / "lr"
  lr_dir.mkdir()
  img = jio.load_image(jio.list_images("samples:eval")[0]).image[60:100, 100:146]
  Image.fromarray(np.round(img * 255).astype(np.uint8)).save(lr_dir / "cat.png")
  # A gray photo too (Set14's bridge): the nets are RGB, so it runs as three equal channels.
  Image.fromarray(np.round(img[..., 1] * 255).astype(np.uint8)).save(lr_dir / "gray.png")
  config = load_config()
  config.eval.sets = ""
  config.data.inputs = str(lr_dir)
  rows = zeroshot.run(config, str(tmp_path / "w"))
  assert [r["image"] for r in rows] == ["cat.png", "gray.png"]
  assert rows[0]["iterations"] == config.zssr.max_iters and "kernelgan_seconds" in rows[0]
  k = np.load(tmp_path / "w/kernels/inputs/cat.npy")
  assert k.ndim == 2 and k.shape[0] % 2 == 1 and np.all(k >= 0)
  assert k.sum() == pytest.approx(1.0, abs=1e-5)
  chex.assert_shape(np.asarray(Image.open(tmp_path / "w/images/inputs/cat.png")), (80, 92, 3))


def _kernel_moments(k):
  """sigma_major, sigma_minor and the major axis' angle in [0, pi) of a kernel's mass: the
  covariance of k / sum(k) written out (x = column, y = row)."""
  k = np.clip(np.asarray(k, np.float64), 0.0, None)
  k = k / k.sum()
  y, x = np.mgrid[:k.shape[0], :k.shape[1]].astype(np.float64)
  dx, dy = x - (k * x).sum(), y - (k * y).sum()
  cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()],
                  [(k * dx * dy).sum(), (k * dy * dy).sum()]])
  vals, vecs = np.linalg.eigh(cov)
  return np.sqrt(vals[1]), np.sqrt(vals[0]), np.arctan2(vecs[1, 1], vecs[0, 1]) % np.pi


def test_recovers_a_known_anisotropic_gaussian():
  """The paper's settings but 1000 of its 3000 iterations (its learning rate falls 10x every 750,
  so the last 2000 move the kernel little; 3000 cost the suite 13 minutes when xdist's other
  worker shares the 2 cores) on a real photo blurred by a Gaussian of sigmas 1.8 and 1.2 HR pixels
  at 10 degrees (near the kernel of docs/selfsup.md's blind table), subsampled by 2: both of the
  estimate's second-moment sigmas within 30% of the truth's (measured: 1.64 and 1.24 at 1000
  iterations, 1.73 and 1.21 at 3000). The MATLAB-bicubic kernel (what "not blind" assumes, sigma
  0.85) fails that tolerance, so it measures something. The major axis' direction is not asserted:
  at this anisotropy (1.5) KernelGAN's angle is off by up to ~30 degrees (31 at 3000 iterations;
  docs/zeroshot.md, "KernelGAN accuracy")."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top

  s_major, s_minor, theta = 1.8, 1.2, np.radians(10.0)
  t = np.arange(13, dtype=np.float64) - 6.0
  y, x = np.meshgrid(t, t, indexing="ij")
  u, v = np.cos(theta) * x + np.sin(theta) * y, -np.sin(theta) * x + np.cos(theta) * y
  k_true = np.exp(-0.5 * (u ** 2 / s_major ** 2 + v ** 2 / s_minor ** 2))
  k_true /= k_true.sum()
  # The 13x13 grid truncates the tails a little: the truth's own moments, within 1%.
  np.testing.assert_allclose(_kernel_moments(k_true), (s_major, s_minor, theta), rtol=0.01)
  hr = skimage.data.astronaut().astype(np.float64) / 255.0
  blurred = np.stack([ndimage.convolve(hr[..., c], k_true, mode="mirror") for c in range(3)], -1)
  lr = (np.round(blurred[::2, ::2] * 255.0) / 255.0).astype(np.float32)

  config = load_config("scale=2")
  config.kernelgan.max_iters = 1000
  k_est, _ = kernelgan.estimate_kernel(lr, config, seed=0)

  def close(k):
    a, b, _ = _kernel_moments(k)
    return abs(a / s_major - 1) < 0.3 and abs(b / s_minor - 1) < 0.3

  assert close(k_est), _kernel_moments(k_est)
  # MATLAB bicubic x0.5 as a separable 1-D kernel (Keys a = -0.5, stretched by 2): isotropic.
  w = lambda z: np.where(np.abs(z) <= 1, 1.5 * np.abs(z) ** 3 - 2.5 * z ** 2 + 1,
                         np.where(np.abs(z) < 2, -0.5 * np.abs(z) ** 3 + 2.5 * z ** 2
                                  - 4 * np.abs(z) + 2, 0.0))
  k1 = w((np.arange(8) - 3.5) / 2.0)
  assert not close(np.outer(k1, k1))
