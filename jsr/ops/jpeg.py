"""JPEG at a per-sample quality in jnp: what libjpeg (PIL's encoder, then its decoder) does to an
image, as one jit-able program for a whole batch, on any device.

Real-ESRGAN / BSRGAN degrade training images with JPEG at a random quality per image. Their peers
run cv2.imencode/imdecode per image on the host (or DiffJPEG, a float approximation); here the
codec's arithmetic runs in the jitted train step, quality a traced (B,) array, so one compiled
program serves every quality and nothing leaves the device.

Which libjpeg steps are emulated (libjpeg-turbo with the libjpeg 6b API, what Pillow wheels and
OpenCV ship; file names are its sources):

  * 8-bit input samples: round(255 x).
  * RGB -> YCbCr, JFIF full range, in jccolor.c's 16-bit fixed point (Y rounded half up, Cb/Cr
    with a 0.5 - 2^-16 fudge so that nothing reaches 256).
  * 4:2:0 chroma downsampling, jcsample.c h2v2_downsample: the 2x2 sum plus a bias of 1, 2, 1,
    2, ... along each row, >> 2. The alternating bias matters: always adding 2 instead (a plain
    round) costs 4-6 dB of PSNR against PIL on Set5 (docs/jpeg.md).
  * edge padding, jcprepct.c and jcsample.c: the colour-converted image is replicated right to
    whole MCUs (16 px) and down to an even height before downsampling; then each component's
    rows are replicated down to whole iMCU rows (16 luma, 8 chroma rows). The last *chroma* row
    is the one replicated, not the last image row, which changes the last block row's DCT when
    the height is not a multiple of 16.
  * quantisation tables: the IJG Annex K tables scaled as jpeg_set_quality(q, force_baseline)
    (jcparam.c), the quality rounded to an integer in [1, 100] first; quantisation rounds half
    away from zero (jcdctmgr.c).
  * decoder: each component's samples rounded half up and clamped to [0, 255] after the inverse
    DCT (jidctint.c's DESCALE and range limit); chroma upsampled by jdsample.c's h2v2 "fancy"
    (triangular) upsampling, libjpeg's and Pillow's default, except that chroma of width <= 2
    is repeated 2x2 as libjpeg does there; YCbCr -> RGB with jdcolor.c's tables.
  * 4:4:4 (chroma_subsampling=False, PIL's subsampling=0) and grayscale: the same without the
    chroma resampling, components padded to whole 8x8 blocks.

The DCT has two implementations (`dct=`):
  * "float" (default): float32 8x8 DCT-II as two matmuls per block, what accelerators do fast.
    libjpeg's default JDCT_ISLOW is a 13-bit fixed-point butterfly; the two differ by a small
    fraction of a quantisation step, so a coefficient that close to a rounding boundary lands one
    step away: on Set5 about 50 dB PSNR against PIL. Images that were JPEG files before (Set5's
    woman.png) are the worst case: their coefficients sit on the boundaries of the tables they
    were saved with, so re-coding them at a related quality flips many (41 dB there).
  * "islow": jfdctint.c / jidctint.c transcribed in int32 jnp: bit-exact with PIL and OpenCV
    (both libjpeg-turbo), at 1.5-2.5x the CPU time and 3x the compile time of "float".

Not emulated: entropy coding (lossless, so the decoded pixels do not depend on it); 4:2:2 and
other sampling factors; progressive mode, smoothing, arithmetic coding (off in PIL by default).

Outputs are multiples of 1/255 and carry no gradient (the rounding steps have none); the input
goes through stop_gradient so a caller's grad is zero rather than an error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# IJG "Annex K" tables (ITU-T T.81 K.1 and K.2) in natural (row-major) order, as jcparam.c's
# std_luminance_quant_tbl / std_chrominance_quant_tbl. numpy, not jnp: a jnp array at import would
# start the XLA backend before jax.distributed.initialize() can run.
LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], np.int32).reshape(8, 8)
CHROMA_TABLE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99], np.int32).reshape(8, 8)


def _fix(x: float) -> int:
  """libjpeg's FIX(x): x in 16-bit fixed point, rounded (jccolor.c / jdcolor.c SCALEBITS = 16)."""
  return int(x * (1 << 16) + 0.5)


