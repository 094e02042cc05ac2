"""jsr.ops.kernels against numpy references written here from BasicSR's and KAIR's definitions.

The references follow basicsr/data/degradations.py (mesh_grid, sigma_matrix2, pdf2,
bivariate_generalized_Gaussian, bivariate_plateau, circular_lowpass_kernel with scipy's j1, np.pad)
and KAIR's utils_blindsr.py (anisotropic_Gaussian + gm_blur_kernel with scipy's multivariate_normal,
fspecial_gaussian), in float64; neither package is imported. The samplers are checked twice: each
drawn kernel against the reference built from its recorded parameters, and the recorded parameters
against the distributions the peers draw from (fixed seeds, tolerances of several binomial
standard deviations or a KS test).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jsr.ops import kernels

jax.config.update("jax_disable_most_optimizations", True)  # Small programs: compile time dominates.

KINDS6 = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
PROB6 = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]  # Real-ESRGAN's train_realesrgan_x4plus.yml

# ---------------------------------------------------------------------------------------------- #
# numpy references (float64)
# ---------------------------------------------------------------------------------------------- #


def ref_grid(k):
  ax = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
  xx, yy = np.meshgrid(ax, ax)  # x along columns, y along rows
  return np.stack([xx, yy], -1)


def ref_sigma(sx, sy, theta):
  d = np.diag([sx**2, sy**2])
  u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return u @ d @ u.T


def ref_quad(k, sx, sy, theta):
  grid = ref_grid(k)
  inv = np.linalg.inv(ref_sigma(sx, sy, theta))
  return np.sum(np.dot(grid, inv) * grid, 2)


def ref_pad(kern, to):
  p = (to - kern.shape[0]) // 2
  return np.pad(kern, ((p, p), (p, p)))


def ref_gaussian(k, sx, sy, theta):
  kern = np.exp(-0.5 * ref_quad(k, sx, sy, theta))
  return kern / kern.sum()


def ref_generalized(k, sx, sy, theta, beta):
  kern = np.exp(-0.5 * np.power(ref_quad(k, sx, sy, theta), beta))
  return kern / kern.sum()


def ref_plateau(k, sx, sy, theta, beta):
  kern = 1.0 / (np.power(ref_quad(k, sx, sy, theta), beta) + 1)
  return kern / kern.sum()


def ref_sinc(k, cutoff):
  c = (k - 1) / 2
  with np.errstate(divide="ignore", invalid="ignore"):
    kern = np.fromfunction(
        lambda x, y: cutoff * special.j1(cutoff * np.sqrt((x - c)**2 + (y - c)**2)) /
        (2 * np.pi * np.sqrt((x - c)**2 + (y - c)**2)), [k, k])
  kern[(k - 1) // 2, (k - 1) // 2] = cutoff**2 / (4 * np.pi)
  return kern / kern.sum()


def ref_kair_aniso(k, theta, l1, l2):
  v = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ [1.0, 0.0]
  vv = np.array([[v[0], v[1]], [v[1], -v[0]]])
  cov = vv @ np.diag([l1, l2]) @ np.linalg.inv(vv)
  center = k / 2.0 + 0.5
  kern = np.zeros((k, k))
  for y in range(k):
    for x in range(k):
      kern[y, x] = stats.multivariate_normal.pdf([x - center + 1, y - center + 1], mean=[0, 0],
                                                 cov=cov)
  return kern / kern.sum()


def ref_fspecial(k, sigma):
  siz = (k - 1.0) / 2.0
  x, y = np.meshgrid(np.arange(-siz, siz + 1), np.arange(-siz, siz + 1))
  h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
  h[h < np.finfo(float).eps * h.max()] = 0
  return h / h.sum()


def ref_mixed(kind, size, sx, sy, theta, beta, omega):
  name = kernels.KINDS[kind]
  if name == "sinc":
    return ref_sinc(size, omega)
  if name in ("iso", "aniso"):
    return ref_gaussian(size, sx, sy, theta)
  if name.startswith("generalized"):
    return ref_generalized(size, sx, sy, theta, beta)
  return ref_plateau(size, sx, sy, theta, beta)


def assert_binomial(count, n, p, sds=5.0):
  sd = math.sqrt(n * p * (1 - p))
  assert abs(count - n * p) <= sds * sd + 1, (count, n, p)


def assert_uniform(samples, lo, hi):
  samples = np.asarray(samples, np.float64)
  assert samples.min() >= lo - 1e-6 and samples.max() <= hi + 1e-6, (samples.min(), samples.max())
  assert stats.kstest(samples, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------- #
# Bessel J1 and the deterministic builders
# ---------------------------------------------------------------------------------------------- #


def test_bessel_j1_accuracy():
  x = np.linspace(0.0, 15 * np.pi, 200001)
  got = np.asarray(jax.jit(kernels.bessel_j1)(jnp.asarray(x, jnp.float32)), np.float64)
  ref = special.j1(np.asarray(x, np.float32).astype(np.float64))
  assert np.max(np.abs(got - ref)) < 5e-7
  np.testing.assert_allclose(np.asarray(kernels.bessel_j1(jnp.asarray([-2.0, -9.5]))),
                             special.j1([-2.0, -9.5]), atol=5e-7)


# (size, sigma_x, sigma_y, theta, beta): full 21 and padded sizes.
SHAPE_CASES = [(21, 2.0, 2.0, 0.0, 1.0), (21, 0.7, 3.1, 0.9, 0.6), (13, 4.5, 1.2, -2.3, 3.5),
               (7, 0.25, 2.8, 1.3, 1.5), (9, 3.0, 3.0, 0.0, 0.5), (15, 1.1, 0.6, 3.0, 7.9)]


@pytest.mark.parametrize("builder,ref", [
    ("gaussian", ref_gaussian), ("generalized", ref_generalized), ("plateau", ref_plateau)])
def test_gaussian_like_builders_match_basicsr(builder, ref):
  size, sx, sy, theta, beta = (np.array(v) for v in zip(*SHAPE_CASES))
  if builder == "gaussian":
    fn = lambda: kernels.bivariate_gaussian(21, sx, sy, theta, size=size)  # noqa: E731
    refs = [ref(*c[:4]) for c in SHAPE_CASES]
  else:
    build = (kernels.bivariate_generalized_gaussian if builder == "generalized" else
             kernels.bivariate_plateau)
    fn = lambda: build(21, sx, sy, theta, beta, size=size)  # noqa: E731
    refs = [ref(*c) for c in SHAPE_CASES]
  got = np.asarray(jax.jit(fn)())
  assert got.shape == (len(SHAPE_CASES), 21, 21)
  for g, r in zip(got, refs):
    np.testing.assert_allclose(g, ref_pad(r, 21), atol=2e-7, rtol=2e-5)


def test_unmasked_builder_is_the_plain_kernel():
  got = np.asarray(kernels.bivariate_gaussian(11, 1.5, 0.8, 0.4))
  np.testing.assert_allclose(got, ref_gaussian(11, 1.5, 0.8, 0.4), atol=2e-7, rtol=2e-5)


def test_circular_lowpass_matches_basicsr():
  cases = [(21, np.pi), (21, np.pi / 5), (7, np.pi / 3), (11, 2.0), (17, 0.8), (13, 3.0)]
  size, omega = (np.array(v) for v in zip(*cases))
  got = np.asarray(jax.jit(lambda: kernels.circular_lowpass(21, omega, size=size))())
  for g, (k, w) in zip(got, cases):
    np.testing.assert_allclose(g, ref_pad(ref_sinc(k, w), 21), atol=1e-6)


def test_kair_builders_match_kair():
  cases = [(25, 0.3, 5.0, 2.0), (7, 2.9, 0.1, 7.5), (15, 1.0, 3.3, 3.3), (21, 0.0, 1.7, 0.4)]
  size, theta, l1, l2 = (np.array(v) for v in zip(*cases))
  got = np.asarray(jax.jit(lambda: kernels.kair_anisotropic_gaussian(25, theta, l1, l2,
                                                                     size=size))())
  for g, (k, t, a, b) in zip(got, cases):
    np.testing.assert_allclose(g, ref_pad(ref_kair_aniso(k, t, a, b), 25), atol=2e-7, rtol=2e-5)
  sig = np.array([0.2, 1.0, 2.8, 0.05])
  got = np.asarray(jax.jit(lambda: kernels.fspecial_gaussian(25, sig, size=size))())
  for g, k, s in zip(got, size, sig):
    np.testing.assert_allclose(g, ref_pad(ref_fspecial(k, s), 25), atol=2e-7, rtol=2e-5)


def test_degenerate_bsrgan_kernels_are_finite():
  pulse = np.zeros((25, 25), np.float32)
  pulse[12, 12] = 1
  both = np.asarray(kernels.kair_anisotropic_gaussian(25, 0.7, 0.0, 0.0, size=9))
  np.testing.assert_array_equal(both, pulse)
  sig0 = np.asarray(kernels.fspecial_gaussian(25, 0.0, size=7))
  np.testing.assert_array_equal(sig0, pulse)
  # One eigenvalue 0 with theta = 0: the covariance is l2 along y only, a vertical 1-D Gaussian.
  line = np.asarray(kernels.kair_anisotropic_gaussian(25, 0.0, 0.0, 2.0, size=25))
  assert np.all(np.isfinite(line)) and abs(line.sum() - 1) < 1e-6
  col = np.exp(-0.5 * np.arange(-12, 13) ** 2 / 2.0)
  np.testing.assert_allclose(line[:, 12], col / col.sum(), atol=1e-7)
  assert np.all(np.delete(line, 12, axis=1) == 0)


# ---------------------------------------------------------------------------------------------- #
# Samplers: kernels agree with their params, params follow the peers' distributions
# ---------------------------------------------------------------------------------------------- #

N_DRAW = 4000


@pytest.fixture(scope="module")
def mixed():
  fn = jax.jit(lambda r: kernels.random_mixed_kernels(
      r, N_DRAW, kernel_list=KINDS6, kernel_prob=PROB6, sigma_range=(0.2, 3.0),
      betag_range=(0.5, 4.0), betap_range=(1.0, 2.0), sinc_prob=0.1))
  kern, params = fn(jax.random.key(0))
  return np.asarray(kern), {k: np.asarray(v) for k, v in params.items()}


def test_mixed_kernels_match_their_params(mixed):
  kern, p = mixed
  assert kern.shape == (N_DRAW, 21, 21)
  np.testing.assert_allclose(kern.sum((1, 2)), 1.0, atol=1e-5)
  # The first few of every kind.
  for kind in range(len(kernels.KINDS)):
    for i in np.flatnonzero(p["kind"] == kind)[:4]:
      ref = ref_mixed(kind, p["size"][i], p["sigma_x"][i], p["sigma_y"][i], p["theta"][i],
                      p["beta"][i], p["omega_c"][i])
      np.testing.assert_allclose(kern[i], ref_pad(ref, 21), atol=1e-6, rtol=2e-5)


def test_mixed_kernels_distribution(mixed):
  _, p = mixed
  size, kind = p["size"], p["kind"]
  assert set(np.unique(size)) == set(range(7, 22, 2))
  for s in range(7, 22, 2):
    assert_binomial(np.sum(size == s), N_DRAW, 1 / 8)
  sinc = kind == kernels.KIND_INDEX["sinc"]
  assert_binomial(sinc.sum(), N_DRAW, 0.1)
  for name, prob in zip(KINDS6, PROB6):
    assert_binomial(np.sum(kind == kernels.KIND_INDEX[name]), N_DRAW, 0.9 * prob)

  gauss = ~sinc
  assert_uniform(p["sigma_x"][gauss], 0.2, 3.0)
  aniso = np.isin(kind, [kernels.KIND_INDEX[n] for n in KINDS6 if n.endswith("aniso")])
  iso = gauss & ~aniso
  assert_uniform(p["sigma_y"][aniso], 0.2, 3.0)
  assert_uniform(p["theta"][aniso], -np.pi, np.pi)
  np.testing.assert_array_equal(p["sigma_y"][iso], p["sigma_x"][iso])
  np.testing.assert_array_equal(p["theta"][iso], 0.0)

  for prefix, lo, hi in (("generalized", 0.5, 4.0), ("plateau", 1.0, 2.0)):
    sel = np.isin(kind, [kernels.KIND_INDEX[prefix + s] for s in ("_iso", "_aniso")])
    beta = p["beta"][sel]
    assert beta.min() >= lo and beta.max() <= hi
    if lo < 1:  # Half below 1, uniform on each side.
      assert_binomial(np.sum(beta < 1), sel.sum(), 0.5)
      assert_uniform(beta[beta < 1], lo, 1.0)
    assert_uniform(beta[beta > 1], 1.0, hi)
  plain = np.isin(kind, [kernels.KIND_INDEX["iso"], kernels.KIND_INDEX["aniso"]])
  np.testing.assert_array_equal(p["beta"][plain | sinc], 0.0)

  assert_uniform(p["omega_c"][sinc & (size < 13)], np.pi / 3, np.pi)
  assert_uniform(p["omega_c"][sinc & (size >= 13)], np.pi / 5, np.pi)
  np.testing.assert_array_equal(p["omega_c"][~sinc], 0.0)


def test_final_sinc_kernels():
  kern, p = jax.jit(lambda r: kernels.random_sinc_kernels(r, 2000, 0.8))(jax.random.key(1))
  kern, p = np.asarray(kern), {k: np.asarray(v) for k, v in p.items()}
  on = p["is_sinc"]
  assert_binomial(on.sum(), 2000, 0.8)
  assert set(np.unique(p["size"][on])) == set(range(7, 22, 2))
  assert_uniform(p["omega_c"][on], np.pi / 3, np.pi)
  pulse = np.zeros((21, 21), np.float32)
  pulse[10, 10] = 1
  np.testing.assert_array_equal(kern[~on], np.broadcast_to(pulse, kern[~on].shape))
  for i in np.flatnonzero(on)[:6]:
    np.testing.assert_allclose(kern[i], ref_pad(ref_sinc(p["size"][i], p["omega_c"][i]), 21),
                               atol=1e-6)


def test_bsrgan_blur_kernels_traced_scale():
  sf = jnp.where(jnp.arange(N_DRAW) % 2 == 0, 2, 4)
  kern, p = jax.jit(lambda r, s: kernels.bsrgan_blur_kernels(r, N_DRAW, s))(jax.random.key(2), sf)
  kern, p = np.asarray(kern), {k: np.asarray(v) for k, v in p.items()}
  assert kern.shape == (N_DRAW, 25, 25) and np.all(np.isfinite(kern))
  np.testing.assert_allclose(kern.sum((1, 2)), 1.0, atol=1e-5)
  an = p["anisotropic"]
  assert_binomial(an.sum(), N_DRAW, 0.5)
  assert set(np.unique(p["size"])) == set(range(7, 26, 2))
  np.testing.assert_array_equal(p["sf"], np.asarray(sf, np.float32))
  for s in (2, 4):
    at = p["sf"] == s
    assert_uniform(p["l1"][an & at] / (4 + s), 0, 1)
    assert_uniform(p["l2"][an & at] / (4 + s), 0, 1)
    assert_uniform(p["sigma"][~an & at] / (2 + 0.2 * s), 0, 1)
  assert_uniform(p["theta"][an], 0, np.pi)
  for i in np.flatnonzero(an)[:5]:
    ref = ref_kair_aniso(p["size"][i], p["theta"][i], p["l1"][i], p["l2"][i])
    np.testing.assert_allclose(kern[i], ref_pad(ref, 25), atol=2e-7, rtol=1e-4)
  for i in np.flatnonzero(~an)[:5]:
    np.testing.assert_allclose(kern[i], ref_pad(ref_fspecial(p["size"][i], p["sigma"][i]), 25),
                               atol=2e-7, rtol=1e-4)


def test_static_scale_and_errors():
  kern, p = jax.jit(lambda r: kernels.bsrgan_blur_kernels(r, 4, 4))(jax.random.key(3))
  assert kern.shape == (4, 25, 25)
  np.testing.assert_array_equal(np.asarray(p["sf"]), 4.0)
  with pytest.raises(ValueError, match="unknown kernel kinds"):
    kernels.random_mixed_kernels(jax.random.key(0), 2, kernel_list=["box"], kernel_prob=[1.0],
                                 sigma_range=(0.2, 3), betag_range=(0.5, 4), betap_range=(1, 2),
                                 sinc_prob=0.0)
  with pytest.raises(ValueError, match="odd"):
    kernels.random_sinc_kernels(jax.random.key(0), 2, 0.5, size_range=(6, 21))
