"""Real-world degradations on the device: the BSRGAN and Real-ESRGAN pipelines in jnp.

BSRGAN (Zhang et al., ICCV 2021; KAIR `utils_blindsr.degradation_bsrgan`) and Real-ESRGAN (Wang et
al., ICCVW 2021; BasicSR `RealESRGANModel.feed_data`) synthesise an LR image from an HR crop by a
random chain of blur, resize, noise and JPEG. The peers draw one chain per image on the CPU
(numpy/OpenCV) or one resize factor per *batch* on the GPU (PyTorch). Here every sample of a batch
draws its own chain inside the jitted train step, from the step's rng, on any device.

The difficulty is shape: a sample shrunk by 0.4 and one enlarged by 1.3 cannot share an array.
Each image therefore lives in a fixed-size buffer (B, Hb, Wb, C) with its own *valid size*
(hv, wv) (B,) in its top-left corner; the pixels beyond are don't-care. Every op knows the valid
size:

  resize     one (rows, in) matrix per sample and axis, built on the device from the traced
             in/out sizes (`resize_matrices`: OpenCV/PyTorch's bilinear and bicubic (a = -0.75,
             half-pixel centres, replicated border, no antialiasing) and OpenCV's INTER_AREA (the
             exact box coverage, for shrinking and enlarging)); rows beyond the output size are 0.
  blur       the per-sample kernel by FFT (O(N log N); a 21x21 depthwise conv is 30x slower on a
             CPU) over the buffer after a per-sample reflect padding built as a gather from the
             valid size (PyTorch's "reflect" = scipy's "mirror": the edge pixel is not repeated).
  JPEG       the buffer is first filled beyond the valid size by replicating the last row/column,
             which is how libjpeg pads a partial MCU; blocks wholly outside do not matter.
  noise      drawn over the whole buffer; only the valid part is ever read.

Pipelines (`degrade`), each a pure function of (hr, rng):
  realesrgan   first order (blur k1 -> resize up/down/keep by a random factor and mode -> Gaussian
               or Poisson noise, colour or gray -> JPEG), second order (blur k2 with prob. 0.8 ->
               resize to s^-1 x a factor -> noise -> JPEG), then [resize to H/s + sinc] and JPEG
               in a random order; the LR is rounded to 8 bits. Made from the unsharp-masked HR (as
               BasicSR does), which is returned too for losses that want it (`l1_gt_usm`).
  bsrgan       with prob. 0.25 (x4 only) a first x2 downscale, then blur, blur, downsample2,
               downsample3, noise, JPEG (prob 0.9) in a random order per sample (downsample2
               before downsample3), then a final JPEG. KAIR's ISP camera model is not included
               (it needs its trained camera parameters; BSRGAN's released training used it with
               prob. 0.25): say isp_prob = 0.

Kernels and noise come from jsr.ops.kernels and jsr.ops.noise, JPEG from jsr.ops.jpeg; each is
tested against its reference there. `default_config(pipeline)` holds the papers' parameters.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jsr.ops import jpeg as jpeg_ops
from jsr.ops import kernels as kernel_ops
from jsr.ops import noise as noise_ops
from jsr.ops.resize import imresize

HIGHEST = jax.lax.Precision.HIGHEST
MODES = ("area", "bilinear", "bicubic")  # Real-ESRGAN's random.choice order; BSRGAN's cv2 1,2,3


# ------------------------------------------------------------------------------------------------
# Config: the papers' parameters.
# ------------------------------------------------------------------------------------------------


def default_config(pipeline: str = "realesrgan") -> ml_collections.ConfigDict:
  """The published parameters of one pipeline (Real-ESRGAN x4plus options / KAIR's BSRGAN)."""
  c = ml_collections.ConfigDict()
  c.name = pipeline
  if pipeline == "realesrgan":
    # train_realesrgan_x4plus.yml / realesrnet: the first degradation.
    c.kernel_list = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                     "plateau_aniso")
    c.kernel_prob = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    c.sinc_prob = 0.1
    c.blur_sigma = (0.2, 3.0)
    c.betag_range = (0.5, 4.0)
    c.betap_range = (1.0, 2.0)
    c.resize_prob = (0.2, 0.7, 0.1)  # up, down, keep
    c.resize_range = (0.15, 1.5)
    c.gaussian_noise_prob = 0.5
    c.noise_range = (1.0, 30.0)  # std in 0-255 units
    c.poisson_scale_range = (0.05, 3.0)
    c.gray_noise_prob = 0.4
    c.jpeg_range = (30.0, 95.0)
    # The second degradation.
    c.second_blur_prob = 0.8
    c.sinc_prob2 = 0.1
    c.blur_sigma2 = (0.2, 1.5)
    c.betag_range2 = (0.5, 4.0)
    c.betap_range2 = (1.0, 2.0)
    c.resize_prob2 = (0.3, 0.4, 0.3)
    c.resize_range2 = (0.3, 1.2)
    c.gaussian_noise_prob2 = 0.5
    c.noise_range2 = (1.0, 25.0)
    c.poisson_scale_range2 = (0.05, 2.5)
    c.gray_noise_prob2 = 0.4
    c.jpeg_range2 = (30.0, 95.0)
    c.final_sinc_prob = 0.8
    c.sharpen_input = True  # BasicSR degrades the unsharp-masked GT
    # First-resize buckets (first_resize_draws): per batch up / [split, 1] / [lo, split], per
    # sample within; the marginal law is the paper's. 0 = one (largest) buffer for all.
    c.resize_split = 0.5
  elif pipeline == "bsrgan":
    c.scale2_prob = 0.25  # x4 only: a first x2 downscale
    c.jpeg_prob = 0.9
    c.noise_level = (2, 25)  # randint, 0-255 units, inclusive
    c.jpeg_range = (30, 95)  # randint, inclusive
    c.shuffle = True  # False: KAIR's fixed order blur, blur, down2, down3, noise, JPEG
  else:
    raise ValueError(f"realworld.default_config: unknown pipeline {pipeline!r}; "
                     f"choose realesrgan or bsrgan")
  return c