_ONE_HALF = 1 << 15
_CBCR_OFFSET = 128 << 16


def dct_matrix() -> np.ndarray:
  """(8, 8) orthonormal DCT-II matrix D, D[k, n] = c_k cos((2n + 1) k pi / 16): coef = D x D^T."""
  k = np.arange(8)[:, None]
  n = np.arange(8)[None, :]
  d = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
  d[0] /= np.sqrt(2)
  return d.astype(np.float32)


# sqrt(8) D: first row exactly 1 (see _code_planes_float); the others sqrt(2) cos(...).
_DCT_SCALED = (np.sqrt(8.0) * dct_matrix().astype(np.float64)).astype(np.float32)
_DCT_SCALED[0] = 1.0


def quality_scaled_tables(quality) -> tuple[jax.Array, jax.Array]:
  """((B, 8, 8) luma, (B, 8, 8) chroma) int32 quantisation tables for a (B,) quality.

  libjpeg's jpeg_set_quality(cinfo, q, force_baseline=TRUE): q is first rounded to an integer and
  clamped to [1, 100] (libjpeg takes only integers); jpeg_quality_scaling gives a percentage,
  5000 // q below 50 and 200 - 2 q from 50 on; jpeg_add_quant_table scales each entry as
  (t * scale + 50) // 100 and clamps it to [1, 255] (baseline JPEG stores 8-bit tables).
  """
  q = jnp.clip(jnp.round(jnp.asarray(quality, jnp.float32)), 1, 100).astype(jnp.int32)
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)[..., None, None]

  def scaled(table):
    return jnp.clip((jnp.asarray(table) * scale + 50) // 100, 1, 255)

  return scaled(LUMA_TABLE), scaled(CHROMA_TABLE)


def rgb_to_ycbcr(rgb8) -> jax.Array:
  """(..., 3) integer RGB samples in [0, 255] -> (..., 3) int32 JFIF YCbCr, as libjpeg's encoder.

  Full range (no 16..235 footroom, unlike jsr.ops.color, which is MATLAB's BT.601 for metrics):
  Y = 0.299 R + 0.587 G + 0.114 B, Cb/Cr = +-0.5 (B/R - Y) / (1 - 0.114 / 0.299) + 128, in
  jccolor.c's 16-bit fixed point. Y rounds half up; Cb/Cr add 0.5 - 2^-16 so 255 cannot round to
  256, which is why the output needs no clamp.
  """
  r, g, b = (rgb8[..., i].astype(jnp.int32) for i in range(3))
  y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _ONE_HALF) >> 16
  cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> 16
  cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> 16
  return jnp.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycc8) -> jax.Array:
  """(..., 3) integer JFIF YCbCr in [0, 255] -> (..., 3) int32 RGB in [0, 255], libjpeg's decoder.

  jdcolor.c build_ycc_rgb_table: R = Y + round(1.402 Cr'), B = Y + round(1.772 Cb'),
  G = Y + floor(-0.34414 Cb' - 0.71414 Cr' + 0.5) with Cb' = Cb - 128, Cr' = Cr - 128; each
  clamped to [0, 255] (the range_limit table).
  """
  y, cb, cr = (ycc8[..., i].astype(jnp.int32) for i in range(3))
  cb, cr = cb - 128, cr - 128
  r = y + ((_fix(1.402) * cr + _ONE_HALF) >> 16)
  g = y + ((-_fix(0.34414) * cb + _ONE_HALF - _fix(0.71414) * cr) >> 16)
  b = y + ((_fix(1.772) * cb + _ONE_HALF) >> 16)
  return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def h2v2_downsample(c) -> jax.Array:
  """(B, H, W, K) int32 samples, H and W even -> (B, H/2, W/2, K), jcsample.c h2v2_downsample.

  The 2x2 sum plus a bias of 1, 2, 1, 2, ... along each output row, shifted right by 2: the
  alternation makes the truncation unbiased on average.
  """
  s = c[:, 0::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 0::2] + c[:, 1::2, 1::2]
  bias = 1 + jnp.arange(s.shape[2], dtype=jnp.int32) % 2
  return (s + bias[None, None, :, None]) >> 2


