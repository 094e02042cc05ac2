"""jsr.ops.realworld: the variable-size buffer ops against OpenCV (which defines BSRGAN's resizes
and filters), USM against BasicSR's formula written here, and the two pipelines' contracts."""

from __future__ import annotations

import functools

import chex
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jsr.ops import realworld

# Compile time dominates (the pipelines are long programs of small ops).
jax.config.update("jax_disable_most_optimizations", True)

CV2_MODES = {0: cv2.INTER_AREA, 1: cv2.INTER_LINEAR, 2: cv2.INTER_CUBIC}


def _image(h, w, c=3, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  base = 0.5 + 0.3 * np.sin(7 * xx + 3 * yy)[..., None] + 0.1 * rng.standard_normal((h, w, c))
  return np.clip(base, 0, 1).astype(np.float32)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_resize_matches_opencv_on_valid_regions(mode):
  """Each sample: its valid (hv, wv) corner resized to its own size equals cv2.resize of that
  corner, whatever lies beyond it in the buffer. (Both axes shrink or both grow, as the
  pipelines' one factor per sample does: OpenCV's INTER_AREA switches to a linear variant on an
  axis that shrinks while the other grows.)"""
  cases = [(37, 53, 15, 22), (40, 40, 10, 10), (23, 31, 41, 50), (48, 30, 48, 30), (17, 29, 9, 15),
           (12, 20, 30, 47)]
  buf = np.full((len(cases), 48, 56, 3), 7.0, np.float32)  # don't-care values beyond the corner
  imgs = []
  for i, (h, w, _, _) in enumerate(cases):
    imgs.append(_image(h, w, seed=i))
    buf[i, :h, :w] = imgs[-1]
  hv, wv, oh, ow = (np.array(v, np.int32) for v in zip(*cases))
  out = jax.jit(realworld.resize, static_argnums=(6, 7))(
      jnp.asarray(buf), hv, wv, oh, ow, jnp.full(len(cases), mode), 48, 64)
  chex.assert_shape(out, (len(cases), 48, 64, 3))
  out = np.asarray(out)
  for i, (h, w, th, tw) in enumerate(cases):
    ref = cv2.resize(imgs[i], (tw, th), interpolation=CV2_MODES[mode])
    np.testing.assert_allclose(out[i, :th, :tw], ref, atol=2e-5, err_msg=f"case {cases[i]}")
    assert np.all(out[i, th:] == 0) and np.all(out[i, :, tw:] == 0)


@pytest.mark.parametrize("buf_h,buf_w", [(40, 40), (43, 47)])
def test_filter2d_is_opencv_reflect101_correlation_per_sample(buf_h, buf_w):
  # 43 + 8 = 51 = 3 x 17 and 47 + 8 = 55 = 5 x 11: transforms zero-padded to 54 x 60.
  rng = np.random.default_rng(1)
  sizes = [(40, 40), (25, 33), (12, 40)]
  buf = np.full((3, buf_h, buf_w, 3), -5.0, np.float32)
  kernels = rng.random((3, 9, 9)).astype(np.float32)  # not symmetric: correlation vs convolution
  kernels /= kernels.sum(axis=(1, 2), keepdims=True)
  imgs = []
  for i, (h, w) in enumerate(sizes):
    imgs.append(_image(h, w, seed=10 + i))
    buf[i, :h, :w] = imgs[-1]
  hv, wv = (np.array(v, np.int32) for v in zip(*sizes))
  out = np.asarray(jax.jit(realworld.filter2d)(jnp.asarray(buf), jnp.asarray(kernels), hv, wv))
  for i, (h, w) in enumerate(sizes):
    ref = cv2.filter2D(imgs[i], -1, kernels[i], borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(out[i, :h, :w], ref, atol=2e-5)


def test_fill_edges_replicates_last_row_and_column():
  x = np.arange(2 * 6 * 5 * 1, dtype=np.float32).reshape(2, 6, 5, 1)
  out = np.asarray(realworld.fill_edges(jnp.asarray(x), jnp.array([4, 6]), jnp.array([3, 5])))
  ref0 = np.pad(x[0, :4, :3], ((0, 2), (0, 2), (0, 0)), mode="edge")
  np.testing.assert_array_equal(out[0], ref0)
  np.testing.assert_array_equal(out[1], x[1])


def test_usm_sharp_matches_basicsr_formula():
  """BasicSR's USMSharp(radius=50): cv2.getGaussianKernel(51, 0) outer product, filter2D with
  reflect padding, residual mask |r| * 255 > 10, soft mask blurred, weight 0.5."""
  img = _image(64, 72, seed=3)
  g = cv2.getGaussianKernel(51, 0)
  k = (g @ g.T).astype(np.float32)
  blur = lambda a: cv2.filter2D(a, -1, k, borderType=cv2.BORDER_REFLECT_101)
  residual = img - blur(img)
  mask = (np.abs(residual) * 255 > 10).astype(np.float32)
  soft = blur(mask)
  sharp = np.clip(img + 0.5 * residual, 0, 1)
  ref = soft * sharp + (1 - soft) * img
  out = np.asarray(realworld.usm_sharp(jnp.asarray(img)[None]))[0]
  np.testing.assert_allclose(out, ref, atol=3e-5)


def test_bsrgan_shift_kernel_matches_linear_interpolation():
  """KAIR's shift_pixel: the kernel resampled (linear) at positions clip(t + (sf - 1) / 2)."""
  from scipy.interpolate import RegularGridInterpolator  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(2)
  k = rng.random((25, 25))
  for sf in (2, 4):
    shift = (sf - 1) * 0.5
    t = np.clip(np.arange(25) + shift, 0, 24)
    interp = RegularGridInterpolator((np.arange(25), np.arange(25)), k)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    ref = interp(np.stack([yy, xx], -1))
    m = np.asarray(realworld._shift_matrix(25, jnp.array([shift])))[0]  # pylint: disable=protected-access
    np.testing.assert_allclose(m @ k @ m.T, ref, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The pipelines' contracts.
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _run(pipeline: str, scale: int, batch: int = 16, size: int = 32):
  """One compiled pipeline per (pipeline, scale), run on: key 0 twice, key 1, and identical
  crops; returns numpy outputs and the compile count."""
  deg = realworld.default_config(pipeline)
  hr = jnp.asarray(np.stack([_image(size, size, seed=s % 4) for s in range(batch)]))
  fn = jax.jit(lambda x, key: realworld.degrade(x, key, deg, scale))
  out0 = jax.tree.map(np.asarray, fn(hr, jax.random.key(0)))
  again = np.asarray(fn(hr, jax.random.key(0))[0])
  other = np.asarray(fn(hr, jax.random.key(1))[0])
  same = np.asarray(fn(jnp.broadcast_to(hr[:1], hr.shape), jax.random.key(2))[0])
  return deg, hr, out0, again, other, same, fn._cache_size()  # pylint: disable=protected-access


@pytest.mark.parametrize("pipeline,scale", [("realesrgan", 4), ("bsrgan", 4)])
def test_pipeline_shapes_range_and_determinism(pipeline, scale):
  _, hr, (lr, gt, params), again, other, same, compiles = _run(pipeline, scale)
  b, size = hr.shape[0], hr.shape[1]
  chex.assert_shape(lr, (b, size // scale, size // scale, 3))
  chex.assert_shape(gt, hr.shape)
  assert np.all(np.isfinite(lr)) and lr.min() >= 0 and lr.max() <= 1
  np.testing.assert_allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # 8-bit values
  np.testing.assert_array_equal(lr, again)
  assert np.abs(lr - other).mean() > 1e-3
  # Identical HR crops still get their own chains.
  assert np.abs(same[0] - same[1]).mean() > 1e-3
  for k, v in params.items():
    assert v.shape[:1] == ((b,) if k != "resize1_bucket" else ()), k  # the bucket is per batch
  assert compiles == 1


def test_realesrgan_jpeg_draws_follow_the_config():
  _, _, (_, _, p), *_ = _run("realesrgan", 4)
  for q in (p["jpeg1"], p["jpeg2"]):
    assert q.min() >= 30 and q.max() <= 95 and np.all(q == np.round(q))


@pytest.mark.parametrize("split", [0.5, 0.0])
def test_first_resize_law_is_the_papers_per_sample(split):
  """Per-batch buckets or not, each sample's (kind, factor) has Real-ESRGAN's law: kind ~
  resize_prob (up, down, keep), factor ~ U[1, 1.5] / U[0.15, 1] / 1."""
  deg = realworld.default_config("realesrgan")
  deg.resize_split = split
  draw = jax.jit(jax.vmap(lambda k: realworld.first_resize_draws(k, 8, deg)))
  bucket, kind, f = (np.asarray(a) for a in draw(jax.random.split(jax.random.key(0), 4000)))
  kind, f = kind.ravel(), f.ravel()
  n = kind.size
  freq = np.bincount(kind, minlength=3) / n
  # Samples within a batch share its bucket: the std of a frequency is that of 4000 batches.
  np.testing.assert_allclose(freq, deg.resize_prob, atol=4 * np.sqrt(0.25 / 4000))
  up, down = f[kind == 0], f[kind == 1]
  assert up.min() >= 1 and up.max() <= 1.5 and np.all(f[kind == 2] == 1)
  assert down.min() >= 0.15 and down.max() <= 1
  # Uniform on [0.15, 1]: mean 0.575, and the fraction below 0.5 is 0.35 / 0.85.
  assert abs(down.mean() - 0.575) < 0.01 and abs(up.mean() - 1.25) < 0.01
  assert abs(np.mean(down < 0.5) - 0.35 / 0.85) < 0.02
  if split:
    assert set(np.unique(bucket)) == {0, 1, 2}


def test_bsrgan_orders_keep_downsample2_before_downsample3():
  _, _, (_, _, p), *_ = _run("bsrgan", 4)
  order = p["order"]
  for row in order:
    assert sorted(row.tolist()) == list(range(7))
    assert row.tolist().index(2) < row.tolist().index(3)
  assert len({tuple(r) for r in order}) > 8  # shuffled per sample


def test_degradation_block_reaches_supervised_and_gan_configs():
  """Every supervised/GAN config can switch to a real-world pipeline from the command line."""
  config = common.supervised(model="edsr", scale=4, variant="tiny", loss="1*L1", patch_size=32,
                             batch_size=2, total_steps=1, optim={})
  assert config.degradation.pipeline == "classical"
  assert tuple(config.degradation.realesrgan.resize_range) == (0.15, 1.5)
  assert config.degradation.bsrgan.jpeg_prob == 0.9


def test_bsrgan_noise_on_gray_images_is_gaussian_of_the_drawn_level():
  x = jnp.full((64, 48, 48, 1), 0.5, jnp.float32)
  out, p = realworld._bsrgan_noise(jax.random.key(0), x, (2, 25))  # pylint: disable=protected-access
  level = np.asarray(p["level"])
  assert level.min() >= 2 and level.max() <= 25
  std = np.asarray(out - 0.5).reshape(64, -1).std(axis=1)
  np.testing.assert_allclose(std, level / 255, rtol=0.1)
