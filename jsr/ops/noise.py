"""Per-sample random noise in jnp for the Real-ESRGAN and BSRGAN pipelines.

Images are (B, H, W, C) float32 on the [0, 1] scale; every function takes a PRNG key and per-sample
parameters (or their ranges), and returns (noisy image, params) with params a dict of per-sample
arrays, so a test set can record what was drawn. Nothing is clipped unless `clip=True`: the
pipelines clip (and round) where their peers do.

Peers: BasicSR's `generate_gaussian_noise_pt` / `generate_poisson_noise_pt` (Real-ESRGAN) and
KAIR's `utils_blindsr.add_Gaussian_noise` (BSRGAN). Three choices differ from a literal port:

* Gray noise is one plane per sample shared by the channels. BasicSR's torch version draws one
  (H, W) plane for the whole batch and scales it per sample (every gray sample gets the same
  pattern); here each sample has its own. A single draw of shape (B, H, W, C) serves both kinds:
  gray samples use its channel 0, which is an independent standard-normal plane.
* Poisson sampling by inverse CDF from a table, not `jax.random.poisson`. BasicSR's rate is
  level / 255 * vals with level = round(255 img) in 0..255 and vals a power of two <= 256 (the
  count of distinct 8-bit levels rounded up), so there are only 9 x 256 distinct rates, all <= 256.
  Their (9 x 256, 512) CDF table is built once on the host in float64 and each pixel inverts it
  at one 16-bit uniform u: exact up to float32's rounding of the CDF (< 6e-8) and the 2^-16 grain
  of u. The inversion is a guide table, not a binary search: u's 65536 values fall in 256 buckets
  of equal width in normal-quantile space, and in every (rate, bucket) cell the count takes at
  most two adjacent values (checked when the tables are built), so a pixel reads its bucket, the
  cell's lower count `lo` and the CDF at `lo`, and returns lo + [CDF(lo) <= u]: three gathers
  instead of nine chained ones (on a 2-core CPU the nine were over half of the Real-ESRGAN
  pipeline's time). `jax.random.poisson` (rejection loops over the whole
  array) took 200-320 ms for a (16, 64, 64, 3) batch on 2 busy CPU cores, this 7-16 ms. The
  normal approximation N(lam, lam) was no way out: lam <= 256 here, where the Poisson law is
  still visibly skewed (skewness lam^-1/2 >= 0.06).
* BSRGAN's correlated noise is drawn as numpy's `multivariate_normal` does: z @ (sqrt(s)[:, None]
  * v) with (u, s, v) = svd(Sigma). Sigma = |L^2 U^T D U| (elementwise abs) need not be PSD; this
  factor still gives a defined noise, of covariance v^T diag(s) v.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special as scipy_special

# torchvision's rgb_to_grayscale (BasicSR's gray Poisson noise): ITU-R 601-2 luma.
_LUMA = (0.2989, 0.587, 0.114)

# Poisson table: vals = 2^j, j = 0..8 (at most 256 distinct 8-bit levels), rates <= 256, and
# P(X >= 512 | lam = 256) ~ 1e-40, far below float32's CDF resolution.
_POISSON_LOG2_VALS = 9
_POISSON_LEVELS = 256
_POISSON_SUPPORT = 512
# Guide buckets of the 16-bit uniform: equal width in z = ndtri(u) over [-_GUIDE_Z, _GUIDE_Z].
_GUIDE_BUCKETS = 256
_GUIDE_Z = 4.4


def _per_sample(v, batch: int, dtype=jnp.float32):
  return jnp.broadcast_to(jnp.asarray(v, dtype), (batch,))


def _bcast(v):
  return v[:, None, None, None]


def _finish(out, clip: bool):
  return jnp.clip(out, 0.0, 1.0) if clip else out


# ---------------------------------------------------------------------------------------------- #
# Gaussian noise (Real-ESRGAN)
# ---------------------------------------------------------------------------------------------- #


# Random fields cost most of the noise ops on a CPU: XLA's generators (threefry, and the
# RngBitGenerator behind "rbg" keys) draw ~30-50M 32-bit words/s there, ~7 ms per 256 x 256 x 3
# image, more than everything else the noise does. So the noises read one 32-bit field drawn by a
# counter-based hash (`random_bits`, ~4G words/s on the same CPU), 16 bits each: Gaussian from the
# high half through a 65536-entry table of normal quantiles, Poisson's uniform from the low half,
# so a pipeline that draws both (Real-ESRGAN computes both and keeps one per sample) pays for one
# field. 16 bits resolve the normal to 1/65536 in probability (tails cut at 4.3 sigma) -- far
# below what 8-bit images show.


@functools.lru_cache(maxsize=None)
def _normal_table() -> np.ndarray:
  """The normal quantiles at the centres of 65536 equal-probability bins."""
  return scipy_special.ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def _mix32(x):
  """Wellons' `lowbias32` integer hash (hash-prospector; avalanche bias ~0.17%): a bijection of
  uint32 built from xor-shifts and odd multiplications."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def random_bits(rng, shape) -> jax.Array:
  """The uint32 field the noises read (`bits=`): one draw shared by Gaussian and Poisson.

  Counter-based, like JAX's threefry: two 32-bit words (s0, s1) are drawn from `rng` with
  jax.random, and element i (row-major) is mix(mix(i * 0x9E3779B9 + s0) ^ s1). The same key gives
  the same field on every backend; distinct elements of a field are distinct words (the map from
  i is a bijection). Not a cryptographic generator, and not meant to be: tests/test_noise.py
  checks its uniformity and the independence of neighbouring pixels, channels and keys.
  """
  s = jax.random.bits(rng, (2,), jnp.uint32)
  i = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  return _mix32(_mix32(i * jnp.uint32(0x9E3779B9) + s[0]) ^ s[1])


