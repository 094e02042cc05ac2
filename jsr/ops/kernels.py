"""Per-sample random blur kernels in jnp: Real-ESRGAN's mixed kernels and final sinc, BSRGAN's blur.

The peers draw one kernel per image on the host (BasicSR's `RealESRGANDataset.__getitem__` with
`basicsr/data/degradations.py`, KAIR's `utils_blindsr.add_blur`). Here a whole batch is drawn inside
the jitted train step from one PRNG key, so every shape must be static while the kernel size, kind
and shape parameters are traced per sample. Two ideas make that work:

* One formula per family, with traced parameters. Every Gaussian-like kind is a function of the
  quadratic form Q = p^T Sigma^-1 p on the integer grid p = (x, y) (x along columns, y along rows,
  BasicSR's `mesh_grid`): Gaussian exp(-Q/2), generalised Gaussian exp(-Q^beta/2), plateau
  1/(Q^beta + 1). The isotropic kinds are the same formulas with sigma_y = sigma_x and theta = 0.
  All kinds are evaluated for all samples (a few (B, 21, 21) arrays: far cheaper than the
  convolution that uses them) and the sample's kind picks one with `where`.
* Sizes by masking. A sample of size k_b lives in the fixed (max_size, max_size) array: its kernel
  is evaluated on the full grid, set to zero where |x| or |y| > k_b // 2, and then normalised. The
  k_b grid is the central block of the full grid (same integer offsets from the centre), so this is
  exactly BasicSR's "build on the k_b grid, normalise, np.pad to 21".

The builders (`bivariate_gaussian`, ..., `circular_lowpass`) take parameters of any batch shape S
and return S + (k, k); the samplers return (kernels, params) where params is a dict of (B,) arrays
(the drawn values, so a test set can record them). Parameters that do not apply to a sample's kind
are recorded as 0 (e.g. `omega_c` of a Gaussian, `beta` of a plain Gaussian).

J1 for the sinc kernel: `jax.scipy.special.bessel_jn` is not usable here (in float32 over
[0, 15 pi] it returns NaN or errors of 0.16 with its default n_iter=50). `bessel_j1` below is
Numerical Recipes' `bessj1` (Hart's rational approximation for |x| < 8, Hankel asymptotic form
beyond), with the |x| < 8 numerator and denominator evaluated as products over their roots: Horner
in float32 cancels to 2e-6 near x = 8, the product form does not. Measured against scipy.special.j1
on [0, 15 pi]: max abs error 2.2e-7 for |x| < 8, 4e-7 beyond (float32 argument reduction of cos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The kind indices recorded in params["kind"]; "sinc" is the circular low-pass kernel.
KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso",
         "sinc")
KIND_INDEX = {name: i for i, name in enumerate(KINDS)}

# Real-ESRGAN's kernel sizes (RealESRGANDataset.kernel_range) and the fixed array they live in.
MAX_SIZE = 21
# BSRGAN's add_blur draws ksize = 2 randint(2, 11) + 3, i.e. 7..25.
BSRGAN_MAX_SIZE = 25

# Eigenvalue floor of BSRGAN's anisotropic covariance: l1, l2 = wd2 * U[0, 1) can be ~0, where
# Sigma^-1 (and KAIR's scipy pdf, which raises for a singular covariance) break down. With the
# floor, a vanishing eigenvalue gives the limit kernel (a line through the centre, or a pulse when
# both vanish) and never NaN: the centre always has Q = 0, so the kernel sum is >= its value 1.
_MIN_EIGENVALUE = 1e-6
# MATLAB fspecial('gaussian') with sigma -> 0 is 0/0 at the centre; below this it is the pulse.
_MIN_SIGMA = 1e-6


# ---------------------------------------------------------------------------------------------- #
# Bessel J1
# ---------------------------------------------------------------------------------------------- #

# Numerical Recipes bessj1, |x| < 8: J1(x) = x P(x^2) / R(x^2) (coefficients highest power first).
_J1_NUM = (-30.16036606, 15704.48260, -2972611.439, 242396853.1, -7895059235.0, 72362614232.0)
_J1_DEN = (1.0, 376.9991397, 99447.43394, 18583304.74, 2300535178.0, 144725228442.0)


def _root_factors(coefs):
  """(lead, real roots, (b, c) of each complex pair's y^2 + b y + c), computed once in float64."""
  roots = np.roots(coefs)
  real = tuple(float(r.real) for r in roots if abs(r.imag) < 1e-9 * abs(r))
  pairs = tuple((float(-2 * r.real), float(abs(r) ** 2))
                for r in roots if r.imag >= 1e-9 * abs(r))
  return float(coefs[0]), real, pairs


_J1_NUM_FACTORS = _root_factors(_J1_NUM)
_J1_DEN_FACTORS = _root_factors(_J1_DEN)


def _eval_factored(factors, y):
  # A product of (y - r) and of positive quadratics: each factor is exact to a few ulp even next
  # to a root, where Horner's sum of 1e11-sized terms loses everything but 1e-6.
  lead, real, pairs = factors
  out = jnp.full_like(y, lead)
  for r in real:
    out = out * (y - r)
  for b, c in pairs:
    out = out * ((y + b) * y + c)
  return out


def bessel_j1(x):
  """Bessel function of the first kind, order 1, elementwise in float32 (abs error < 5e-7)."""
  x = jnp.asarray(x, jnp.float32)
  ax = jnp.abs(x)
  y = x * x
  small = x * _eval_factored(_J1_NUM_FACTORS, y) / _eval_factored(_J1_DEN_FACTORS, y)
  # Hankel's asymptotic form with NR's fitted P, Q in z = 8 / x; ax clamped so the unused branch
  # of the `where` stays finite.
  axl = jnp.maximum(ax, 8.0)
  z = 8.0 / axl
  z2 = z * z
  phase = axl - 2.356194491
  p = 1.0 + z2 * (0.183105e-2 + z2 * (-0.3516396496e-4 + z2 * (0.2457520174e-5
                                                                + z2 * (-0.240337019e-6))))
  q = 0.04687499995 + z2 * (-0.2002690873e-3 + z2 * (0.8449199096e-5 + z2 * (
      -0.88228987e-6 + z2 * 0.105787412e-6)))
  large = jnp.sqrt(0.636619772 / axl) * (jnp.cos(phase) * p - z * jnp.sin(phase) * q)
  return jnp.where(ax < 8.0, small, jnp.sign(x) * large)


# ---------------------------------------------------------------------------------------------- #
# Deterministic builders
# ---------------------------------------------------------------------------------------------- #


def _grid(k: int):
  """(x, y) on the k x k grid: x along columns, y along rows, 0 in the middle (mesh_grid)."""
  if k < 1 or k % 2 == 0:
    raise ValueError(f"kernel grid size must be odd and >= 1, got {k}")
  ax = jnp.arange(-(k // 2), k // 2 + 1, dtype=jnp.float32)
  return ax[None, :], ax[:, None]


def _param(v):
  return jnp.asarray(v, jnp.float32)[..., None, None]


def _finish(kernel, k: int, size):
  """Zero outside the per-sample size (if given), then normalise to sum 1."""
  if size is not None:
    x, y = _grid(k)
    half = (jnp.asarray(size, jnp.int32) // 2).astype(jnp.float32)[..., None, None]
    kernel = jnp.where((jnp.abs(x) <= half) & (jnp.abs(y) <= half), kernel, 0.0)
  return kernel / jnp.sum(kernel, axis=(-2, -1), keepdims=True)


def _quadratic_form(k: int, sigma_x, sigma_y, theta):
  """p^T Sigma^-1 p with Sigma = R diag(sx^2, sy^2) R^T, R = [[cos, -sin], [sin, cos]].

  Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T, so Q = (R^T p)_0^2 / sx^2 + (R^T p)_1^2 / sy^2: no 2x2
  inverse, and Q is exactly 0 at the centre.
  """
  x, y = _grid(k)
  sx, sy, t = _param(sigma_x), _param(sigma_y), _param(theta)
  c, s = jnp.cos(t), jnp.sin(t)
  u = c * x + s * y
  v = -s * x + c * y
  return (u / sx) ** 2 + (v / sy) ** 2


def bivariate_gaussian(k: int, sigma_x, sigma_y, theta, *, size=None):
  """BasicSR `bivariate_Gaussian`: exp(-Q/2), normalised; S + (k, k) for parameters of shape S.

  Isotropic is sigma_y = sigma_x, theta = 0. `size` (shape S, odd ints <= k) keeps only the central
  size x size block: BasicSR's kernel of that size zero-padded to k.
  """
  return _finish(jnp.exp(-0.5 * _quadratic_form(k, sigma_x, sigma_y, theta)), k, size)


def bivariate_generalized_gaussian(k: int, sigma_x, sigma_y, theta, beta, *, size=None):
  """BasicSR `bivariate_generalized_Gaussian`: exp(-Q^beta / 2), normalised."""
  q = _quadratic_form(k, sigma_x, sigma_y, theta)
  return _finish(jnp.exp(-0.5 * jnp.power(q, _param(beta))), k, size)


def bivariate_plateau(k: int, sigma_x, sigma_y, theta, beta, *, size=None):
  """BasicSR `bivariate_plateau`: 1 / (Q^beta + 1), normalised."""
  q = _quadratic_form(k, sigma_x, sigma_y, theta)
  return _finish(1.0 / (jnp.power(q, _param(beta)) + 1.0), k, size)


def circular_lowpass(k: int, omega_c, *, size=None):
  """BasicSR `circular_lowpass_kernel`: the 2-D sinc omega J1(omega r) / (2 pi r), normalised.

  The centre takes the limit omega^2 / (4 pi), as BasicSR sets it.
  """
  x, y = _grid(k)
  r = jnp.sqrt(x * x + y * y)
  w = _param(omega_c)
  safe_r = jnp.where(r > 0, r, 1.0)
  kernel = jnp.where(r > 0, w * bessel_j1(w * safe_r) / (2 * math.pi * safe_r),
                     w * w / (4 * math.pi))
  return _finish(kernel, k, size)


def pulse(k: int, batch: int):
  """(batch, k, k) identity kernels: 1 at the centre (Real-ESRGAN's `pulse_tensor`)."""
  x, y = _grid(k)
  return jnp.broadcast_to(((x == 0) & (y == 0)).astype(jnp.float32), (batch, k, k))


def kair_anisotropic_gaussian(k: int, theta, l1, l2, *, size=None):
  """KAIR `anisotropic_Gaussian(ksize, theta, l1, l2)` (via `gm_blur_kernel`), normalised.

  KAIR: v = R(theta) [1, 0], V = [[v0, v1], [v1, -v0]], Sigma = V diag(l1, l2) V^-1. V is a
  symmetric reflection (V^-1 = V), so Sigma's eigenvectors are (cos, sin) for l1 and (sin, -cos)
  for l2, and Q = (cos x + sin y)^2 / l1 + (sin x - cos y)^2 / l2. gm_blur_kernel's grid
  (y - size/2 + 0.5 for odd size) is the centred integer grid, x along columns. Eigenvalues are
  floored at 1e-6 (see _MIN_EIGENVALUE): a degenerate covariance gives a line or a pulse, not NaN.
  """
  x, y = _grid(k)
  t = _param(theta)
  c, s = jnp.cos(t), jnp.sin(t)
  a = jnp.maximum(_param(l1), _MIN_EIGENVALUE)
  b = jnp.maximum(_param(l2), _MIN_EIGENVALUE)
  q = (c * x + s * y) ** 2 / a + (s * x - c * y) ** 2 / b
  return _finish(jnp.exp(-0.5 * q), k, size)


def fspecial_gaussian(k: int, sigma, *, size=None):
  """MATLAB `fspecial('gaussian', size, sigma)` as KAIR writes it, normalised; sigma 0: a pulse.

  Values below eps * max (float64 eps, max = 1 at the centre) are set to zero, as fspecial does.
  """
  x, y = _grid(k)
  sd = jnp.maximum(_param(sigma), _MIN_SIGMA)
  h = jnp.exp(-(x * x + y * y) / (2 * sd * sd))
  h = jnp.where(h < np.finfo(np.float64).eps, 0.0, h)
  return _finish(h, k, size)


# ---------------------------------------------------------------------------------------------- #
# Random samplers
# ---------------------------------------------------------------------------------------------- #


def _odd_sizes(rng, batch: int, size_range, max_size: int):
  """(B,) int32 uniform over the odd sizes in [lo, hi] (BasicSR: random.choice(kernel_range))."""
  lo, hi = size_range
  if lo % 2 == 0 or hi % 2 == 0 or not 1 <= lo <= hi <= max_size:
    raise ValueError(f"size_range must be odd sizes within 1..{max_size}, got {size_range}")
  return 2 * jax.random.randint(rng, (batch,), lo // 2, hi // 2 + 1) + 1


def _uniform(rng, batch: int, lo, hi):
  return jax.random.uniform(rng, (batch,), jnp.float32, lo, hi)


def random_mixed_kernels(rng, batch: int, *, kernel_list: Sequence[str],
                         kernel_prob: Sequence[float], sigma_range, betag_range, betap_range,
                         sinc_prob: float, size_range=(7, 21), max_size: int = MAX_SIZE,
                         rotation_range=(-math.pi, math.pi)):
  """Real-ESRGAN's first/second-degradation kernels: ((B, max_size, max_size), params).

  The sampling of RealESRGANDataset.__getitem__ with BasicSR's random_mixed_kernels and
  random_bivariate_*, per sample: size uniform over the odd sizes in size_range; with probability
  sinc_prob a sinc with omega_c ~ U[pi/3, pi] (size < 13) or U[pi/5, pi]; otherwise a kind drawn
  from kernel_list with weights kernel_prob, sigma_x (and for the aniso kinds sigma_y) ~
  U[sigma_range], theta ~ U[rotation_range] for the aniso kinds (0 otherwise), and for the
  generalised / plateau kinds beta ~ U[lo, 1] or U[1, hi] with probability 1/2 each (lo, hi from
  betag_range / betap_range). BasicSR's optional multiplicative kernel noise (off in its configs)
  is left out.

  params: kind (int32 index into KINDS), size (int32), sigma_x, sigma_y, theta, beta, omega_c;
  values that do not apply to a sample's kind are 0.
  """
  if len(kernel_list) != len(kernel_prob) or not kernel_list:
    raise ValueError(f"kernel_list {kernel_list} and kernel_prob {kernel_prob} must match")
  unknown = [n for n in kernel_list if n not in KIND_INDEX or n == "sinc"]
  if unknown:
    raise ValueError(f"unknown kernel kinds {unknown}; known: {KINDS[:-1]}")
  keys = jax.random.split(rng, 9)
  size = _odd_sizes(keys[0], batch, size_range, max_size)

  is_sinc = jax.random.uniform(keys[1], (batch,)) < sinc_prob
  omega_lo = jnp.where(size < 13, math.pi / 3, math.pi / 5)
  omega_c = omega_lo + (math.pi - omega_lo) * jax.random.uniform(keys[2], (batch,))

  # random.choices normalises the weights; so does categorical on their logs.
  probs = np.asarray(kernel_prob, np.float64)
  choice = jax.random.categorical(keys[3], jnp.log(jnp.asarray(probs / probs.sum(), jnp.float32)),
                                  shape=(batch,))
  kind = jnp.asarray([KIND_INDEX[n] for n in kernel_list], jnp.int32)[choice]
  aniso = (kind == KIND_INDEX["aniso"]) | (kind == KIND_INDEX["generalized_aniso"]) | (
      kind == KIND_INDEX["plateau_aniso"])
  generalized = (kind == KIND_INDEX["generalized_iso"]) | (kind == KIND_INDEX["generalized_aniso"])
  plateau = (kind == KIND_INDEX["plateau_iso"]) | (kind == KIND_INDEX["plateau_aniso"])

  sigma_x = _uniform(keys[4], batch, *sigma_range)
  sigma_y = jnp.where(aniso, _uniform(keys[5], batch, *sigma_range), sigma_x)
  theta = jnp.where(aniso, _uniform(keys[6], batch, *rotation_range), 0.0)
  # BasicSR assumes lo < 1 < hi: below or above 1 with probability 1/2 each.
  lo = jnp.where(plateau, betap_range[0], betag_range[0])
  hi = jnp.where(plateau, betap_range[1], betag_range[1])
  u = jax.random.uniform(keys[8], (batch,))
  beta = jnp.where(jax.random.uniform(keys[7], (batch,)) < 0.5, lo + (1.0 - lo) * u,
                   1.0 + (hi - 1.0) * u)
  beta = jnp.where(generalized | plateau, beta, 1.0)

  q = _quadratic_form(max_size, sigma_x, sigma_y, theta)
  qb = jnp.power(q, beta[:, None, None])
  sel = lambda m: m[:, None, None]  # noqa: E731 - a (B,) mask against (B, k, k) kernels.
  gauss = jnp.where(sel(generalized), jnp.exp(-0.5 * qb), jnp.exp(-0.5 * q))
  kern = jnp.where(sel(plateau), 1.0 / (qb + 1.0), gauss)
  kern = _finish(kern, max_size, size)
  kern = jnp.where(sel(is_sinc), circular_lowpass(max_size, omega_c, size=size), kern)

  gaussian_like = ~is_sinc
  params = dict(
      kind=jnp.where(is_sinc, KIND_INDEX["sinc"], kind).astype(jnp.int32),
      size=size.astype(jnp.int32),
      sigma_x=jnp.where(gaussian_like, sigma_x, 0.0),
      sigma_y=jnp.where(gaussian_like, sigma_y, 0.0),
      theta=jnp.where(gaussian_like, theta, 0.0),
      beta=jnp.where(gaussian_like & (generalized | plateau), beta, 0.0),
      omega_c=jnp.where(is_sinc, omega_c, 0.0),
  )
  return kern, params


def random_sinc_kernels(rng, batch: int, prob: float, size_range=(7, 21),
                        max_size: int = MAX_SIZE):
  """Real-ESRGAN's final sinc: with probability prob a sinc (omega_c ~ U[pi/3, pi], odd size in
  size_range, zero-padded to max_size), else the pulse (no blur). ((B, max_size, max_size), params).

  params: is_sinc (bool), size (int32; 1 for the pulse), omega_c (0 for the pulse).
  """
  k_on, k_size, k_omega = jax.random.split(rng, 3)
  is_sinc = jax.random.uniform(k_on, (batch,)) < prob
  size = _odd_sizes(k_size, batch, size_range, max_size)
  omega_c = _uniform(k_omega, batch, math.pi / 3, math.pi)
  kern = jnp.where(is_sinc[:, None, None], circular_lowpass(max_size, omega_c, size=size),
                   pulse(max_size, batch))
  params = dict(is_sinc=is_sinc, size=jnp.where(is_sinc, size, 1).astype(jnp.int32),
                omega_c=jnp.where(is_sinc, omega_c, 0.0))
  return kern, params


def bsrgan_blur_kernels(rng, batch: int, sf, max_size: int = BSRGAN_MAX_SIZE):
  """BSRGAN's `add_blur(img, sf)` kernels: ((B, max_size, max_size), params).

  wd2 = 4 + sf, wd = 2 + 0.2 sf. With probability 1/2 KAIR's anisotropic Gaussian (size 2
  randint(2, 11) + 3, theta ~ U[0, pi), l1, l2 ~ wd2 U[0, 1)), else fspecial('gaussian', size,
  wd U[0, 1)). `sf` is a Python number or a traced (B,) array (BSRGAN's samples that already took
  the first x2 downscale continue with sf = 2). Sizes 7..25 are centred in the max_size array.

  params: anisotropic (bool), size (int32), theta, l1, l2 (0 for isotropic samples), sigma (0 for
  anisotropic samples), sf (float32).
  """
  if max_size < 25:
    raise ValueError(f"bsrgan_blur_kernels: max_size must be >= 25, got {max_size}")
  sf = jnp.broadcast_to(jnp.asarray(sf, jnp.float32), (batch,))
  wd2 = 4.0 + sf
  wd = 2.0 + 0.2 * sf
  keys = jax.random.split(rng, 6)
  aniso = jax.random.uniform(keys[0], (batch,)) < 0.5
  size = 2 * jax.random.randint(keys[1], (batch,), 2, 12) + 3
  theta = math.pi * jax.random.uniform(keys[2], (batch,))
  l1 = wd2 * jax.random.uniform(keys[3], (batch,))
  l2 = wd2 * jax.random.uniform(keys[4], (batch,))
  sigma = wd * jax.random.uniform(keys[5], (batch,))
  kern = jnp.where(aniso[:, None, None],
                   kair_anisotropic_gaussian(max_size, theta, l1, l2, size=size),
                   fspecial_gaussian(max_size, sigma, size=size))
  params = dict(anisotropic=aniso, size=size.astype(jnp.int32),
                theta=jnp.where(aniso, theta, 0.0), l1=jnp.where(aniso, l1, 0.0),
                l2=jnp.where(aniso, l2, 0.0), sigma=jnp.where(aniso, 0.0, sigma), sf=sf)
  return kern, params
