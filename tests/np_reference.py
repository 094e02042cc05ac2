"""Independent numpy references for the image ops and metrics, written from their definitions.

Shared by the tests (test_ops, test_metrics, test_io_evaluate). Nothing here imports jsr: these are
what jsr's jnp code is measured against, so they must not reuse it.

- MATLAB `imresize` (imresize.m's `contributions()`: Keys cubic a = -0.5, kernel widened by 1/scale
  when shrinking, 'symmetric' borders with the edge pixel repeated, output size ceil(scale * in)),
  one output pixel at a time, and MATLAB's uint8 path (each axis pass rounded half away from zero
  and saturated to 0..255; the axis with the smaller scale first, rows first on a tie).
- Y of MATLAB `rgb2ycbcr` (ITU-R BT.601, studio swing) on 8-bit values.
- PSNR with peak 255, and SSIM of Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, valid region,
  K = (0.01, 0.03)).
"""

from __future__ import annotations

import math

import numpy as np


# -- MATLAB imresize -----------------------------------------------------------------------------

def kernel(name, x):
  ax = abs(x)
  if name == "cubic":
    if ax <= 1:
      return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
      return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0
  if name == "triangle":
    return max(0.0, 1 - ax)
  if name == "lanczos3":
    if x == 0:
      return 1.0
    return (3 * math.sin(math.pi * x) * math.sin(math.pi * x / 3) / (math.pi**2 * x**2)
            if ax < 3 else 0.0)
  raise ValueError(name)


WIDTH = {"cubic": 4.0, "triangle": 2.0, "lanczos3": 6.0}


def mirror(i, n):
  """0-based index i reflected into [0, n) with the edge pixel repeated (MATLAB 'symmetric')."""
  period = 2 * n
  i = i % period
  return i if i < n else period - 1 - i


def resize_weights(n, out_len, scale, name="cubic"):
  """(out_len, n) weights: row o holds output pixel o's normalised kernel taps, mirrored inside."""
  width = WIDTH[name]
  aa = scale < 1
  if aa:
    width = width / scale
  m = np.zeros((out_len, n))
  for o in range(out_len):
    center = (o + 0.5) / scale - 0.5  # 0-based input coordinate of output pixel o
    lo = math.floor(center - width / 2)
    taps = int(math.ceil(width)) + 2
    js = range(lo, lo + taps + 1)
    ws = np.array([scale * kernel(name, scale * (center - j)) if aa else kernel(name, center - j)
                   for j in js])
    ws /= ws.sum()
    for j, w in zip(js, ws):
      m[o, mirror(j, n)] += w
  return m


def _round_uint8(x):
  # MATLAB's double -> uint8: round half away from zero, saturate (values here are >= 0 once
  # clipped, so floor(x + 0.5) is that rounding).
  return np.floor(np.clip(x, 0.0, 255.0) + 0.5)


def imresize(img, out_h, out_w, sh, sw, name="cubic", uint8=False):
  """MATLAB imresize of (H, W, C) float64 to (out_h, out_w, C) with per-axis scales sh, sw.

  uint8=True: `img` holds 0..255 integers and each axis pass is rounded to uint8 as MATLAB does for
  uint8 images (the order of the passes then matters: the smaller scale first, rows on a tie).
  """
  img = np.asarray(img, np.float64)
  mh = resize_weights(img.shape[0], out_h, sh, name)
  mw = resize_weights(img.shape[1], out_w, sw, name)
  q = _round_uint8 if uint8 else (lambda v: v)
  rows = lambda v: q(np.einsum("oh,hwc->owc", mh, v))
  cols = lambda v: q(np.einsum("pw,hwc->hpc", mw, v))
  return cols(rows(img)) if sh <= sw else rows(cols(img))


# -- Colour and metrics --------------------------------------------------------------------------

def y255(rgb255):
  """Y of MATLAB rgb2ycbcr (BT.601) for 0..255 RGB values, on the 0..255 scale (not rounded)."""
  r, g, b = rgb255[..., 0], rgb255[..., 1], rgb255[..., 2]
  return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def psnr(a, b, peak=255.0):
  return 10 * math.log10(peak**2 / np.mean((np.asarray(a, np.float64) - b) ** 2))


def ssim(a, b, peak=255.0):
  """SSIM of two 2-D float64 images: Gaussian 11x11 (sigma 1.5), valid region, K=(0.01, 0.03)."""
  ax = np.arange(11) - 5
  g = np.exp(-(ax**2) / (2 * 1.5**2))
  win = np.outer(g, g)
  win /= win.sum()
  c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
  h, w = a.shape
  vals = []
  for i in range(h - 10):
    for j in range(w - 10):
      pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
      ma, mb = np.sum(win * pa), np.sum(win * pb)
      va = np.sum(win * pa * pa) - ma**2
      vb = np.sum(win * pb * pb) - mb**2
      cov = np.sum(win * pa * pb) - ma * mb
      vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
  return float(np.mean(vals))