def _standard_normal(rng, shape, bits=None):
  bits = random_bits(rng, shape) if bits is None else bits
  return jnp.asarray(_normal_table())[(bits >> 16).astype(jnp.int32)]


def gaussian(rng, x, sigma, gray, *, clip: bool = False, bits=None):
  """x + N(0, sigma^2) per sample; gray samples get one noise plane shared by the channels.

  sigma: (B,) on the [0, 1] scale (BasicSR's sigma / 255); gray: (B,) bool; bits: a
  random_bits(x.shape) field to read instead of drawing one (see above).
  params: sigma, gray.
  """
  b = x.shape[0]
  sigma = _per_sample(sigma, b)
  gray = _per_sample(gray, b, jnp.bool_)
  z = _standard_normal(rng, x.shape, bits).astype(x.dtype)
  z = jnp.where(_bcast(gray), z[..., :1], z)
  return _finish(x + z * _bcast(sigma).astype(x.dtype), clip), dict(sigma=sigma, gray=gray)


def random_gaussian(rng, x, sigma_range, gray_prob, *, clip: bool = False, bits=None):
  """BasicSR `random_add_gaussian_noise_pt`: sigma ~ U[sigma_range] / 255, gray w.p. gray_prob.

  sigma_range is in 0..255 units, as in Real-ESRGAN's options (`noise_range: [1, 30]`); the
  recorded params["sigma"] is on the [0, 1] scale.
  """
  k_sigma, k_gray, k_noise = jax.random.split(rng, 3)
  b = x.shape[0]
  sigma = jax.random.uniform(k_sigma, (b,), jnp.float32, sigma_range[0], sigma_range[1]) / 255.0
  gray = jax.random.uniform(k_gray, (b,)) < gray_prob
  return gaussian(k_noise, x, sigma, gray, clip=clip, bits=bits)


# ---------------------------------------------------------------------------------------------- #
# Poisson noise (Real-ESRGAN)
# ---------------------------------------------------------------------------------------------- #


def _levels(img):
  """round(clip(img, 0, 1) * 255) as int32: BasicSR's "round and clip for counting vals"."""
  return jnp.clip(jnp.round(img * 255.0), 0, 255).astype(jnp.int32)


def _log2_vals(levels):
  """(B,) ceil(log2(#distinct levels per sample)), exactly: vals = 2^this.

  A presence histogram over the 256 levels counts the distinct values exactly (a scatter, cheaper
  than a sort). ceil(log2(n)) is counted as #{j >= 0 : 2^j < n}, with no float log2 that could
  land a hair above an integer.
  """
  b = levels.shape[0]
  flat = levels.reshape(b, -1)
  present = jnp.zeros((b, _POISSON_LEVELS), jnp.int32).at[jnp.arange(b)[:, None], flat].set(1)
  n = jnp.sum(present, axis=1)
  powers = 2 ** jnp.arange(_POISSON_LOG2_VALS, dtype=jnp.int32)
  return jnp.sum(n[:, None] > powers[None, :], axis=1).astype(jnp.int32)


