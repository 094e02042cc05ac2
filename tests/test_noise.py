"""jsr.ops.noise against the statistics its peers' noise must have, computed here in numpy.

BasicSR's Gaussian and Poisson noise (generate_gaussian_noise_pt, generate_poisson_noise_pt) and
KAIR's add_Gaussian_noise are random, so the checks are on moments and laws with fixed seeds:
per-sample std, gray planes shared by the channels, Poisson variance img / vals * scale^2 with vals
recounted here with np.unique, the Poisson counts' histogram against scipy.stats.poisson, and the
correlated BSRGAN noise's empirical covariance against the covariance of numpy's SVD factor of the
recorded Sigma. Each function is jitted once per test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jsr.ops import noise

jax.config.update("jax_disable_most_optimizations", True)  # Compile time dominates these tests.


def assert_binomial(count, n, p, sds=5.0):
  sd = np.sqrt(n * p * (1 - p))
  assert abs(count - n * p) <= sds * sd + 1, (count, n, p)


def np_tree(tree):
  return jax.tree.map(np.asarray, tree)


# ---------------------------------------------------------------------------------------------- #
# Gaussian
# ---------------------------------------------------------------------------------------------- #


def test_random_bits_are_uniform_and_independent():
  """The hash field the noises read: each 16-bit half uniform over 256 bins (chi-square), no
  correlation between horizontal neighbours, channels, the two halves, or two keys' fields;
  the same key gives the same field, and the lowest bit is a fair coin."""
  shape = (4, 128, 128, 3)
  bits = np.asarray(jax.jit(lambda k: noise.random_bits(k, shape))(jax.random.key(7)))
  again = np.asarray(noise.random_bits(jax.random.key(7), shape))
  other = np.asarray(noise.random_bits(jax.random.key(8), shape))
  np.testing.assert_array_equal(bits, again)
  n = bits.size
  hi, lo = (bits >> 16).astype(np.float64), (bits & 0xFFFF).astype(np.float64)
  for half in (hi, lo):
    counts = np.bincount((half.ravel() / 256).astype(int), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4
  u = (hi + 0.5) / 65536 - 0.5
  tol = 5 / np.sqrt(n)
  for a, b in ((u[:, :, 1:], u[:, :, :-1]), (u[..., 1:], u[..., :-1]), (u[:, 1:], u[:, :-1])):
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < tol
  assert abs(np.corrcoef(hi.ravel(), lo.ravel())[0, 1]) < tol
  assert abs(np.corrcoef(hi.ravel(), (other >> 16).ravel().astype(np.float64))[0, 1]) < tol
  assert_binomial((bits & 1).sum(), n, 0.5)


def test_gaussian_std_and_gray_planes():
  x = jnp.full((6, 64, 64, 3), 0.5, jnp.float32)
  sigma = jnp.asarray([0.01, 0.05, 0.1, 0.02, 0.0, 0.2])
  gray = jnp.asarray([False, True, False, True, False, True])
  out, p = np_tree(jax.jit(noise.gaussian)(jax.random.key(0), x, sigma, gray))
  n = out - 0.5
  for i in range(6):
    std = n[i].std()
    assert abs(std - sigma[i]) <= 0.04 * sigma[i] + 1e-7, (i, std)
    assert abs(n[i].mean()) <= 5 * float(sigma[i]) / np.sqrt(n[i].size / (1 + 2 * gray[i])) + 1e-7
    if gray[i]:
      # Equal noise; out - x differs from it by the rounding of the sum.
      np.testing.assert_allclose(n[i, ..., 1], n[i, ..., 0], atol=1e-7)
      np.testing.assert_allclose(n[i, ..., 2], n[i, ..., 0], atol=1e-7)
    elif sigma[i] > 0:
      corr = np.corrcoef(n[i].reshape(-1, 3).T)
      assert np.max(np.abs(corr - np.eye(3))) < 0.05
  # Gray planes differ between samples (BasicSR's torch version shares one across the batch).
  assert np.corrcoef(n[1, ..., 0].ravel(), n[3, ..., 0].ravel())[0, 1] < 0.05
  np.testing.assert_array_equal(p["gray"], gray)
  np.testing.assert_allclose(p["sigma"], sigma)


def test_random_gaussian_params_and_clip():
  x = jnp.full((1000, 8, 8, 3), 0.5, jnp.float32)
  fn = jax.jit(lambda r, x: noise.random_gaussian(r, x, (1, 30), 0.4, clip=True))
  out, p = np_tree(fn(jax.random.key(1), x))
  sigma, gray = p["sigma"], p["gray"]
  assert sigma.min() >= 1 / 255 and sigma.max() <= 30 / 255
  assert stats.kstest(sigma * 255, stats.uniform(1, 29).cdf).pvalue > 1e-4
  assert_binomial(gray.sum(), 1000, 0.4)
  np.testing.assert_allclose(out[gray][..., 2], out[gray][..., 0], atol=1e-7)
  assert out.min() >= 0 and out.max() <= 1
  # Without clip the noise is left as drawn.
  raw, _ = jax.jit(lambda r, x: noise.random_gaussian(r, x, (200, 255), 0.0))(jax.random.key(1), x)
  assert float(jnp.max(raw)) > 1.0


# ---------------------------------------------------------------------------------------------- #
# Poisson
# ---------------------------------------------------------------------------------------------- #


def np_vals(levels):
  return 2.0 ** np.ceil(np.log2(len(np.unique(levels))))


def test_poisson_variance_and_vals():
  rng = np.random.default_rng(0)
  b, h, w = 6, 96, 96
  # Per sample a set of 8-bit levels: all 256, a few, one (vals = 1), ...
  level_sets = [np.arange(256), np.array([30, 200, 255]), np.array([128]), np.arange(0, 256, 5),
                np.array([10, 90, 240, 17, 64]), np.arange(256)]
  x = np.stack([rng.choice(s, (h, w, 3)) / 255.0 for s in level_sets]).astype(np.float32)
  x += rng.uniform(-0.3, 0.3, x.shape).astype(np.float32) / 255  # Rounded away by the sampler.
  scale = np.array([1.0, 0.5, 2.0, 3.0, 1.5, 0.8], np.float32)
  gray = np.array([False, False, False, False, True, True])
  out, p = np_tree(jax.jit(noise.poisson)(jax.random.key(2), x, scale, gray))
  lv = np.clip(np.round(x * 255), 0, 255) / 255
  luma = np.clip(np.round((0.2989 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) * 255),
                 0, 255) / 255
  for i in range(b):
    base = luma[i][..., None] if gray[i] else lv[i]
    vals = np_vals(base)
    assert p["vals"][i] == vals, (i, p["vals"][i], vals)
    n = (out[i] - x[i]) / scale[i]
    # Poisson(img vals) / vals - img: counts are integers, mean 0, variance img / vals.
    counts = (n + base) * vals
    np.testing.assert_allclose(counts, np.round(counts), atol=2e-3 * vals)
    if gray[i]:
      np.testing.assert_allclose(n[..., 1], n[..., 0], atol=1e-6)
      np.testing.assert_allclose(n[..., 2], n[..., 0], atol=1e-6)
      n = n[..., :1]
    # E[(out - x)^2] = scale^2 E[img] / vals over the sample, and per level where it has pixels.
    e = n * scale[i]
    base = np.broadcast_to(base, e.shape)
    sq = e ** 2
    assert abs(sq.mean() - scale[i] ** 2 * base.mean() / vals) <= 6 * sq.std() / np.sqrt(sq.size)
    assert abs(e.mean()) <= 6 * e.std() / np.sqrt(e.size) + 1e-9
    for level in np.unique(base):
      sel = base == level
      if sel.sum() >= 2000:
        want = scale[i] ** 2 * level / vals
        assert abs(sq[sel].mean() - want) <= 6 * sq[sel].std() / np.sqrt(sel.sum()), (i, level)
  np.testing.assert_array_equal(p["gray"], gray)
  np.testing.assert_allclose(p["scale"], scale)


@pytest.mark.parametrize("level,n_levels", [(255, 256), (200, 256), (77, 16), (3, 2)])
def test_poisson_counts_follow_poisson_law(level, n_levels):
  # All values at `level` but n_levels - 1 others, one each: vals = n_levels.
  h = w = 128
  flat = np.full(h * w * 3, level / 255, np.float32)
  flat[: n_levels - 1] = np.setdiff1d(np.arange(256), [level])[: n_levels - 1] / 255
  x = flat.reshape(1, h, w, 3)
  out, p = np_tree(jax.jit(noise.poisson)(jax.random.key(level), x, 1.0, False))
  assert p["vals"][0] == n_levels
  counts = np.round(out[0] * n_levels).astype(int).ravel()[n_levels - 1:]
  lam = np.float32(level / 255) * n_levels
  hist = np.bincount(counts, minlength=counts.max() + 1) / counts.size
  pmf = stats.poisson.pmf(np.arange(hist.size), lam)
  tv = 0.5 * (np.abs(hist - pmf).sum() + (1 - pmf.sum()))
  # Total variation of an exact sampler's histogram over 48k draws is ~0.01 at lam = 256.
  assert tv < 0.03, tv
  assert abs(counts.mean() - lam) < 5 * np.sqrt(lam / counts.size)
  assert abs(counts.var() / lam - 1) < 6 * np.sqrt((1 / lam + 2) / counts.size)


def test_poisson_table_cdf_matches_scipy():
  cdf = noise._poisson_cdf_table().astype(np.float64).reshape(9, 256, 512)
  vals = 2.0 ** np.arange(9)
  level = (np.arange(256, dtype=np.float32) / np.float32(255)).astype(np.float64)
  lam = level[None] * vals[:, None]
  ref = stats.poisson.cdf(np.arange(512), lam[..., None])
  assert np.max(np.abs(cdf - ref)) < 1e-7


def test_poisson_counts_are_the_inverse_cdf_at_the_16_bit_uniform():
  """The guide-table inversion returns exactly #{n : CDF[n] <= u}, u = (k + 0.5) / 65536, the
  textbook inverse-CDF sample (np.searchsorted on scipy's CDF table in float32): every k for the
  rows of a near-zero, a mid and the largest rate at each vals, and 400k random (row, k) pairs."""
  cdf = stats.poisson.cdf(np.arange(512), (
      (np.arange(256, dtype=np.float32) / np.float32(255)).astype(np.float64)[None]
      * 2.0 ** np.arange(9)[:, None])[..., None]).reshape(-1, 512).astype(np.float32)
  u_of = lambda k: ((k.astype(np.float32) + np.float32(0.5)) / np.float32(65536)).astype(np.float32)
  every_k = np.arange(65536)
  rows_all = np.array([j * 256 + lv for j in (0, 3, 8) for lv in (1, 128, 255)])
  r = np.random.default_rng(0)
  rows = np.concatenate([np.repeat(rows_all, 65536), r.integers(0, 9 * 256, 400_000)])
  ks = np.concatenate([np.tile(every_k, rows_all.size), r.integers(0, 65536, 400_000)])
  want = np.array([np.searchsorted(cdf[row], u, side="right") for row, u in
                   zip(rows[-400_000:], u_of(ks[-400_000:]))])
  want = np.concatenate([np.concatenate([np.searchsorted(cdf[row], u_of(every_k), side="right")
                                         for row in rows_all]), want])
  got = np.asarray(jax.jit(lambda row, k: noise._poisson_counts(None, row, bits=k))(
      jnp.asarray(rows, jnp.int32), jnp.asarray(ks, jnp.uint32)))
  np.testing.assert_array_equal(got, want)
  assert want.max() > 290  # the far tail of lam = 256 was reached


def test_random_poisson_params():
  x = jnp.asarray(np.random.default_rng(3).random((800, 8, 8, 3)), jnp.float32)
  out, p = np_tree(jax.jit(lambda r, x: noise.random_poisson(r, x, (0.05, 3.0), 0.4))(
      jax.random.key(4), x))
  assert p["scale"].min() >= 0.05 and p["scale"].max() <= 3.0
  assert stats.kstest(p["scale"], stats.uniform(0.05, 2.95).cdf).pvalue > 1e-4
  assert_binomial(p["gray"].sum(), 800, 0.4)
  g = p["gray"]
  np.testing.assert_allclose(out[g][..., 1] - x[g][..., 1], out[g][..., 0] - x[g][..., 0],
                             atol=1e-6)


# ---------------------------------------------------------------------------------------------- #
# BSRGAN Gaussian
# ---------------------------------------------------------------------------------------------- #


def test_bsrgan_gaussian_modes_and_levels():
  x = jnp.full((1000, 4, 4, 3), 0.5, jnp.float32)
  out, p = np_tree(jax.jit(noise.bsrgan_gaussian)(jax.random.key(5), x))
  mode, level = p["mode"], p["level"]
  assert set(np.unique(level)) == set(range(2, 26))
  assert_binomial(np.sum(mode == noise.MODE_COLOR), 1000, 0.4)
  assert_binomial(np.sum(mode == noise.MODE_GRAY), 1000, 0.4)
  assert_binomial(np.sum(mode == noise.MODE_CORRELATED), 1000, 0.2)
  gray = mode == noise.MODE_GRAY
  np.testing.assert_allclose(out[gray][..., 1], out[gray][..., 0], atol=1e-7)
  cov = p["cov"]
  assert cov.shape == (1000, 3, 3)
  np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2), atol=1e-9)
  assert np.all(cov >= 0) and np.all(cov <= (25 / 255) ** 2 + 1e-9)


def test_bsrgan_gaussian_statistics():
  b, h, w = 24, 128, 128
  x = jnp.full((b, h, w, 3), 0.5, jnp.float32)
  out, p = np_tree(jax.jit(noise.bsrgan_gaussian)(jax.random.key(6), x))
  n = (out - 0.5).reshape(b, -1, 3)
  modes = set()
  for i in range(b):
    modes.add(int(p["mode"][i]))
    emp = np.cov(n[i].T)
    if p["mode"][i] == noise.MODE_CORRELATED:
      # numpy's multivariate_normal: x = z @ (sqrt(s)[:, None] * v), covariance v^T diag(s) v.
      _, s, v = np.linalg.svd(p["cov"][i].astype(np.float64))
      want = v.T @ np.diag(s) @ v
      l2 = (25 / 255) ** 2
    else:
      std = p["level"][i] / 255
      want = std ** 2 * (np.ones((3, 3)) if p["mode"][i] == noise.MODE_GRAY else np.eye(3))
      l2 = std ** 2
    np.testing.assert_allclose(emp, want, atol=6 * l2 * np.sqrt(2 / (h * w)))
  assert modes == {0, 1, 2}, modes