def h2v2_fancy_upsample(c) -> jax.Array:
  """(B, h, w, K) int32 samples -> (B, 2h, 2w, K), jdsample.c h2v2_fancy_upsample (triangular).

  Each output sample is 9/16, 3/16, 3/16, 1/16 of its nearest four inputs: first the vertical
  3:1 column sums (rows above for even output rows, below for odd ones), then the horizontal 3:1
  blend, (sum + 8) >> 4 for even output columns and (sum + 7) >> 4 for odd ones. The neighbour
  beyond the edge is the edge sample itself: the decoder's context rows at the top and bottom
  repeat the first and last real rows, and its first/last-column cases weigh the edge 4/4.
  """
  p = jnp.pad(c, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  mid = 3 * p[:, 1:-1]
  rows = jnp.stack([mid + p[:, :-2], mid + p[:, 2:]], axis=2)  # (B, h, 2, w + 2, K)
  rows = rows.reshape(rows.shape[0], -1, *rows.shape[3:])         # (B, 2h, w + 2, K)
  mid = 3 * rows[:, :, 1:-1]
  out = jnp.stack([(mid + rows[:, :, :-2] + 8) >> 4, (mid + rows[:, :, 2:] + 7) >> 4], axis=3)
  return out.reshape(out.shape[0], out.shape[1], -1, out.shape[-1])


def _round_half_away(v):
  return jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)