@functools.lru_cache(maxsize=None)
def _poisson_cdf_table() -> np.ndarray:
  """(9 * 256, 512) float32 CDFs of Poisson(level / 255 * 2^j), rows j * 256 + level, last col 1.

  Built once on the host in float64 (log pmf = n log lam - lam - log n!, exp, cumsum): the only
  error left is float32's rounding of the CDF (< 6e-8). It enters the jitted program as a 4.7 MB
  constant; building it in the step instead (float32) cost ~15 ms a call and 2e-5 of CDF error.
  """
  vals = 2.0 ** np.arange(_POISSON_LOG2_VALS)
  # The rate as BasicSR forms it: the float32 image level / 255, times vals.
  level = (np.arange(_POISSON_LEVELS, dtype=np.float32) / np.float32(255)).astype(np.float64)
  lam = (level[None, :] * vals[:, None])[..., None]
  n = np.arange(_POISSON_SUPPORT, dtype=np.float64)
  log_fact = np.concatenate([[0.0], np.cumsum(np.log(n[1:]))])
  with np.errstate(divide="ignore", invalid="ignore"):
    log_pmf = np.where(n == 0, 0.0, n * np.log(lam)) - lam - log_fact  # lam = 0: pmf = [1, 0, ...]
  cdf = np.cumsum(np.exp(log_pmf), axis=-1)
  cdf = cdf / cdf[..., -1:]
  return cdf.reshape(-1, _POISSON_SUPPORT).astype(np.float32)


def _uniform_k(bits):
  """The 16-bit index k of the Poisson uniform u = (k + 0.5) / 65536 (the field's low half)."""
  return (bits & 0xFFFF).astype(jnp.int32)


@functools.lru_cache(maxsize=None)
def _poisson_guide_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(bucket (65536,) uint8, lo (rows * B,) int16, threshold (rows * B,) float32).

  bucket[k] is the guide bucket of u_k = (k + 0.5) / 65536; lo[r * B + b] the count at the
  bucket's smallest u (#{n : CDF_r[n] <= u}) and threshold the CDF at lo. Raises if some cell's
  counts span more than lo and lo + 1 (the one-comparison rule would then be wrong).
  """
  cdf = _poisson_cdf_table()
  k = np.arange(65536)
  u = ((k.astype(np.float32) + np.float32(0.5)) / np.float32(65536)).astype(np.float32)
  z = scipy_special.ndtri((k + 0.5) / 65536)
  nb = _GUIDE_BUCKETS
  bucket = np.clip(np.floor((z + _GUIDE_Z) / (2 * _GUIDE_Z) * nb), 0, nb - 1).astype(np.int64)
  first = np.searchsorted(bucket, np.arange(nb), side="left")
  last = np.searchsorted(bucket, np.arange(nb), side="right") - 1
  empty = last < first  # no k falls in it: any value serves, never read
  first, last = np.where(empty, 0, first), np.where(empty, 0, last)
  lo = np.stack([np.searchsorted(row, u[first], side="right") for row in cdf])   # (rows, nb)
  hi = np.stack([np.searchsorted(row, u[last], side="right") for row in cdf])
  if np.any(hi - lo > 1):
    raise AssertionError(f"Poisson guide table: a cell spans {int((hi - lo).max())} counts")
  thr = np.take_along_axis(cdf, np.minimum(lo, _POISSON_SUPPORT - 1), axis=1)
  return (bucket.astype(np.uint8), lo.reshape(-1).astype(np.int16),
          thr.reshape(-1).astype(np.float32))


def _poisson_counts(rng, row, bits=None):
  """Poisson counts for table rows `row` (any shape): the smallest n with CDF[n] > u, with
  u = (k + 0.5) / 65536 and k the field's low 16 bits; by the guide table (module doc)."""
  bits = random_bits(rng, row.shape) if bits is None else bits
  k = _uniform_k(bits)
  bucket_t, lo_t, thr_t = (jnp.asarray(t) for t in _poisson_guide_tables())
  cell = row * _GUIDE_BUCKETS + bucket_t[k].astype(jnp.int32)
  u = (k.astype(jnp.float32) + 0.5) / 65536.0
  return lo_t[cell].astype(jnp.int32) + (thr_t[cell] <= u).astype(jnp.int32)