def sharpen_config() -> ml_collections.ConfigDict:
  """BasicSR's USMSharp defaults (radius 50 -> a 51-tap Gaussian, sigma from OpenCV's rule)."""
  c = ml_collections.ConfigDict()
  c.weight = 0.5
  c.radius = 50
  c.threshold = 10
  return c


# ------------------------------------------------------------------------------------------------
# Variable-size images in fixed buffers.
# ------------------------------------------------------------------------------------------------


def _as_sizes(n, batch: int):
  return jnp.broadcast_to(jnp.asarray(n, jnp.int32), (batch,))


def resize_matrices(rows: int, cols: int, in_size, out_size, mode) -> jax.Array:
  """(B, rows, cols) resize matrices from traced (B,) in/out sizes and mode (index into MODES).

  Row o < out_size holds output pixel o's weights over input pixels < in_size (OpenCV's
  `cv2.resize` with INTER_AREA / INTER_LINEAR / INTER_CUBIC, which PyTorch's bilinear/bicubic
  `F.interpolate` (align_corners=False, no antialias) equal); other rows are zero.
  """
  n_in = jnp.asarray(in_size, jnp.int32)
  n_out = jnp.asarray(out_size, jnp.int32)
  ratio = (n_in.astype(jnp.float32) / jnp.maximum(n_out, 1).astype(jnp.float32))[:, None, None]
  o = jnp.arange(rows, dtype=jnp.float32)[None, :, None]
  i = jnp.arange(cols, dtype=jnp.float32)[None, None, :]
  last = (n_in - 1)[:, None, None]
  # Area: the overlap of output pixel o's footprint [o r, (o + 1) r) with input pixel [i, i + 1),
  # over r. cv2 computes the same coverage when enlarging (its fx = (o+1) - (sx+1)/r branch); when
  # one axis shrinks and the other grows it uses a linear variant instead (never the case here:
  # the pipelines scale both axes by one factor).
  lo, hi = o * ratio, (o + 1.0) * ratio
  area = jnp.clip(jnp.minimum(hi, i + 1.0) - jnp.maximum(lo, i), 0.0, None) / ratio
  # Bilinear / bicubic: taps around the half-pixel source coordinate, indices clamped to the edge.
  src = (o + 0.5) * ratio - 0.5                                           # (B, rows, 1)
  ii = jnp.arange(cols, dtype=jnp.int32)[None, None, :]

  def gather_taps(taps, weights_fn, base):
    mat = 0.0
    for t in taps:
      idx = jnp.clip(base + t, 0, last).astype(jnp.int32)
      mat = mat + weights_fn(t) * (idx == ii)
    return mat

  src_lin = jnp.maximum(src, 0.0)  # cv2/PyTorch clamp a negative source to 0 for bilinear
  base_lin = jnp.floor(src_lin)
  frac_lin = src_lin - base_lin
  bilinear = gather_taps((0, 1), lambda t: jnp.where(t == 0, 1.0 - frac_lin, frac_lin), base_lin)
  base_cub = jnp.floor(src)
  frac = src - base_cub
  a = -0.75

  def cubic(x):
    ax = jnp.abs(x)
    return jnp.where(ax <= 1, ((a + 2) * ax - (a + 3)) * ax * ax + 1,
                     jnp.where(ax < 2, ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a, 0.0))

  bicubic = gather_taps((-1, 0, 1, 2), lambda t: cubic(frac - t), base_cub)
  mode = jnp.asarray(mode, jnp.int32)[:, None, None]
  mat = jnp.where(mode == 0, area, jnp.where(mode == 1, bilinear, bicubic))
  valid = (o < n_out[:, None, None]) & (i < n_in[:, None, None])
  return jnp.where(valid, mat, 0.0)


def resize(x, hv, wv, out_h, out_w, mode, rows: int, cols: int):
  """Resize each sample's valid (hv, wv) region to (out_h, out_w) (traced, (B,)) with its mode;
  returns a (B, rows, cols, C) buffer."""
  b = x.shape[0]
  mh = resize_matrices(rows, x.shape[1], _as_sizes(hv, b), _as_sizes(out_h, b), mode)
  mw = resize_matrices(cols, x.shape[2], _as_sizes(wv, b), _as_sizes(out_w, b), mode)
  y = jnp.einsum("bih,bhwc->biwc", mh, x, precision=HIGHEST)
  return jnp.einsum("bjw,biwc->bijc", mw, y, precision=HIGHEST)


