"""NIQE (Mittal, Soundararajan & Bovik 2013, "Making a completely blind image quality analyzer").

NIQE scores an image without a reference: it fits a multivariate Gaussian (MVG) to natural-scene
statistics of the image's 96x96 blocks and measures how far that Gaussian lies from one fitted once
to a corpus of pristine photos. Lower is more natural. SR papers report it next to PSNR/SSIM for
GAN methods, almost always as the MATLAB release (`niqe_release.zip`, `computequality.m`) or
BasicSR's port of it computes it, so this module reproduces that code, step for step:

1. The image is taken as 8 bits: uint8 as is, float in [0, 1] rounded to round(255 x). With
   `y_channel=True` an RGB image becomes the Y of BT.601 YCbCr as MATLAB's `rgb2ycbcr` gives it for
   uint8 (rounded to integers; BasicSR's `calculate_niqe` rounds Y for the same reason), a gray
   image keeps its values. `y_channel=False` uses MATLAB's `rgb2gray`, which is what
   `computequality.m` itself applies to colour input.
2. `crop_border` pixels go from each side, then the image is cut down to whole 96x96 blocks
   (top-left kept, no overlap, as the release does).
3. At two scales (the image, then MATLAB's bicubic `imresize` by 1/2 with antialiasing) the MSCN
   coefficients (x - mu) / (sigma + 1) are formed with a 7x7 Gaussian window (sigma 7/6,
   replicated borders), and every block (96 px, then 48 px) gives 18 features: an asymmetric
   generalized Gaussian (AGGD) fit of the coefficients (shape, mean of the two scales) and of the
   products of horizontal, vertical and both diagonal neighbours (shape, mean, left and right
   scale). The AGGD shape is found, as in the release, by looking up the moment ratio in a table
   over shape 0.2:0.001:10 (Lasmar et al. 2009's estimator).
4. The block features (N, 36) give a mean (NaN-aware) and a covariance over the blocks without
   NaNs (MATLAB `nanmean` / `nancov`; a flat block has no negative coefficients, so its left scale
   is NaN), and NIQE = sqrt((mu_p - mu)^T pinv((C_p + C) / 2) (mu_p - mu)).

The pristine model (mu_p, C_p: the release's `modelparameters.mat`; and the 7x7 window of
`computequality.m`) ships in `jsr/assets/niqe_pris_params.npz` as BasicSR distributes it (see
jsr/assets/NOTICE.md).

This is a host-side evaluation metric (numpy/scipy, float64 like MATLAB), not a jnp op: it is
neither differentiable nor meant for the train step. The downscale uses the contribution matrix
of `jsr.ops.resize` (MATLAB's `imresize`), applied here in float64. Golden value: Set14
baboon.png, Y channel, no crop, gives 5.7296 as MATLAB R2021a does (BasicSR's figure).

An image needs at least two whole blocks (96x192 or 192x96 pixels after the crop): the
covariance of one block's features is undefined (MATLAB's `nancov` takes the single row as a vector
and returns the variance of its 36 numbers, which is not a covariance; BasicSR gets NaNs), so
smaller images raise a ValueError.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import warnings
import zipfile
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage, special

from jsr.ops import resize

BLOCK_SIZE = 96      # the release's recommended block, the one the pristine model was fitted with
MIN_BLOCKS = 2       # a covariance needs two feature vectors
NUM_FEATURES = 36    # 18 per scale, two scales
PARAMS_FILE = "niqe_pris_params.npz"
# |x - mu| below this (8-bit scale; rounding noise is ~1e-13) is the exact zero of a flat area.
_ZERO_TOL = 1e-8

# MATLAB's rgb2gray: the first row of the inverse of the NTSC YIQ matrix.
_RGB_TO_GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621],
                                       [1.0, -0.272, -0.647],
                                       [1.0, -1.106, 1.703]]))[0]
# MATLAB rgb2ycbcr, Y row, for 0..255 values: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
_RGB_TO_Y = np.array([65.481, 128.553, 24.966]) / 255.0


# -- The pristine model ----------------------------------------------------------------------------

@functools.cache
def pristine_params() -> dict[str, np.ndarray]:
  """MATLAB's pristine model: {"mu": (36,), "cov": (36, 36), "window": (7, 7)}, read-only float64.

  Loaded once from the package data `jsr/assets/niqe_pris_params.npz` (see jsr/assets/NOTICE.md).
  """
  return load_params(importlib.resources.files("jsr").joinpath("assets", PARAMS_FILE))


def load_params(ref) -> dict[str, np.ndarray]:
  """Reads and checks a pristine-model .npz (a path or an importlib.resources Traversable).

  Raises FileNotFoundError or ValueError naming the file when it is missing or malformed.
  """
  try:
    with importlib.resources.as_file(ref) as path, np.load(path, allow_pickle=False) as data:
      raw = {k: np.array(data[k], np.float64)
             for k in ("mu_pris_param", "cov_pris_param", "gaussian_window")}
  except FileNotFoundError as e:
    raise FileNotFoundError(
        f"NIQE: pristine-model parameters {ref} not found; they ship with jsr as package data "
        "(pyproject.toml [tool.setuptools.package-data]): reinstall jsr") from e
  except (KeyError, ValueError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f"NIQE: cannot read the pristine-model parameters {ref}: {e}") from e
  params = {"mu": raw["mu_pris_param"].reshape(-1), "cov": raw["cov_pris_param"],
            "window": raw["gaussian_window"]}
  expected = {"mu": (NUM_FEATURES,), "cov": (NUM_FEATURES, NUM_FEATURES), "window": (7, 7)}
  for name, shape in expected.items():
    if params[name].shape != shape or not np.all(np.isfinite(params[name])):
      raise ValueError(f"NIQE: malformed pristine-model parameters {ref}: {name} has shape "
                       f"{params[name].shape} (expected {shape}) or non-finite values")
    params[name].setflags(write=False)  # Cached and shared: nobody may change it.
  g = params["window"].sum(axis=1)
  if not np.allclose(np.outer(g, g), params["window"], rtol=0, atol=1e-12):
    raise ValueError(f"NIQE: malformed pristine-model parameters {ref}: gaussian_window is not "
                     "a normalised separable (Gaussian) window")
  return params


@functools.cache
def _window_1d() -> np.ndarray:
  # The 7x7 window is outer(g, g) with sum(g) = 1, so its row sums are g.
  return pristine_params()["window"].sum(axis=1)


# -- Natural-scene statistics ----------------------------------------------------------------------

def mscn(img: np.ndarray) -> np.ndarray:
  """Mean-subtracted contrast-normalised coefficients of a 2-D 0..255 image (Eq. 1, C = 1).

  mu and sigma are local moments under the 7x7 Gaussian window with replicated borders (MATLAB
  `imfilter(..., 'replicate')`); sigma takes |E[x^2] - mu^2| as the release does. The window is
  applied as two 1-D passes (it is separable; `imfilter` does the same for separable kernels).

  Where x - mu is zero in exact arithmetic (a constant 7x7 neighbourhood: flat or clipped areas of
  8-bit images) floating point leaves +-1e-13, and its sign decides on which side of the AGGD fit
  the sample lands: a 2-D and a separable filter then disagree by 0.3-0.4 NIQE on Set14 face.png
  and Set5 head.png, and by 4e-4 on baboon. We set |x - mu| < 1e-8 (8-bit scale) to the exact 0, so
  the value no longer depends on summation order; it reproduces MATLAB's 5.7296 on baboon.
  """
  g = _window_1d()
  img = np.asarray(img, np.float64)
  smooth = lambda a: ndimage.correlate1d(ndimage.correlate1d(a, g, axis=1, mode="nearest"), g,
                                         axis=0, mode="nearest")
  mu = smooth(img)
  sigma = np.sqrt(np.abs(smooth(img * img) - mu * mu))
  centred = img - mu
  centred[np.abs(centred) < _ZERO_TOL] = 0.0
  return centred / (sigma + 1.0)


@functools.cache
def _shape_table() -> tuple[np.ndarray, np.ndarray]:
  # MATLAB's gam = 0.2:0.001:10 and the moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)).
  gam = np.linspace(0.2, 10.0, 9801)
  r_gam = special.gamma(2 / gam) ** 2 / (special.gamma(1 / gam) * special.gamma(3 / gam))
  return gam, r_gam


def _rms(v: np.ndarray) -> float:
  # sqrt(mean(v.^2)); NaN for an empty selection, as MATLAB's mean([]) is, without numpy's warning.
  return math.sqrt(np.mean(v * v)) if v.size else math.nan


def fit_aggd(x: np.ndarray) -> tuple[float, float, float]:
  """(alpha, beta_left, beta_right) of an asymmetric generalized Gaussian fitted to samples `x`.

  The moment-matching estimator of the release (`estimateaggdparam.m`): the ratio
  E|x|^2 / E[x^2], corrected for the left/right asymmetry, is looked up in a table of the shape
  alpha; the scales follow from the one-sided RMS values. Degenerate samples (no negative or no
  positive values) give NaN scales and alpha = 0.2, the table's first entry, as MATLAB's `min`
  over an all-NaN vector does.
  """
  x = np.asarray(x, np.float64).ravel()
  gam, r_gam = _shape_table()
  left, right = _rms(x[x < 0]), _rms(x[x > 0])
  with np.errstate(invalid="ignore", divide="ignore"):
    gammahat = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
  alpha = float(gam[np.argmin((r_gam - rhatnorm) ** 2)]) if np.isfinite(rhatnorm) else gam[0]
  k = math.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
  return alpha, left * k, right * k


def block_features(block: np.ndarray) -> np.ndarray:
  """The 18 features of one block of MSCN coefficients, in the release's order.

  [alpha, (beta_l + beta_r) / 2] of the coefficients, then for the products with the neighbour at
  circular shifts (0, 1), (1, 0), (1, 1), (-1, 1): [alpha, mean, beta_l, beta_r], where mean =
  (beta_r - beta_l) Gamma(2/alpha) / Gamma(1/alpha) (Eq. 8).
  """
  alpha, bl, br = fit_aggd(block)
  feats = [alpha, (bl + br) / 2]
  for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
    alpha, bl, br = fit_aggd(block * np.roll(block, shift, axis=(0, 1)))
    mean = (br - bl) * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    feats += [alpha, mean, bl, br]
  return np.array(feats)


def downscale_half(img: np.ndarray) -> np.ndarray:
  """MATLAB `imresize(img, 0.5)` of a 2-D float64 image with even sides: bicubic, antialiased.

  The contribution matrices of `jsr.ops.resize` (exact here: the weights are dyadic) applied on the
  host in float64, with no rounding, as MATLAB does for doubles.
  """
  h, w = img.shape
  mh = resize.resize_matrix(h, h // 2, 0.5, "cubic", True).astype(np.float64)
  mw = resize.resize_matrix(w, w // 2, 0.5, "cubic", True).astype(np.float64)
  return mh @ img @ mw.T


def features(img: np.ndarray, block_size: int = BLOCK_SIZE) -> np.ndarray:
  """(num_blocks, 36) features of a 2-D 0..255 image: 18 at full size, 18 at half size.

  The image is cut to whole blocks first (top-left kept); blocks are listed column by column as
  MATLAB's `blkproc` does (the order does not change the MVG fit).
  """
  img = np.asarray(img, np.float64)
  nh, nw = img.shape[0] // block_size, img.shape[1] // block_size
  if nh * nw < 1:
    raise ValueError(f"NIQE: a {img.shape[0]}x{img.shape[1]} image has no whole "
                     f"{block_size}x{block_size} block")
  img = img[:nh * block_size, :nw * block_size]
  per_scale = []
  for scale in (1, 2):
    coeffs = mscn(img)
    b = block_size // scale
    per_scale.append(np.array([block_features(coeffs[i * b:(i + 1) * b, j * b:(j + 1) * b])
                               for j in range(nw) for i in range(nh)]))
    if scale == 1:
      img = downscale_half(img)
  return np.concatenate(per_scale, axis=1)


def mvg_distance(feats: np.ndarray) -> float:
  """NIQE of a (num_blocks, 36) feature matrix against the pristine model (Eq. 10).

  NaN-aware mean over all blocks, covariance (N - 1 normalised) over the blocks without NaNs, as
  MATLAB's `nanmean` and `nancov` give; the pseudo-inverse uses MATLAB's `pinv` tolerance. NaN
  (with a warning) when fewer than two blocks are free of NaNs, e.g. a flat image.
  """
  params = pristine_params()
  complete = feats[~np.isnan(feats).any(axis=1)]
  if len(complete) < 2:
    warnings.warn(f"NIQE: only {len(complete)} of {len(feats)} blocks have finite features "
                  "(flat regions); the covariance is undefined, returning NaN", RuntimeWarning)
    return math.nan
  mu = np.nanmean(feats, axis=0)  # no all-NaN column: the complete rows have every feature
  cov = np.cov(complete, rowvar=False)
  m = (params["cov"] + cov) / 2
  inv = np.linalg.pinv(m, rcond=max(m.shape) * np.finfo(np.float64).eps)
  d = params["mu"] - mu
  return float(np.sqrt(d @ inv @ d))


# -- Images ----------------------------------------------------------------------------------------

def to_gray255(img: np.ndarray, *, y_channel: bool = True) -> np.ndarray:
  """An (H, W, C) or (H, W) image, uint8 or float in [0, 1], as the 2-D 0..255 image NIQE reads.

  Floats are quantised to 8 bits (round(255 x), clipped) like saving to PNG; colour becomes the
  rounded Y of MATLAB `rgb2ycbcr` (`y_channel=True`) or of MATLAB `rgb2gray` (False).
  """
  img = np.asarray(img)
  if img.ndim == 2:
    img = img[..., None]
  if img.ndim != 3 or img.shape[-1] not in (1, 3):
    raise ValueError(f"NIQE: expected one (H, W, 1|3) or (H, W) image, got shape {img.shape}")
  if img.dtype == np.uint8:
    img = img.astype(np.float64)
  elif np.issubdtype(img.dtype, np.floating):
    top = float(np.nanmax(img)) if img.size else 0.0
    if top > 1.5:
      raise ValueError(f"NIQE: float images must be in [0, 1], this one reaches {top:g}; pass "
                       "uint8 for 0..255 values")
    img = np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0)
  else:
    raise ValueError(f"NIQE: images must be uint8 or float in [0, 1], got dtype {img.dtype}")
  if img.shape[-1] == 1:
    return img[..., 0]
  gray = img @ (_RGB_TO_Y if y_channel else _RGB_TO_GRAY) + (16.0 if y_channel else 0.0)
  # MATLAB's double -> uint8 rounds half away from zero; the values here are positive.
  return np.floor(gray + 0.5)


def min_size(crop_border: int = 0) -> str:
  """The smallest image NIQE accepts, in words."""
  return (f"{BLOCK_SIZE + 2 * crop_border}x{MIN_BLOCKS * BLOCK_SIZE + 2 * crop_border} "
          f"(two {BLOCK_SIZE}x{BLOCK_SIZE} blocks after crop_border={crop_border})")


def niqe(img: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
  """NIQE of one image (lower is better), as MATLAB's niqe_release computes it.

  Args:
    img: (H, W, C) with C = 3 (RGB) or 1 (gray), or (H, W); uint8 in 0..255 or float in [0, 1]
      (floats are rounded to 8 bits first, as a saved PNG would be; a float image reaching past
      1.5 is refused as a likely 0..255 mix-up).
    crop_border: pixels removed from each side before the blocks are cut (SR papers often crop
      `scale` pixels; say which beside the number).
    y_channel: RGB to the Y of BT.601 YCbCr (the SR convention and BasicSR's default); False uses
      MATLAB's rgb2gray, as the NIQE release does for colour images. Gray images use their values.
  Returns:
    A Python float; NaN (with a warning) when fewer than two blocks have finite features.
  """
  if crop_border < 0:
    raise ValueError(f"NIQE: crop_border must be >= 0, got {crop_border}")
  gray = to_gray255(img, y_channel=y_channel)
  if crop_border:
    gray = gray[crop_border:-crop_border, crop_border:-crop_border]
  h, w = gray.shape
  if (h // BLOCK_SIZE) * (w // BLOCK_SIZE) < MIN_BLOCKS:
    raise ValueError(f"NIQE: image {img.shape[0]}x{img.shape[1]} is too small; it needs at least "
                     f"{min_size(crop_border)}")
  return mvg_distance(features(gray))


def niqe_batch(images: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray], *,
               crop_border: int = 0, y_channel: bool = True) -> np.ndarray:
  """NIQE of each image: an (N, H, W, C) batch or a sequence of (H, W, C) images -> (N,) float64."""
  return np.array([niqe(np.asarray(im), crop_border=crop_border, y_channel=y_channel)
                   for im in images], np.float64)
