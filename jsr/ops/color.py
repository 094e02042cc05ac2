"""Colour conversions as the SR evaluation scripts do them (MATLAB `rgb2ycbcr`, BT.601)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# MATLAB rgb2ycbcr for double images in [0, 1]: Y in [16, 235] / 255. numpy constants: a jnp array
# at import would start the XLA backend before jax.distributed.initialize() can run.
_RGB_TO_YCBCR = np.array([[65.481, -37.797, 112.0],
                          [128.553, -74.203, -93.786],
                          [24.966, 112.0, -18.214]], np.float32) / np.float32(255.0)
_OFFSET = np.array([16.0, 128.0, 128.0], np.float32) / np.float32(255.0)


def rgb_to_ycbcr(rgb):
  """(..., 3) RGB in [0, 1] -> (..., 3) YCbCr in [0, 1] (Y in [16, 235]/255), MATLAB's matrix."""
  if rgb.shape[-1] != 3:
    raise ValueError(f"rgb_to_ycbcr expects 3 channels, got shape {rgb.shape}")
  return jnp.einsum("...c,cd->...d", rgb, _RGB_TO_YCBCR.astype(rgb.dtype),
                    precision="highest") + _OFFSET.astype(rgb.dtype)


def ycbcr_to_rgb(ycbcr):
  """Inverse of `rgb_to_ycbcr` (MATLAB ycbcr2rgb for doubles)."""
  inv = jnp.linalg.inv(jnp.asarray(_RGB_TO_YCBCR)).astype(ycbcr.dtype)
  return jnp.einsum("...c,cd->...d", ycbcr - _OFFSET.astype(ycbcr.dtype), inv,
                    precision="highest")


def rgb_to_y(rgb):
  """(..., 3) RGB in [0, 1] -> (..., 1) luma Y in [16, 235]/255."""
  return rgb_to_ycbcr(rgb)[..., :1]


def luma(img):
  """Y of an RGB image, or the image itself when it is single-channel (gray)."""
  if img.shape[-1] == 1:
    return img
  return rgb_to_y(img)