def _reflect_index(n: int, pad: int, valid):
  """(B, n + 2 pad) source rows of a reflect-padded axis whose valid length is `valid` (B,)."""
  p = jnp.abs(jnp.arange(-pad, n + pad, dtype=jnp.int32)[None, :])
  v1 = (valid - 1)[:, None]
  p = jnp.where(p > v1, 2 * v1 - p, p)
  return jnp.clip(p, 0, v1)  # a kernel wider than the image: clamp what reflecting twice would


def _edge_index(n: int, valid):
  return jnp.minimum(jnp.arange(n, dtype=jnp.int32)[None, :], (valid - 1)[:, None])


def _gather_rows_cols(x, rows_idx, cols_idx):
  x = jnp.take_along_axis(x, rows_idx[:, :, None, None], axis=1)
  return jnp.take_along_axis(x, cols_idx[:, None, :, None], axis=2)


def fill_edges(x, hv, wv):
  """Replace the pixels beyond each sample's valid size by its last row/column (libjpeg's MCU
  padding; keeps later ops from reading don't-care values)."""
  b, h, w, _ = x.shape
  return _gather_rows_cols(x, _edge_index(h, _as_sizes(hv, b)), _edge_index(w, _as_sizes(wv, b)))


def filter2d(x, kernels, hv=None, wv=None):
  """Correlate each sample with its own (k, k) kernel, reflect borders at its valid size.

  x: (B, H, W, C); kernels: (B, k, k), k odd; hv, wv: (B,) valid sizes (default: the full
  buffer). Same as BasicSR's `filter2D` (reflect pad + conv2d, a correlation) on the valid part.
  """
  b, h, w, c = x.shape
  k = kernels.shape[-1]
  r = k // 2
  hv = _as_sizes(h if hv is None else hv, b)
  wv = _as_sizes(w if wv is None else wv, b)
  xp = _gather_rows_cols(x, _reflect_index(h, r, hv), _reflect_index(w, r, wv))
  # Correlation by FFT: flip the kernel into a zero image of the transform size; the circular
  # wrap-around only reaches the first k - 1 rows/columns, which are cut off. The transform is
  # zero-padded from the padded image's size to the next 5-smooth size (2^a 3^b 5^c): a size
  # with a large prime factor costs ~2x (404 = 4 x 101: 237 ms for a (16, 3) batch, 405: 111).
  fh, fw = _smooth_size(h + 2 * r), _smooth_size(w + 2 * r)
  kf = jnp.zeros((b, fh, fw), jnp.float32).at[:, :k, :k].set(kernels[:, ::-1, ::-1])
  xf = jnp.fft.rfft2(xp.astype(jnp.float32), s=(fh, fw), axes=(1, 2))
  y = jnp.fft.irfft2(xf * jnp.fft.rfft2(kf, axes=(1, 2))[..., None], s=(fh, fw), axes=(1, 2))
  return y[:, k - 1:k - 1 + h, k - 1:k - 1 + w, :].astype(x.dtype)


@functools.lru_cache(maxsize=None)
def _smooth_size(n: int) -> int:
  """The smallest m >= n whose only prime factors are 2, 3 and 5."""
  m = n
  while True:
    q = m
    for p in (2, 3, 5):
      while q % p == 0:
        q //= p
    if q == 1:
      return m
    m += 1


def _valid_mask(h, w, hv, wv):
  return ((jnp.arange(h)[None, :, None] < hv[:, None, None]) &
          (jnp.arange(w)[None, None, :] < wv[:, None, None]))[..., None]


# ------------------------------------------------------------------------------------------------
# Unsharp masking (Real-ESRGAN sharpens the ground truth).
# ------------------------------------------------------------------------------------------------


def _cv2_gaussian_taps(ksize: int) -> np.ndarray:
  # cv2.getGaussianKernel(ksize, sigma<=0): sigma = 0.3 ((ksize - 1) / 2 - 1) + 0.8.
  sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
  t = np.arange(ksize) - (ksize - 1) / 2
  g = np.exp(-t * t / (2 * sigma * sigma))
  return (g / g.sum()).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _reflect_band(n: int, taps: np.ndarray | tuple) -> np.ndarray:
  """(n, n) matrix of a 1-D correlation with `taps` under reflect padding (edge not repeated)."""
  taps = np.asarray(taps, np.float64)
  r = len(taps) // 2
  m = np.zeros((n, n), np.float64)
  if n == 1:
    return np.ones((1, 1), np.float32)
  for i in range(n):
    for t, w in enumerate(taps):
      p = abs(i + t - r)
      while p > n - 1 or p < 0:  # reflect until inside (kernels wider than the image)
        p = 2 * (n - 1) - p if p > n - 1 else -p
      m[i, p] += w
  return m.astype(np.float32)