def poisson(rng, x, scale, gray, *, clip: bool = False, bits=None):
  """BasicSR `generate_poisson_noise_pt`: x + scale * (Poisson(img vals) / vals - img) per sample.

  img = round(clip(x, 0, 1) * 255) / 255 (the luma of x for gray samples, then rounded the same
  way) and vals = 2^ceil(log2(#distinct levels of that sample's img)). Gray samples add the same
  noise to every channel. scale: (B,); gray: (B,) bool (needs C == 3, or C == 1 where the luma is
  the image itself). params: scale, gray, vals (the vals of the kind of noise each sample got).
  """
  b, _, _, c = x.shape
  scale = _per_sample(scale, b)
  gray = _per_sample(gray, b, jnp.bool_)
  if c == 3:
    luma = sum(w * x[..., i:i + 1] for i, w in enumerate(_LUMA))
  elif c == 1:
    luma = x
  else:
    raise ValueError(f"poisson: gray noise needs 1 or 3 channels, got {c}")
  level_col, level_gray = _levels(x), _levels(luma)
  j = jnp.where(gray, _log2_vals(level_gray), _log2_vals(level_col))
  level = jnp.where(_bcast(gray), level_gray, level_col)       # (B, H, W, C) by broadcasting
  row = _bcast(j) * _POISSON_LEVELS + level
  counts = _poisson_counts(rng, jnp.broadcast_to(row, x.shape), bits)
  vals = (2 ** j).astype(jnp.float32)
  noise = counts.astype(jnp.float32) / _bcast(vals) - level.astype(jnp.float32) / 255.0
  noise = jnp.where(_bcast(gray), noise[..., :1], noise)      # gray: channel 0's draw everywhere
  out = x + (noise * _bcast(scale)).astype(x.dtype)
  return _finish(out, clip), dict(scale=scale, gray=gray, vals=vals)


def random_poisson(rng, x, scale_range, gray_prob, *, clip: bool = False, bits=None):
  """BasicSR `random_add_poisson_noise_pt`: scale ~ U[scale_range], gray w.p. gray_prob."""
  k_scale, k_gray, k_noise = jax.random.split(rng, 3)
  b = x.shape[0]
  scale = jax.random.uniform(k_scale, (b,), jnp.float32, scale_range[0], scale_range[1])
  gray = jax.random.uniform(k_gray, (b,)) < gray_prob
  return poisson(k_noise, x, scale, gray, clip=clip, bits=bits)


# ---------------------------------------------------------------------------------------------- #
# BSRGAN Gaussian noise
# ---------------------------------------------------------------------------------------------- #

MODE_COLOR, MODE_GRAY, MODE_CORRELATED = 0, 1, 2


def bsrgan_gaussian(rng, x, level_range=(2, 25), *, clip: bool = False):
  """KAIR `add_Gaussian_noise(img, noise_level1, noise_level2)` per sample, on RGB (C == 3).

  level ~ randint(level_range) inclusive, r ~ U[0, 1): r > 0.6 colour noise of std level / 255,
  r < 0.4 gray noise (one plane), else correlated colour noise N(0, Sigma) per pixel with
  Sigma = |L^2 U^T D U|, L = level_range[1] / 255 (KAIR's noise_level2, not the drawn level),
  D = diag(U[0, 1)^3), U = orth(U[0, 1)^(3x3)) (scipy's orth: the left singular vectors).

  params: level (int32, the drawn level, unused by correlated samples), mode (int32: MODE_COLOR,
  MODE_GRAY, MODE_CORRELATED), cov ((B, 3, 3) Sigma as KAIR forms it, for every sample).
  """
  b, _, _, c = x.shape
  if c != 3:
    raise ValueError(f"bsrgan_gaussian: needs RGB images (C == 3), got C = {c}")
  k_level, k_mode, k_d, k_u, k_noise = jax.random.split(rng, 5)
  level = jax.random.randint(k_level, (b,), level_range[0], level_range[1] + 1)
  r = jax.random.uniform(k_mode, (b,))
  mode = jnp.where(r > 0.6, MODE_COLOR, jnp.where(r < 0.4, MODE_GRAY, MODE_CORRELATED))

  big_l = level_range[1] / 255.0
  d = jax.random.uniform(k_d, (b, 3))
  u = jnp.linalg.svd(jax.random.uniform(k_u, (b, 3, 3)), full_matrices=False)[0]
  conv = jnp.einsum("bki,bk,bkj->bij", u, d, u)                # U^T D U
  cov = jnp.abs(big_l ** 2 * conv)
  _, s, vh = jnp.linalg.svd(cov)
  factor = jnp.sqrt(s)[..., None] * vh                         # numpy's (sqrt(s)[:, None] * v)

  z = jax.random.normal(k_noise, x.shape, jnp.float32)
  std = _bcast(level.astype(jnp.float32) / 255.0)
  noise = jnp.where(_bcast(mode == MODE_GRAY), z[..., :1] * std, z * std)
  noise = jnp.where(_bcast(mode == MODE_CORRELATED), jnp.einsum("bhwi,bij->bhwj", z, factor), noise)
  out = x + noise.astype(x.dtype)
  return _finish(out, clip), dict(level=level.astype(jnp.int32), mode=mode.astype(jnp.int32),
                                  cov=cov)
