"""PSNR/SSIM as SR papers compute them.

The protocol (EDSR/RCAN MATLAB scripts): both images quantised to 8 bits, converted to the Y channel
of BT.601 YCbCr (MATLAB `rgb2ycbcr`, Y not rounded; gray images use their gray values), `shave`
pixels (= scale) removed at each border, PSNR with peak 255 per image then averaged over images, and
SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region (dm-pix's `ssim`).

All functions take NHWC batches in [0, 1] and return one value per image, shape (N,), so they can
run inside jit for periodic evaluation and be averaged on the host.
"""

from __future__ import annotations

import functools

import dm_pix as pix
import jax.numpy as jnp
import numpy as np

from jsr.ops import color


def quantize(x):
  """Round to the 8-bit grid, as saving to PNG and reading back does."""
  return jnp.clip(jnp.round(x * 255.0), 0.0, 255.0) / 255.0


def _prepare(sr, hr, shave: int, y_channel: bool, quantized: bool):
  if sr.shape != hr.shape:
    raise ValueError(f"metrics: sr and hr shapes differ: {sr.shape} vs {hr.shape}")
  if sr.ndim != 4:
    raise ValueError(f"metrics: expected NHWC batches, got shape {sr.shape}")
  sr, hr = sr.astype(jnp.float32), hr.astype(jnp.float32)
  if quantized:
    sr, hr = quantize(sr), quantize(hr)
  if y_channel:
    sr, hr = color.luma(sr), color.luma(hr)
  if shave:
    h, w = sr.shape[1:3]
    if h <= 2 * shave or w <= 2 * shave:
      raise ValueError(f"metrics: image {h}x{w} is too small to shave {shave} pixels per border")
    sr, hr = sr[:, shave:-shave, shave:-shave], hr[:, shave:-shave, shave:-shave]
  return sr, hr


def psnr(sr, hr, *, shave: int = 0, y_channel: bool = True, quantized: bool = True):
  """Per-image PSNR in dB, (N,). Peak is 1 (images in [0, 1]), i.e. 255 on the 8-bit scale."""
  sr, hr = _prepare(sr, hr, shave, y_channel, quantized)
  mse = jnp.mean((sr - hr) ** 2, axis=(1, 2, 3))
  return 10.0 * jnp.log10(1.0 / mse)


def ssim(sr, hr, *, shave: int = 0, y_channel: bool = True, quantized: bool = True):
  """Per-image SSIM (Wang et al. 2004; Gaussian 11x11, sigma 1.5, valid region), (N,)."""
  sr, hr = _prepare(sr, hr, shave, y_channel, quantized)
  if min(sr.shape[1:3]) < 11:
    raise ValueError(f"metrics: SSIM needs at least 11x11 pixels after shaving, got {sr.shape[1:3]}")
  return pix.ssim(sr, hr, max_val=1.0, k1=0.01, k2=0.03, filter_fn=_gaussian_filter_valid)


@functools.lru_cache(maxsize=64)
def _gaussian_valid_matrix(n: int, size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """(n - size + 1, n) matrix whose rows are the normalised 1-D Gaussian at each valid offset."""
  ax = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-0.5 * (ax / sigma) ** 2)
  g /= g.sum()
  m = np.zeros((n - size + 1, n), np.float32)
  for i in range(n - size + 1):
    m[i, i:i + size] = g
  return m


def _gaussian_filter_valid(z):
  """The SSIM window (11x11 Gaussian, sigma 1.5, 'valid') as two matmuls over H and W.

  Same values as dm-pix's default filter (a vmapped 1-D convolution), but it compiles to two dot
  products instead of convolutions that GPUs autotune per image shape: evaluation of a folder of
  differently sized images compiles much faster.
  """
  mh = jnp.asarray(_gaussian_valid_matrix(z.shape[-3]))
  mw = jnp.asarray(_gaussian_valid_matrix(z.shape[-2]))
  z = jnp.einsum("oh,...hwc->...owc", mh, z, precision="highest")
  return jnp.einsum("pw,...owc->...opc", mw, z, precision="highest")


def psnr_ssim(sr, hr, *, shave: int = 0, y_channel: bool = True, quantized: bool = True):
  """Both metrics at once: a dict of (N,) arrays."""
  return {"psnr": psnr(sr, hr, shave=shave, y_channel=y_channel, quantized=quantized),
          "ssim": ssim(sr, hr, shave=shave, y_channel=y_channel, quantized=quantized)}