def usm_sharp(x, weight: float = 0.5, radius: int = 50, threshold: float = 10):
  """BasicSR's USMSharp: sharp = clip(x + w (x - blur(x))), blended in where |x - blur| > t/255
  (a soft mask, itself blurred). Gaussian of `radius` (made odd) taps, reflect borders."""
  ksize = radius + 1 if radius % 2 == 0 else radius
  g = tuple(_cv2_gaussian_taps(ksize).tolist())
  # The Gaussian is separable and the image full-size: two static band matrices (reflect folded
  # in) beat a 2-D FFT of the padded image.
  mh = jnp.asarray(_reflect_band(x.shape[1], g))
  mw = jnp.asarray(_reflect_band(x.shape[2], g))
  blur_fn = lambda a: jnp.einsum("ih,bhwc->biwc", mh, jnp.einsum("jw,bhwc->bhjc", mw, a,
                                                                  precision=HIGHEST),
                                 precision=HIGHEST)
  blur = blur_fn(x)
  residual = x - blur
  mask = (jnp.abs(residual) * 255.0 > threshold).astype(x.dtype)
  soft = blur_fn(mask)
  sharp = jnp.clip(x + weight * residual, 0.0, 1.0)
  return soft * sharp + (1.0 - soft) * x


# ------------------------------------------------------------------------------------------------
# Real-ESRGAN.
# ------------------------------------------------------------------------------------------------


def fast_key(rng):
  """A key of XLA's RngBitGenerator ("rbg") seeded from `rng`: it draws large fields (BSRGAN's
  normal noise) about 2x faster than threefry on a CPU, and is as deterministic for a given key,
  program and device layout (its bits may differ between backends, which threefry's do not).
  Real-ESRGAN's noise fields are drawn by noise_ops.random_bits, a hash ~100x faster still."""
  return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")


def _uniform(key, b, lo, hi):
  return jax.random.uniform(key, (b,), jnp.float32, lo, hi)


def _random_factor(key, b, prob, rng_range):
  """Real-ESRGAN's up / down / keep choice and factor, per sample."""
  k1, k2, k3 = jax.random.split(key, 3)
  kind = jax.random.categorical(k1, jnp.log(jnp.asarray(prob, jnp.float32)), shape=(b,))
  up = _uniform(k2, b, 1.0, rng_range[1])
  down = _uniform(k3, b, rng_range[0], 1.0)
  return kind, jnp.where(kind == 0, up, jnp.where(kind == 1, down, 1.0))


def _noise(key, x, gaussian_prob, sigma_range, poisson_range, gray_prob):
  """Gaussian (prob. gaussian_prob) or Poisson noise per sample, clipped to [0, 1]."""
  kc, kg, kp, kb = jax.random.split(key, 4)
  use_gauss = jax.random.uniform(kc, (x.shape[0],)) < gaussian_prob
  bits = noise_ops.random_bits(kb, x.shape)  # one field: each sample keeps one of the two
  xg, pg = noise_ops.random_gaussian(kg, x, sigma_range, gray_prob, bits=bits)
  xp, pp = noise_ops.random_poisson(kp, x, poisson_range, gray_prob, bits=bits)
  out = jnp.where(use_gauss[:, None, None, None], xg, xp)
  params = {"gaussian": use_gauss, **{f"gaussian_{k}": v for k, v in pg.items()},
            **{f"poisson_{k}": v for k, v in pp.items()}}
  return jnp.clip(out, 0.0, 1.0), params


def _jpeg(key, x, hv, wv, q_range):
  q = jnp.round(_uniform(key, x.shape[0], q_range[0], q_range[1]))
  return jpeg_ops.jpeg(fill_edges(jnp.clip(x, 0.0, 1.0), hv, wv), q), q


def _round16(n: float) -> int:
  return int(math.ceil(n / 16.0) * 16)


def _bucket_tops(deg) -> tuple[float, ...]:
  """The largest factor of each first-resize bucket: up, [split, 1] with keep, [lo, split]."""
  hi = max(deg.resize_range[1], 1.0)
  if not deg.resize_split:
    return (hi,)
  return (hi, 1.0, deg.resize_split)


def first_resize_draws(key, b: int, deg):
  """Real-ESRGAN's first resize per sample: (bucket, kind, factor), kind 0 up / 1 down / 2 keep.

  Each sample's (kind, factor) has the paper's law: kind ~ resize_prob, factor ~ U[1, hi] (up),
  U[lo, 1] (down) or 1. With `resize_split` in (lo, 1) the batch first draws one bucket -- up,
  [split, 1] or keep, [lo, split] -- with the probability the law gives it, and every sample
  then draws within that bucket: the marginal law is unchanged, and the first-order buffer is
  the bucket's size instead of the largest (the mean area falls ~2x at the paper's ranges).
  resize_split = 0: no buckets, every sample draws freely (bucket 0, the largest buffer).
  """
  lo, hi = deg.resize_range
  p_up, p_down, p_keep = (float(v) for v in deg.resize_prob)
  kb, kk, ku = jax.random.split(key, 3)
  if not deg.resize_split:
    kind, f = _random_factor(key, b, deg.resize_prob, deg.resize_range)
    return jnp.zeros((), jnp.int32), kind, f
  split = float(deg.resize_split)
  if not lo < split < 1.0:
    raise ValueError(f"resize_split={split} must lie inside the down range ({lo}, 1) or be 0")
  p_small = p_down * (split - lo) / (1.0 - lo)
  probs = jnp.asarray([p_up, p_down - p_small + p_keep, p_small], jnp.float32)
  bucket = jax.random.categorical(kb, jnp.log(probs)).astype(jnp.int32)
  keep = jax.random.uniform(kk, (b,)) < p_keep / max(p_down - p_small + p_keep, 1e-12)
  u = jax.random.uniform(ku, (b,))
  up_f = 1.0 + u * (hi - 1.0)
  large_f = jnp.where(keep, 1.0, split + u * (1.0 - split))
  small_f = lo + u * (split - lo)
  f = jnp.where(bucket == 0, up_f, jnp.where(bucket == 1, large_f, small_f))
  kind = jnp.where(bucket == 0, 0, jnp.where((bucket == 1) & keep, 2, 1)).astype(jnp.int32)
  return bucket, kind, f


