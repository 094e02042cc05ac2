"""Deep Image Prior's `Downsampler` (Ulyanov, Vedaldi, Lempitsky, CVPR 2018) in jnp.

DIP's super-resolution loss compares the LR input with `downsample(net(z))`, where the reference
(models/downsampler.py) downsamples with a fixed, separable Lanczos kernel applied as a stride-s
convolution: `Downsampler(factor=s, kernel_type="lanczos2", phase=0.5, preserve_size=True)`.

  * kernel: 4s taps per axis (kernel_width 4s + 1, one tap fewer at phase 1/2) at offsets
    (i + 0.5 - (2s + 1)) / s, i = 1..4s, i.e. +-0.5/s, +-1.5/s, ... +-(2s - 0.5)/s: a Lanczos-2
    window stretched by s, sampled between pixels, normalised to sum 1. The reference's 2-D kernel
    is the outer product of this 1-D one (its normalisation factors too);
  * border: replicate padding of (4s - s) / 2 = 1.5s pixels each side (preserve_size), then
    every s-th window, so an (sH, sW) image gives (H, W) for even s.

It is not MATLAB's imresize (jsr.ops.resize): that one's antialiased cubic kernel has its own
width and mirrors the border. As in jsr.ops.resize, each axis is one dense (out, in) matrix built
on the host (padding folded in) and applied with a matmul: exact, differentiable, jit-able.
Images are (..., H, W, C); values are not clipped.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jsr.ops import resize

# kernel_type -> Lanczos support a (taps = 2a * factor), the reference's names.
SUPPORTS = {"lanczos2": 2, "lanczos3": 3}


def kernel_1d(factor: int, kernel_type: str = "lanczos2") -> np.ndarray:
  """The reference's phase-1/2 Lanczos taps for one axis (2a * factor of them), summing to 1."""
  if kernel_type not in SUPPORTS:
    raise ValueError(f"downsampler: kernel_type must be one of {sorted(SUPPORTS)}, "
                     f"got {kernel_type!r}")
  a = SUPPORTS[kernel_type]
  n = 2 * a * factor
  # The reference's i + 0.5 - center with center = (n + 2) / 2, for i = 1..n.
  x = (np.arange(1, n + 1) + 0.5 - (n + 2) / 2.0) / factor
  # jsr.ops.resize's Lanczos is MATLAB's: the reference's formula times a, which the
  # normalisation removes; x is never 0 at phase 1/2, so MATLAB's eps terms are negligible.
  k = resize.KERNELS[kernel_type][0](x)
  return k / k.sum()


@functools.lru_cache(maxsize=256)
def downsample_matrix(in_size: int, factor: int, kernel_type: str = "lanczos2") -> np.ndarray:
  """(out, in) float32 matrix of one axis: replicate-pad, convolve with kernel_1d, stride."""
  k = kernel_1d(factor, kernel_type)
  n = len(k)
  pad = (n - factor) // 2  # The reference's preserve_size padding for an even kernel.
  out_size = (in_size + 2 * pad - n) // factor + 1
  if out_size < 1:
    raise ValueError(f"downsampler: {in_size} pixels are too few for x{factor}")
  m = np.zeros((out_size, in_size), np.float64)
  for o in range(out_size):
    src = np.clip(o * factor + np.arange(n) - pad, 0, in_size - 1)  # Replicate padding.
    np.add.at(m[o], src, k)
  return m.astype(np.float32)


def downsample(x, factor: int, kernel_type: str = "lanczos2"):
  """DIP's Downsampler on (..., H, W, C): (H, W) -> (H // factor, W // factor) for even factors."""
  if factor < 2 or factor % 2:
    # At odd factors the reference's integer padding shifts the grid and drops a pixel.
    raise ValueError(f"downsampler: factor must be even (2, 4, 8), got {factor}")
  h, w = x.shape[-3], x.shape[-2]
  mh = jnp.asarray(downsample_matrix(h, factor, kernel_type))
  mw = jnp.asarray(downsample_matrix(w, factor, kernel_type))
  y = jnp.einsum("oh,...hwc->...owc", mh, x.astype(jnp.float32))
  return jnp.einsum("pw,...owc->...opc", mw, y)