def _code_planes_float(planes, table):
  """Float32 codec of `_code_planes`: the DCT as two matmuls per block.

  The matrix is sqrt(8) D, whose first row is exactly 1, so the DC term is the block's exact
  integer sum, as in libjpeg's islow DCT: flat areas put it exactly half way between two
  quantisation steps often (sum = 4 q (2k + 1)), and an orthonormal D's inexact 1/sqrt(8) would
  break those ties either way at random, shifting whole blocks by q/8 levels. The matmuls run at
  HIGHEST precision: the default on GPUs (TF32) keeps 10 mantissa bits, far coarser than the
  quantisation boundaries this must land on the right side of.
  """
  b, h, w, k = planes.shape
  blocks = planes.astype(jnp.float32).reshape(b, h // 8, 8, w // 8, 8, k) - 128.0
  s = jnp.asarray(_DCT_SCALED)
  coef8 = jnp.einsum("ij,bmjnlk,ol->bminok", s, blocks, s, precision="highest")  # 8x orthonormal
  q = table.astype(jnp.float32)[:, None, :, None, :, None]
  deq = _round_half_away(coef8 / (8.0 * q)) * q
  rec = jnp.einsum("ji,bmjnlk,lo->bminok", s, deq, s, precision="highest") / 8.0
  # jidctint.c's final DESCALE rounds half up; range_limit clamps to 8 bits.
  rec = jnp.clip(jnp.floor(rec + 128.0 + 0.5), 0, 255).astype(jnp.int32)
  return rec.reshape(b, h, w, k)


# jfdctint.c / jidctint.c constants: FIX(c) with CONST_BITS = 13; PASS1_BITS = 2.
_F = {c: int(c * (1 << 13) + 0.5) for c in (
    0.298631336, 0.390180644, 0.541196100, 0.765366865, 0.899976223, 1.175875602, 1.501321110,
    1.847759065, 1.961570560, 2.053119869, 2.562915447, 3.072711026)}


def _descale(x, n: int):
  return (x + (1 << (n - 1))) >> n


def _islow_fdct_1d(d, first_pass: bool):
  """jfdctint.c jpeg_fdct_islow, one pass: 8 int32 arrays (the samples along the transformed
  axis) -> 8 outputs, scaled up by 8 overall after both passes (hence the 8 q divisors)."""
  tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
  tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
  tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
  tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
  tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
  o = [None] * 8
  if first_pass:
    o[0], o[4], s = (tmp10 + tmp11) << 2, (tmp10 - tmp11) << 2, 13 - 2
  else:
    o[0], o[4], s = _descale(tmp10 + tmp11, 2), _descale(tmp10 - tmp11, 2), 13 + 2
  z1 = (tmp12 + tmp13) * _F[0.541196100]
  o[2] = _descale(z1 + tmp13 * _F[0.765366865], s)
  o[6] = _descale(z1 - tmp12 * _F[1.847759065], s)
  z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
  z5 = (z3 + z4) * _F[1.175875602]
  tmp4, tmp5 = tmp4 * _F[0.298631336], tmp5 * _F[2.053119869]
  tmp6, tmp7 = tmp6 * _F[3.072711026], tmp7 * _F[1.501321110]
  z1, z2 = -z1 * _F[0.899976223], -z2 * _F[2.562915447]
  z3, z4 = -z3 * _F[1.961570560] + z5, -z4 * _F[0.390180644] + z5
  o[7] = _descale(tmp4 + z1 + z3, s)
  o[5] = _descale(tmp5 + z2 + z4, s)
  o[3] = _descale(tmp6 + z2 + z3, s)
  o[1] = _descale(tmp7 + z1 + z4, s)
  return o


def _islow_idct_1d(i, first_pass: bool):
  """jidctint.c jpeg_idct_islow, one pass (its all-zero-AC shortcuts give the same numbers)."""
  z1 = (i[2] + i[6]) * _F[0.541196100]
  tmp2, tmp3 = z1 - i[6] * _F[1.847759065], z1 + i[2] * _F[0.765366865]
  tmp0, tmp1 = (i[0] + i[4]) << 13, (i[0] - i[4]) << 13
  tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
  tmp0, tmp1, tmp2, tmp3 = i[7], i[5], i[3], i[1]
  z1, z2, z3, z4 = tmp0 + tmp3, tmp1 + tmp2, tmp0 + tmp2, tmp1 + tmp3
  z5 = (z3 + z4) * _F[1.175875602]
  tmp0, tmp1 = tmp0 * _F[0.298631336], tmp1 * _F[2.053119869]
  tmp2, tmp3 = tmp2 * _F[3.072711026], tmp3 * _F[1.501321110]
  z1, z2 = -z1 * _F[0.899976223], -z2 * _F[2.562915447]
  z3, z4 = -z3 * _F[1.961570560] + z5, -z4 * _F[0.390180644] + z5
  tmp0, tmp1, tmp2, tmp3 = tmp0 + z1 + z3, tmp1 + z2 + z4, tmp2 + z2 + z3, tmp3 + z1 + z4
  # The second pass also removes the 8x scale (3 more bits) of the first.
  s = 13 - 2 if first_pass else 13 + 2 + 3
  return [_descale(v, s) for v in (tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
                                    tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3)]


def _code_planes_islow(planes, table):
  """Integer codec of `_code_planes`: libjpeg's default JDCT_ISLOW, bit for bit, in int32.

  The forward transform works on rows then columns, the inverse on columns then rows, as the C
  code does (the order changes the roundings). Intermediates stay within 32 bits, as libjpeg's
  own comments require of them.
  """
  b, h, w, k = planes.shape
  x = planes.astype(jnp.int32).reshape(b, h // 8, 8, w // 8, 8, k) - 128  # rows: axis 2, cols: 4
  x = jnp.stack(_islow_fdct_1d([x[:, :, :, :, j] for j in range(8)], True), axis=4)
  x = jnp.stack(_islow_fdct_1d([x[:, :, j] for j in range(8)], False), axis=2)
  q = table.astype(jnp.int32)[:, None, :, None, :, None]
  # jcdctmgr.c forward_DCT: divide by 8 q, rounding half away from zero.
  quant = jnp.sign(x) * ((jnp.abs(x) + 4 * q) // (8 * q))
  y = quant * q
  y = jnp.stack(_islow_idct_1d([y[:, :, j] for j in range(8)], True), axis=2)
  y = jnp.stack(_islow_idct_1d([y[:, :, :, :, j] for j in range(8)], False), axis=4)
  return jnp.clip(y + 128, 0, 255).reshape(b, h, w, k)


def _code_planes(planes, table, dct: str):
  """(B, H, W, K) int32 samples (H, W multiples of 8), (B, 8, 8) table -> decoded int32 samples.

  Level shift, DCT, quantise, dequantise, inverse DCT, level shift back, round and clamp: every
  8x8 block of every plane, each batch row with its own table.
  """
  if dct == "islow":
    return _code_planes_islow(planes, table)
  return _code_planes_float(planes, table)


def _pad_edge(x, rows: int, cols: int):
  """Replicate the last row/column of (B, H, W, K) until it is (B, rows, cols, K)."""
  return jnp.pad(x, ((0, 0), (0, rows - x.shape[1]), (0, cols - x.shape[2]), (0, 0)),
                 mode="edge")


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def jpeg(x, quality, *, chroma_subsampling: bool = True, dct: str = "float") -> jax.Array:
  """JPEG-compress and decode a batch, each sample at its own quality, as libjpeg/PIL would.

  Args:
    x: (B, H, W, C) float in [0, 1]; C = 3 (RGB, coded as YCbCr) or 1 (grayscale JPEG). Taken as
      8-bit: round(255 x), clipped.
    quality: (B,) int or float in [1, 100], or a scalar for all samples; may be traced (one
      compiled program serves every quality). Rounded to an integer, as libjpeg only takes those.
    chroma_subsampling: 4:2:0 (PIL's default, `subsampling=2`) when True, 4:4:4 when False.
      Ignored for grayscale.
    dct: "float" (orthonormal float32 DCT as matmuls; a few pixels differ from libjpeg's by a few
      levels) or "islow" (libjpeg's integer DCT in int32: bit-exact with PIL).

  Returns:
    (B, H, W, C) float32 in [0, 1], multiples of 1/255: the decoded image.
  """
  x = jax.lax.stop_gradient(jnp.asarray(x))
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"jpeg expects (B, H, W, 1 or 3) images, got shape {x.shape}")
  if dct not in ("float", "islow"):
    raise ValueError(f"jpeg: dct must be 'float' or 'islow', got {dct!r}")
  bsz, h, w, c = x.shape
  quality = jnp.broadcast_to(jnp.asarray(quality), (bsz,))
  luma_table, chroma_table = quality_scaled_tables(quality)
  x8 = jnp.clip(jnp.round(x.astype(jnp.float32) * 255.0), 0, 255).astype(jnp.int32)

  if c == 1:
    # One component, MCU = one 8x8 block: replicate to whole blocks.
    y = _code_planes(_pad_edge(x8, _round_up(h, 8), _round_up(w, 8)), luma_table, dct)
    return y[:, :h, :w].astype(jnp.float32) / 255.0

  ycc = rgb_to_ycbcr(x8)
  if not chroma_subsampling:
    planes = _pad_edge(ycc, _round_up(h, 8), _round_up(w, 8))
    y = _code_planes(planes[..., :1], luma_table, dct)
    cbcr = _code_planes(planes[..., 1:], chroma_table, dct)
    ycc = jnp.concatenate([y, cbcr], axis=-1)[:, :h, :w]
    return ycbcr_to_rgb(ycc).astype(jnp.float32) / 255.0

  # 4:2:0: an MCU is 16x16 pixels (four luma blocks, one block of each chroma). Luma is replicated
  # to whole MCUs (libjpeg codes blocks past ceil(W / 8) as dummies, never seen after the crop).
  hp, wp = _round_up(h, 16), _round_up(w, 16)
  y = _code_planes(_pad_edge(ycc[..., :1], hp, wp), luma_table, dct)[:, :h, :w]
  # Chroma: replicate right to whole MCUs and down to an even height, downsample, then replicate
  # the last chroma row down to whole blocks (jcprepct.c's two expand_bottom_edge calls).
  ch, cw = -(-h // 2), -(-w // 2)  # the decoder's downsampled_height/width
  cbcr = h2v2_downsample(_pad_edge(ycc[..., 1:], 2 * ch, wp))
  cbcr = _code_planes(_pad_edge(cbcr, hp // 2, wp // 2), chroma_table, dct)
  cbcr = cbcr[:, :ch, :cw]
  if cw > 2:
    cbcr = h2v2_fancy_upsample(cbcr)
  else:
    # jdsample.c jinit_upsampler: fancy only when downsampled_width > 2, else h2v2_upsample
    # (each chroma sample repeated 2x2).
    cbcr = jnp.repeat(jnp.repeat(cbcr, 2, axis=1), 2, axis=2)
  cbcr = cbcr[:, :h, :w]
  return ycbcr_to_rgb(jnp.concatenate([y, cbcr], axis=-1)).astype(jnp.float32) / 255.0