def realesrgan(hr, rng, deg, scale: int, sharpen=None):
  """Real-ESRGAN's two-order degradation of (B, H, W, C) HR crops -> (lr, gt_usm, params).

  H and W must be divisible by `scale`. `sharpen` is sharpen_config() (BasicSR's USM defaults
  when None); gt_usm is the sharpened HR the LR was made from (deg.sharpen_input), or hr.
  """
  b, h, w, c = hr.shape
  if h % scale or w % scale:
    raise ValueError(f"realesrgan: the HR crop {h}x{w} must be divisible by scale={scale}")
  sharpen = sharpen or sharpen_config()
  keys = iter(jax.random.split(fast_key(rng), 24))
  hr = hr.astype(jnp.float32)
  gt_usm = usm_sharp(hr, sharpen.weight, sharpen.radius, sharpen.threshold)
  x = gt_usm if deg.sharpen_input else hr
  params = {}

  # ---- First order, at the HR size then a random factor.
  k1, p = kernel_ops.random_mixed_kernels(
      next(keys), b, kernel_list=tuple(deg.kernel_list), kernel_prob=tuple(deg.kernel_prob),
      sigma_range=tuple(deg.blur_sigma), betag_range=tuple(deg.betag_range),
      betap_range=tuple(deg.betap_range), sinc_prob=deg.sinc_prob)
  params.update({f"kernel1_{k}": v for k, v in p.items()})
  x = filter2d(x, k1)
  bucket, kind, f1 = first_resize_draws(next(keys), b, deg)
  mode1 = jax.random.randint(next(keys), (b,), 0, 3)
  h1 = jnp.maximum(jnp.floor(h * f1), 1).astype(jnp.int32)
  w1 = jnp.maximum(jnp.floor(w * f1), 1).astype(jnp.int32)
  params.update(resize1=f1, resize1_mode=mode1, resize1_kind=kind, resize1_bucket=bucket)
  noise_key, jpeg_key = next(keys), next(keys)
  # The second order's blur and resize, drawn here: they run inside the first order's bucket.
  k2, p = kernel_ops.random_mixed_kernels(
      next(keys), b, kernel_list=tuple(deg.kernel_list), kernel_prob=tuple(deg.kernel_prob),
      sigma_range=tuple(deg.blur_sigma2), betag_range=tuple(deg.betag_range2),
      betap_range=tuple(deg.betap_range2), sinc_prob=deg.sinc_prob2)
  blur2 = jax.random.uniform(next(keys), (b,)) < deg.second_blur_prob
  params.update({f"kernel2_{k}": v for k, v in p.items()}, blur2=blur2)
  kind2, f2 = _random_factor(next(keys), b, deg.resize_prob2, deg.resize_range2)
  mode2 = jax.random.randint(next(keys), (b,), 0, 3)
  h2 = jnp.maximum(jnp.floor(h / scale * f2), 1).astype(jnp.int32)
  w2 = jnp.maximum(jnp.floor(w / scale * f2), 1).astype(jnp.int32)
  rows2 = _round16(h / scale * max(deg.resize_range2[1], 1.0))
  cols2 = _round16(w / scale * max(deg.resize_range2[1], 1.0))
  params.update(resize2=f2, resize2_mode=mode2, resize2_kind=kind2)

  def first_order(top: float, x):
    """resize1 -> noise -> JPEG, then the second blur and resize, in a buffer of the bucket's
    largest size: noise and JPEG cost the bucket's area, not (1.5 H)^2."""
    rows, cols = _round16(h * top), _round16(w * top)
    y = jnp.clip(resize(x, h, w, h1, w1, mode1, rows, cols), 0.0, 1.0)
    y, pn = _noise(noise_key, y, deg.gaussian_noise_prob, deg.noise_range,
                   deg.poisson_scale_range, deg.gray_noise_prob)
    y, q = _jpeg(jpeg_key, y, h1, w1, deg.jpeg_range)
    y = jnp.where(blur2[:, None, None, None], filter2d(y, k2, h1, w1), y)
    y = jnp.clip(resize(y, h1, w1, h2, w2, mode2, rows2, cols2), 0.0, 1.0)
    return y, pn, q

  branches = [functools.partial(first_order, t) for t in _bucket_tops(deg)]
  x, p, q1 = branches[0](x) if len(branches) == 1 else jax.lax.switch(bucket, branches, x)
  params.update({f"noise1_{k}": v for k, v in p.items()})
  params["jpeg1"] = q1

  # ---- Second order's noise, then towards the LR size.
  x, p = _noise(next(keys), x, deg.gaussian_noise_prob2, deg.noise_range2,
                deg.poisson_scale_range2, deg.gray_noise_prob2)
  params.update({f"noise2_{k}": v for k, v in p.items()})

  # ---- [resize to H/s + sinc] and JPEG, in a random order per sample.
  sinc, p = kernel_ops.random_sinc_kernels(next(keys), b, deg.final_sinc_prob)
  params.update({f"sinc_{k}": v for k, v in p.items()})
  mode3 = jax.random.randint(next(keys), (b,), 0, 3)
  q2 = jnp.round(_uniform(next(keys), b, deg.jpeg_range2[0], deg.jpeg_range2[1]))
  hs, ws = h // scale, w // scale
  rows3, cols3 = _round16(hs), _round16(ws)

  def resize_sinc(y, hy, wy):
    y = resize(y, hy, wy, hs, ws, mode3, rows3, cols3)
    return filter2d(y, sinc, hs, ws)

  def jpeg2(y, hy, wy):
    return jpeg_ops.jpeg(fill_edges(jnp.clip(y, 0.0, 1.0), hy, wy), q2)

  resize_first = jax.random.uniform(next(keys), (b,)) < 0.5
  a = jpeg2(resize_sinc(x, h2, w2), hs, ws)
  bb = resize_sinc(jpeg2(x, h2, w2), h2, w2)
  x = jnp.where(resize_first[:, None, None, None], a, bb)
  params.update(jpeg2=q2, resize3_mode=mode3, resize_then_jpeg=resize_first)
  lr = jnp.clip(jnp.round(x[:, :hs, :ws] * 255.0), 0.0, 255.0) / 255.0
  return lr, gt_usm, params


