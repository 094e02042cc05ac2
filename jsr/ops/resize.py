"""MATLAB-compatible `imresize` in jnp.

MATLAB's `imresize` (and every SR paper's LR synthesis) differs from `jax.image.resize` in three ways:
the cubic kernel uses a = -0.5, downscaling widens the kernel by 1/scale (antialiasing), and the
border is handled by mirroring the input (symmetric, the edge pixel repeated). We follow MATLAB's
`contributions()` exactly and turn it into one dense (out, in) matrix per axis, built once on the
host for each (in size, out size, scale, kernel) and applied with two matmuls. Dense matrices are
the fastest form on accelerators for the patch sizes SR trains on, and keep the op differentiable
and jit-able (the self-supervised loss downsamples the network's output inside the train step).

Images are (..., H, W, C) float arrays; values are not clipped or rounded here.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
  # Keys' cubic convolution kernel with a = -0.5, as in MATLAB.
  ax = np.abs(x)
  ax2, ax3 = ax**2, ax**3
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) +
          (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def _box(x: np.ndarray) -> np.ndarray:
  # MATLAB: (-0.5 <= x) & (x < 0.5).
  return ((-0.5 <= x) & (x < 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
  return (x + 1) * ((-1 <= x) & (x < 0)) + (1 - x) * ((0 <= x) & (x <= 1))


def _lanczos(a: int) -> Callable[[np.ndarray], np.ndarray]:
  def kernel(x: np.ndarray) -> np.ndarray:
    # MATLAB: (a*sin(pi*x).*sin(pi*x/a) + eps) ./ ((pi^2*x.^2/a) + eps), zero outside |x| < a.
    eps = np.finfo(np.float64).eps
    out = (a * np.sin(np.pi * x) * np.sin(np.pi * x / a) + eps) / (np.pi**2 * x**2 / a + eps)
    return out * (np.abs(x) < a)
  return kernel


# name -> (kernel function, kernel width), MATLAB's names and widths.
KERNELS = {
    "cubic": (_cubic, 4.0),
    "bicubic": (_cubic, 4.0),
    "box": (_box, 1.0),
    "nearest": (_box, 1.0),
    "triangle": (_triangle, 2.0),
    "bilinear": (_triangle, 2.0),
    "linear": (_triangle, 2.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
}


@functools.lru_cache(maxsize=256)
def resize_matrix(in_size: int, out_size: int, scale: float, kernel: str = "cubic",
                  antialias: bool = True) -> np.ndarray:
  """The (out_size, in_size) float32 matrix of MATLAB's `contributions()` along one axis.

  `scale` is out/in as MATLAB uses it (it need not equal out_size / in_size exactly when the
  caller gave a scale factor and the size was rounded up).
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"imresize: sizes must be positive, got in={in_size}, out={out_size}")
  if kernel not in KERNELS:
    raise ValueError(f"imresize: unknown kernel {kernel!r}; choose from {sorted(KERNELS)}")
  fn, width = KERNELS[kernel]
  if scale < 1 and antialias:
    h = lambda x: scale * fn(scale * x)
    width = width / scale
  else:
    h = fn
  # Output pixel x (1-based) maps to input coordinate u (1-based), MATLAB's convention.
  x = np.arange(1, out_size + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(u - width / 2)
  taps = int(math.ceil(width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
  weights = h(u[:, None] - indices)
  weights = weights / np.sum(weights, axis=1, keepdims=True)
  # Symmetric (mirror) padding: index sequence 1..n, n..1 repeated.
  aux = np.concatenate([np.arange(in_size), np.arange(in_size)[::-1]])
  idx = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_size)]
  mat = np.zeros((out_size, in_size), np.float64)
  np.add.at(mat, (np.repeat(np.arange(out_size), taps), idx.ravel()), weights.ravel())
  return mat.astype(np.float32)


def output_size(in_size: int, scale: float) -> int:
  # MATLAB: ceil(scale * in_size).
  return int(math.ceil(scale * in_size - 1e-9))


def imresize(x, scale: float | Sequence[float] | None = None,
             out_shape: Sequence[int] | None = None, kernel: str = "cubic",
             antialias: bool = True, precision: str | None = "highest",
             quantize: bool = False):
  """MATLAB `imresize(x, scale)` or `imresize(x, [h, w])` on (..., H, W, C) arrays.

  Args:
    x: array of shape (..., H, W, C), any float dtype; batch dims are optional.
    scale: a factor (or (sh, sw)); output size is ceil(scale * input size) as in MATLAB.
    out_shape: (h, w) instead of `scale`; the scale is then out / in along each axis. Both may
      be given (as in ZSSR's reference imresize): `scale` then sets the kernel and the sampling
      grid, `out_shape` the size, e.g. a 9-px father's son of 5 px (ceil(9 / 2)) upscaled by 2
      back to 9 px, not 10.
    kernel: "cubic" (default, a = -0.5), "box", "triangle"/"bilinear", "lanczos2", "lanczos3".
    antialias: widen the kernel when downscaling (MATLAB's default).
    precision: matmul precision; "highest" keeps float32 exact on GPUs (TF32 otherwise).
    quantize: emulate MATLAB on uint8 images: the input is taken as the 8-bit image
      round(255 x), and each axis pass is rounded to 8 bits (half away from zero) and clipped, as
      MATLAB's uint8 path does. This is how every SR paper's LR inputs were made; it is not
      differentiable (use it for data, not in losses).
  Returns:
    The resized array, (..., h, w, C), in x's dtype (computed in at least float32).
  """
  if x.ndim < 3:
    raise ValueError(f"imresize expects (..., H, W, C), got shape {x.shape}")
  in_h, in_w = x.shape[-3], x.shape[-2]
  if scale is None and out_shape is None:
    raise ValueError("imresize: give scale, out_shape or both")
  if scale is not None:
    sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else (float(s) for s in scale)
    if sh <= 0 or sw <= 0:
      raise ValueError(f"imresize: scale must be positive, got {scale}")
  if out_shape is not None:
    out_h, out_w = (int(s) for s in out_shape)
    if out_h < 1 or out_w < 1:
      raise ValueError(f"imresize: out_shape must be positive, got {tuple(out_shape)}")
    if scale is None:
      sh, sw = out_h / in_h, out_w / in_w
  else:
    out_h, out_w = output_size(in_h, sh), output_size(in_w, sw)
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  x = x.astype(dtype)
  mh = jnp.asarray(resize_matrix(in_h, out_h, sh, kernel, antialias), dtype)
  mw = jnp.asarray(resize_matrix(in_w, out_w, sw, kernel, antialias), dtype)
  # MATLAB resizes the axis with the smaller scale first; in exact arithmetic the order does
  # not matter, and doing the shrinking axis first also costs fewer FLOPs.
  q = lambda v: v
  if quantize:
    # Work on the 0..255 integers as MATLAB does: with bicubic x2 weights (multiples of 1/256) a
    # pass often lands exactly on k + 0.5, which MATLAB rounds up. On the [0, 1] scale v / 255 is
    # inexact (XLA divides by multiplying with the reciprocal), so such ties would round either way.
    x = jnp.round(x * 255.0)
    q = lambda v: jnp.floor(jnp.clip(v, 0.0, 255.0) + 0.5)
  if sh <= sw:
    x = q(jnp.einsum("oh,...hwc->...owc", mh, x, precision=precision))
    x = q(jnp.einsum("pw,...owc->...opc", mw, x, precision=precision))
  else:
    x = q(jnp.einsum("pw,...hwc->...hpc", mw, x, precision=precision))
    x = q(jnp.einsum("oh,...hpc->...opc", mh, x, precision=precision))
  return x / 255.0 if quantize else x
