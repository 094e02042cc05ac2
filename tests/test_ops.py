"""Image ops against independent references written here from their definitions."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jsr.ops import color, degrade
from jsr.ops.resize import imresize
from tests.np_reference import imresize as _ref_imresize  # MATLAB imresize.m, per output pixel

jax.config.update("jax_disable_most_optimizations", True)


@pytest.mark.parametrize("h,w,scale", [
    (13, 17, 0.5), (12, 15, 1 / 3), (17, 9, 0.25), (7, 11, 2.0), (5, 6, 3.0), (4, 9, 4.0),
    (11, 13, 0.7), (9, 7, 1.5), (6, 10, 2.3), (1, 7, 2.0), (7, 1, 0.5), (1, 1, 3.0),
])
def test_imresize_matches_matlab_reference(h, w, scale):
  rng = np.random.default_rng(0)
  img = rng.random((h, w, 2))
  out = np.asarray(imresize(jnp.asarray(img, jnp.float32), scale))
  oh, ow = math.ceil(scale * h), math.ceil(scale * w)
  chex.assert_shape(out, (oh, ow, 2))
  ref = _ref_imresize(img, oh, ow, scale, scale)
  np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.parametrize("kernel", ["triangle", "lanczos3"])
def test_imresize_other_kernels(kernel):
  img = np.random.default_rng(1).random((9, 10, 1))
  for scale in (0.5, 2.0):
    out = np.asarray(imresize(jnp.asarray(img, jnp.float32), scale, kernel=kernel))
    ref = _ref_imresize(img, out.shape[0], out.shape[1], scale, scale, kernel)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_imresize_explicit_output_shape_uses_per_axis_scales():
  img = np.random.default_rng(2).random((7, 13, 3))
  out = np.asarray(imresize(jnp.asarray(img, jnp.float32), out_shape=(13, 5)))
  ref = _ref_imresize(img, 13, 5, 13 / 7, 5 / 13)
  np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.parametrize("scale", [0.5, 0.25, 2.0, 3.0])
def test_imresize_interior_matches_pil_float_bicubic(scale):
  # PIL's float ("F") bicubic uses the same a=-0.5 kernel, antialiasing and pixel-centre
  # convention, but clips the kernel at the border instead of mirroring: interiors must agree.
  img = np.random.default_rng(3).random((64, 60)).astype(np.float32)
  oh, ow = math.ceil(64 * scale), math.ceil(60 * scale)
  pil = np.asarray(Image.fromarray(img, mode="F").resize((ow, oh), Image.BICUBIC))
  out = np.asarray(imresize(jnp.asarray(img[..., None]), scale))[..., 0]
  # The kernel reaches 2 input pixels (2/scale when shrinking): in output pixels, 2*max(scale, 1).
  m = int(math.ceil(2 * max(1.0, scale))) + 2
  assert out[m:-m, m:-m].size >= 16
  np.testing.assert_allclose(out[m:-m, m:-m], pil[m:-m, m:-m], atol=1e-4)
  assert np.abs(out - pil).max() > 1e-3  # and the borders do differ (mirror vs clipped kernel)


def test_imresize_batched_constant_and_gradient():
  x = jnp.full((2, 3, 10, 12, 3), 0.37)
  y = jax.jit(lambda v: imresize(v, 0.5))(x)
  chex.assert_shape(y, (2, 3, 5, 6, 3))
  np.testing.assert_allclose(y, 0.37, atol=1e-6)  # weights sum to one
  g = jax.grad(lambda v: jnp.sum(imresize(v, 1 / 3) ** 2))(jnp.ones((1, 9, 9, 1)))
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0


def test_imresize_quantize_gives_8bit_values():
  x = jnp.asarray(np.random.default_rng(4).random((1, 16, 16, 3)), jnp.float32)
  y = np.asarray(imresize(x, 0.5, quantize=True)) * 255
  np.testing.assert_allclose(y, np.round(y), atol=1e-3)
  assert y.min() >= 0 and y.max() <= 255


@pytest.mark.parametrize("h,w,scale", [(48, 40, 0.5), (24, 30, 1 / 3), (24, 32, 0.25),
                                       (12, 15, 2.0), (8, 10, 3.0), (6, 7, 4.0)])
def test_imresize_quantize_is_matlabs_uint8_path_bit_for_bit(h, w, scale):
  # x2 bicubic weights are multiples of 1/256, so many pixels land exactly on k + 0.5: MATLAB's
  # uint8 path rounds those up, and any drift in how jsr rounds shows up here as 1-level errors.
  img = np.random.default_rng(9).integers(0, 256, (h, w, 3)).astype(np.float64)
  img[:4, :4] = 255  # saturated corner: overshoot must clip at 255 after each pass
  oh, ow = math.ceil(scale * h), math.ceil(scale * w)
  ref = _ref_imresize(img, oh, ow, scale, scale, uint8=True)
  # The input as load_image gives it: float32 of k / 255.
  out = np.asarray(imresize(jnp.asarray((img / 255).astype(np.float32)), scale, quantize=True))
  np.testing.assert_array_equal(np.round(out.astype(np.float64) * 255), ref)
  np.testing.assert_allclose(out * 255, ref, atol=1e-4)


def test_imresize_rejects_bad_arguments():
  with pytest.raises(ValueError, match="give scale, out_shape or both"):
    imresize(jnp.zeros((4, 4, 1)))
  with pytest.raises(ValueError, match="out_shape must be positive"):
    imresize(jnp.zeros((4, 4, 1)), 2, out_shape=(0, 8))
  with pytest.raises(ValueError, match="unknown kernel"):
    imresize(jnp.zeros((4, 4, 1)), 2, kernel="mitchell")
  with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\)"):
    imresize(jnp.zeros((4, 4)), 2)


# -- Colour -------------------------------------------------------------------------------------

def test_rgb_to_ycbcr_matches_bt601_matlab_formula():
  rgb = np.random.default_rng(5).random((4, 5, 3))
  r, g, b = rgb[..., 0] * 255, rgb[..., 1] * 255, rgb[..., 2] * 255
  # MATLAB rgb2ycbcr (ITU-R BT.601, studio swing) on a 0-255 scale.
  y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
  cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
  cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
  out = np.asarray(color.rgb_to_ycbcr(jnp.asarray(rgb, jnp.float32))) * 255
  np.testing.assert_allclose(out, np.stack([y, cb, cr], -1), atol=1e-3)
  white = np.asarray(color.rgb_to_y(jnp.ones((1, 3)))) * 255
  np.testing.assert_allclose(white, [[235.0]], atol=1e-3)
  back = color.ycbcr_to_rgb(color.rgb_to_ycbcr(jnp.asarray(rgb, jnp.float32)))
  np.testing.assert_allclose(back, rgb, atol=1e-5)


def test_luma_keeps_gray_images():
  gray = jnp.asarray(np.random.default_rng(6).random((2, 4, 4, 1)), jnp.float32)
  np.testing.assert_array_equal(color.luma(gray), gray)


# -- Kernels and degradations ---------------------------------------------------------------------

def test_gaussian_kernel_formula_and_covariance():
  k = degrade.gaussian_kernel(7, 1.3)
  ax = np.arange(7) - 3
  ref = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.3**2))
  np.testing.assert_allclose(k, ref / ref.sum(), atol=1e-7)
  # Anisotropic: the kernel's second moments are the covariance R diag(s1^2, s2^2) R^T.
  s1, s2, th = 3.0, 1.0, 0.6
  k = degrade.gaussian_kernel(41, s1, s2, th).astype(np.float64)
  ax = np.arange(41) - 20
  yy, xx = np.meshgrid(ax, ax, indexing="ij")
  cov = np.array([[np.sum(k * xx * xx), np.sum(k * xx * yy)],
                  [np.sum(k * xx * yy), np.sum(k * yy * yy)]])
  rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
  np.testing.assert_allclose(cov, rot @ np.diag([s1**2, s2**2]) @ rot.T, atol=1e-3)


def test_blur_is_a_true_convolution_with_reflect_borders():
  rng = np.random.default_rng(7)
  x = rng.random((1, 9, 8, 2))
  k = rng.random((3, 5))
  k /= k.sum()
  xp = np.pad(x, ((0, 0), (1, 1), (2, 2), (0, 0)), mode="reflect")
  ref = np.zeros_like(x)
  for i in range(9):
    for j in range(8):
      for a in range(3):
        for b in range(5):
          # convolution: out[i, j] = sum k[a, b] * x[i - (a - 1), j - (b - 2)]
          ref[0, i, j] += k[a, b] * xp[0, i + 2 - a, j + 4 - b]
  out = degrade.blur(jnp.asarray(x, jnp.float32), k)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_degrade_modes_and_noise(tmp_path):
  x = jnp.asarray(np.random.default_rng(8).random((2, 12, 12, 3)), jnp.float32)
  k = degrade.gaussian_kernel(5, 1.0)
  direct = degrade.degrade(x, 3, kernel=k, mode="direct")
  np.testing.assert_allclose(direct, degrade.blur(x, k)[:, ::3, ::3], atol=1e-6)
  bic = degrade.degrade(x, 2)
  np.testing.assert_allclose(bic, imresize(x, 0.5), atol=1e-6)
  noisy = degrade.degrade(x, 2, noise_sigma=0.1, rng=jax.random.PRNGKey(0))
  assert 0.07 < float(jnp.std(noisy - bic)) < 0.13
  path = tmp_path / "k.npy"
  np.save(path, 2 * k)
  np.testing.assert_allclose(degrade.load_kernel(path), k, atol=1e-7)
  np.save(path, np.zeros((3, 3, 3)))
  with pytest.raises(ValueError, match="k.npy"):
    degrade.load_kernel(path)
  with pytest.raises(ValueError, match="mode"):
    degrade.degrade(x, 2, mode="area")