# ------------------------------------------------------------------------------------------------
# BSRGAN.
# ------------------------------------------------------------------------------------------------


def _fspecial_gaussian(size: int, sigma):
  """(B, size, size) MATLAB fspecial('gaussian', size, sigma) for traced sigma (B,)."""
  t = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  r2 = t[:, None] ** 2 + t[None, :] ** 2
  k = jnp.exp(-r2[None] / (2.0 * jnp.maximum(sigma, 1e-6)[:, None, None] ** 2))
  return k / jnp.sum(k, axis=(1, 2), keepdims=True)


def _shift_matrix(size: int, shift):
  """(B, size, size) linear interpolation at positions clip(t + shift, 0, size - 1): KAIR's
  `shift_pixel` (scipy interp2d, linear) as a matrix, shift (B,) traced."""
  pos = jnp.clip(jnp.arange(size, dtype=jnp.float32)[None, :] + shift[:, None], 0.0, size - 1.0)
  lo = jnp.floor(pos)
  frac = pos - lo
  hi = jnp.minimum(lo + 1, size - 1)
  cols = jnp.arange(size, dtype=jnp.float32)[None, None, :]
  return (1 - frac)[..., None] * (lo[..., None] == cols) + frac[..., None] * (hi[..., None] == cols)


def _subsample_matrix(rows: int, cols: int, step, out_size):
  """(B, rows, cols): row o < out_size picks input pixel o * step (x[0::step])."""
  o = jnp.arange(rows, dtype=jnp.int32)[None, :, None]
  i = jnp.arange(cols, dtype=jnp.int32)[None, None, :]
  return ((i == o * step[:, None, None]) & (o < out_size[:, None, None])).astype(jnp.float32)


def _apply_separable(mh, mw, x):
  y = jnp.einsum("bih,bhwc->biwc", mh, x, precision=HIGHEST)
  return jnp.einsum("bjw,biwc->bijc", mw, y, precision=HIGHEST)


def _bsrgan_noise(key, x, level_range):
  """KAIR's add_Gaussian_noise; a gray image (C = 1) has no colour or channel correlation to
  draw, so it gets plain Gaussian noise of the drawn level (what all three modes reduce to)."""
  if x.shape[-1] == 3:
    return noise_ops.bsrgan_gaussian(key, x, level_range)
  kl, kn = jax.random.split(key)
  level = jax.random.randint(kl, (x.shape[0],), level_range[0], level_range[1] + 1)
  out, _ = noise_ops.gaussian(kn, x, level.astype(jnp.float32) / 255.0, True)
  return out, {"level": level}


def bsrgan(hr, rng, deg, scale: int):
  """KAIR's degradation_bsrgan on (B, H, W, C) HR crops -> (lr, hr, params), per sample.

  The shuffled order is drawn per sample; at each of the 7 positions every op is computed on the
  whole batch and each sample keeps the one its order names (a per-sample `switch` under vmap
  computes all branches anyway). The buffer stays at the HR size throughout.
  """
  b, h, w, c = hr.shape
  if scale not in (2, 3, 4) or h % scale or w % scale:
    raise ValueError(f"bsrgan: scale must be 2, 3 or 4 and divide the HR crop {h}x{w}; "
                     f"got scale={scale}")
  keys = iter(jax.random.split(fast_key(rng), 64))
  x = hr.astype(jnp.float32)
  params = {}
  full_h, full_w = _as_sizes(h, b), _as_sizes(w, b)

  # ---- x4: with prob. scale2_prob, a first x2 downscale (cv2 resize or MATLAB bicubic).
  if scale == 4:
    take = jax.random.uniform(next(keys), (b,)) < deg.scale2_prob
    use_cv2 = jax.random.uniform(next(keys), (b,)) < 0.5
    cv2_mode = jax.random.randint(next(keys), (b,), 0, 3)
    half_cv2 = resize(x, full_h, full_w, full_h // 2, full_w // 2, cv2_mode, h, w)
    matlab = imresize(x, 0.5)
    half_matlab = jnp.zeros_like(x).at[:, :h // 2, :w // 2].set(matlab)
    half = jnp.clip(jnp.where(use_cv2[:, None, None, None], half_cv2, half_matlab), 0.0, 1.0)
    x = jnp.where(take[:, None, None, None], half, x)
    sf = jnp.where(take, 2, 4).astype(jnp.int32)
    params.update(scale2=take, scale2_cv2=use_cv2, scale2_mode=cv2_mode)
  else:
    sf = jnp.full((b,), scale, jnp.int32)
  hv = jnp.where(sf == scale, h, h // 2).astype(jnp.int32)
  wv = jnp.where(sf == scale, w, w // 2).astype(jnp.int32)
  a_h, a_w = hv, wv  # KAIR's (a, b): the size downsample3 divides by sf

  # ---- The order: a permutation of 7 ops per sample, downsample2 (2) before downsample3 (3).
  order = jnp.argsort(jax.random.uniform(next(keys), (b, 7)), axis=1).astype(jnp.int32)
  if not deg.shuffle:
    order = jnp.broadcast_to(jnp.arange(7, dtype=jnp.int32), (b, 7))
  pos2 = jnp.argmax(order == 2, axis=1)
  pos3 = jnp.argmax(order == 3, axis=1)
  swap = (pos2 > pos3)[:, None]
  order = jnp.where(swap & (order == 2), 3, jnp.where(swap & (order == 3), 2, order))
  params["order"] = order
  sff = sf.astype(jnp.float32)

  for step in range(7):
    op = order[:, step]
    sel = lambda k: (op == k)[:, None, None, None]
    # Blur (ops 0 and 1: the same random add_blur).
    kb, pb = kernel_ops.bsrgan_blur_kernels(next(keys), b, sf)
    blurred = filter2d(x, kb, hv, wv)
    params.update({f"blur{step}_{k}": v for k, v in pb.items()})
    # downsample2: cv2 resize by 1/sf1, sf1 ~ U[1, 2 sf] (prob. 0.75), else a shifted Gaussian
    # blur of width U[0.1, 0.6 sf] and every sf-th pixel.
    kr, k1, k2, k3 = jax.random.split(next(keys), 4)
    use_resize = jax.random.uniform(kr, (b,)) < 0.75
    sf1 = 1.0 + jax.random.uniform(k1, (b,)) * (2.0 * sff - 1.0)
    mode2 = jax.random.randint(k2, (b,), 0, 3)
    d2h = jnp.maximum(jnp.floor(hv / sf1), 1).astype(jnp.int32)
    d2w = jnp.maximum(jnp.floor(wv / sf1), 1).astype(jnp.int32)
    down_resize = resize(x, hv, wv, d2h, d2w, mode2, h, w)
    sig = 0.1 + jax.random.uniform(k3, (b,)) * (0.6 * sff - 0.1)
    g = _fspecial_gaussian(25, sig)
    sm = _shift_matrix(25, (sff - 1.0) * 0.5)
    g = jnp.einsum("bij,bjk,blk->bil", sm, g, sm)  # rows and columns shifted
    g = g / jnp.sum(g, axis=(1, 2), keepdims=True)
    # ndimage.convolve is a true convolution: correlate with the flipped kernel.
    shifted = filter2d(x, g[:, ::-1, ::-1], hv, wv)
    sh = (hv + sf - 1) // sf
    sw = (wv + sf - 1) // sf
    down_direct = _apply_separable(_subsample_matrix(h, h, sf, sh),
                                   _subsample_matrix(w, w, sf, sw), shifted)
    down2 = jnp.clip(jnp.where(use_resize[:, None, None, None], down_resize, down_direct), 0, 1)
    d2h = jnp.where(use_resize, d2h, sh)
    d2w = jnp.where(use_resize, d2w, sw)
    params.update({f"down2_{step}_resize": use_resize, f"down2_{step}_sf1": sf1,
                   f"down2_{step}_mode": mode2, f"down2_{step}_sigma": sig})
    # downsample3: cv2 resize to (a / sf).
    mode3 = jax.random.randint(next(keys), (b,), 0, 3)
    d3h, d3w = a_h // sf, a_w // sf
    down3 = jnp.clip(resize(x, hv, wv, d3h, d3w, mode3, h, w), 0.0, 1.0)
    params[f"down3_{step}_mode"] = mode3
    # Noise (KAIR's add_Gaussian_noise: colour, gray or channel-correlated; clipped).
    noisy, pn = _bsrgan_noise(next(keys), x, tuple(deg.noise_level))
    noisy = jnp.clip(noisy, 0.0, 1.0)
    params.update({f"noise{step}_{k}": v for k, v in pn.items()})
    # JPEG with prob. jpeg_prob, quality randint(30, 95).
    kq, kp = jax.random.split(next(keys))
    q = jax.random.randint(kq, (b,), deg.jpeg_range[0], deg.jpeg_range[1] + 1).astype(jnp.float32)
    use_jpeg = jax.random.uniform(kp, (b,)) < deg.jpeg_prob
    jpegged = jnp.where(use_jpeg[:, None, None, None],
                        jpeg_ops.jpeg(fill_edges(jnp.clip(x, 0, 1), hv, wv), q), x)
    params.update({f"jpeg{step}": jnp.where(use_jpeg, q, 0.0)})

    x = jnp.where(sel(0) | sel(1), blurred, x)
    x = jnp.where(sel(2), down2, x)
    x = jnp.where(sel(3), down3, x)
    x = jnp.where(sel(4), noisy, x)
    x = jnp.where(sel(5), jpegged, x)
    hv = jnp.where(op == 2, d2h, jnp.where(op == 3, d3h, hv))
    wv = jnp.where(op == 2, d2w, jnp.where(op == 3, d3w, wv))

  # ---- The final JPEG, always.
  q = jax.random.randint(next(keys), (b,), deg.jpeg_range[0], deg.jpeg_range[1] + 1)
  x = jpeg_ops.jpeg(fill_edges(jnp.clip(x, 0, 1), hv, wv), q.astype(jnp.float32))
  params["jpeg_final"] = q
  hs, ws = h // scale, w // scale
  lr = jnp.clip(jnp.round(x[:, :hs, :ws] * 255.0), 0.0, 255.0) / 255.0
  return lr, hr.astype(jnp.float32), params


# ------------------------------------------------------------------------------------------------
# One entry point.
# ------------------------------------------------------------------------------------------------

PIPELINES = ("realesrgan", "bsrgan")


def degrade(hr, rng, deg, scale: int, sharpen=None):
  """(lr, gt_usm, params) from (B, H, W, C) HR crops in [0, 1] by the pipeline `deg` describes
  (default_config(name)); gt_usm is the HR itself for pipelines that do not sharpen."""
  name = deg.name
  if name == "realesrgan":
    return realesrgan(hr, rng, deg, scale, sharpen)
  if name == "bsrgan":
    return bsrgan(hr, rng, deg, scale)
  raise ValueError(f"realworld.degrade: unknown pipeline {name!r}; choose from {PIPELINES}")


# ------------------------------------------------------------------------------------------------
# DIV2KRK-style kernels (fixed per image; test sets and blind SR).
# ------------------------------------------------------------------------------------------------

# Per scale: (kernel size, covariance eigenvalue range). KernelGAN's gen_kernel_random with
# min_var = 0.175 s, max_var = 2.5 s; the size holds 3 standard deviations of the widest.
DIV2KRK = {2: (11, (0.35, 5.0)), 3: (17, (0.525, 7.5)), 4: (21, (0.7, 10.0))}


def div2krk_kernel(rng: np.random.Generator, scale: int,
                   noise_level: float = 0.25) -> tuple[np.ndarray, dict]:
  """A random anisotropic Gaussian as DIV2KRK's (KernelGAN, Bell-Kligler et al. 2019): covariance
  eigenvalues l1, l2 ~ U(DIV2KRK[scale]), angle ~ U[0, pi), mean shifted by -(s - 1) / 2 so that
  direct s-fold subsampling (jsr.ops.degrade "direct") keeps the HR pixel grid's centre, and
  multiplicative uniform noise of up to `noise_level` on each tap (the paper's 25%). Sums to 1."""
  if scale not in DIV2KRK:
    raise ValueError(f"div2krk_kernel: scale must be one of {sorted(DIV2KRK)}, got {scale}")
  size, (lo, hi) = DIV2KRK[scale]
  l1, l2 = rng.uniform(lo, hi, 2)
  theta = rng.uniform(0.0, np.pi)
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  inv = np.linalg.inv(rot @ np.diag([l1, l2]) @ rot.T)
  mu = size // 2 - 0.5 * (scale - 1)
  t = np.arange(size, dtype=np.float64) - mu
  yy, xx = np.meshgrid(t, t, indexing="ij")
  pts = np.stack([xx, yy], -1)
  k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
  k = k * (1.0 + rng.uniform(-noise_level, noise_level, k.shape))
  k = np.clip(k, 0.0, None)
  return (k / k.sum()).astype(np.float32), {"lambda1": float(l1), "lambda2": float(l2),
                                            "theta": float(theta), "size": size}
