"""Blur kernels and the classical degradation F_D(HR) = downsample_s(HR * k) + n.

Kernels are (k, k) float32 arrays that sum to one. Two downsampling conventions exist in the
literature and both are here:
  * "direct": blur with k, then keep every s-th pixel (SRMD, KernelGAN, USRNet). The sampling phase
    is `offset` (0 keeps the top-left pixel of every s x s cell).
  * "bicubic": blur with k (skipped when k is None), then MATLAB bicubic downscaling (the "bicubic
    degradation" of EDSR/RCAN when k is None).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jsr.ops.resize import imresize


def gaussian_kernel(size: int, sigma1: float, sigma2: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
  """Isotropic (sigma2 None) or anisotropic Gaussian kernel, normalised to sum 1.

  The covariance is R(theta) diag(sigma1^2, sigma2^2) R(theta)^T, centred on the middle pixel
  (odd sizes) or between the two middle pixels (even sizes).
  """
  if size < 1:
    raise ValueError(f"gaussian_kernel: size must be >= 1, got {size}")
  if sigma1 <= 0 or (sigma2 is not None and sigma2 <= 0):
    raise ValueError(f"gaussian_kernel: sigmas must be > 0, got {sigma1}, {sigma2}")
  sigma2 = sigma1 if sigma2 is None else sigma2
  c, s = math.cos(theta), math.sin(theta)
  rot = np.array([[c, -s], [s, c]])
  cov = rot @ np.diag([sigma1**2, sigma2**2]) @ rot.T
  inv = np.linalg.inv(cov)
  ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  yy, xx = np.meshgrid(ax, ax, indexing="ij")
  pts = np.stack([xx, yy], axis=-1)
  k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
  return (k / k.sum()).astype(np.float32)


def load_kernel(path: str | os.PathLike) -> np.ndarray:
  """A kernel from a .npy file: 2-D, finite, non-negative sum; normalised to sum 1."""
  try:
    k = np.load(path)
  except Exception as e:  # noqa: BLE001 - re-raised with the file named.
    raise ValueError(f"load_kernel: cannot read {path}: {e}") from e
  if k.ndim != 2 or not np.all(np.isfinite(k)) or k.sum() <= 0:
    raise ValueError(f"load_kernel: {path} must hold a finite 2-D kernel with a positive sum, "
                     f"got shape {k.shape}")
  return (k / k.sum()).astype(np.float32)


def kernel_from_config(deg) -> np.ndarray | None:
  """The blur kernel a `config.degradation` block describes, or None for plain MATLAB bicubic.

  Keys: kernel ("bicubic" | "gaussian" | "file"), kernel_size, sigma, sigma2 (0: isotropic),
  theta, kernel_file.
  """
  if deg.kernel == "bicubic":
    return None
  if deg.kernel == "gaussian":
    return gaussian_kernel(deg.kernel_size, deg.sigma, deg.sigma2 or None, deg.theta)
  if deg.kernel == "file":
    return load_kernel(deg.kernel_file)
  raise ValueError(f"config.degradation.kernel must be bicubic, gaussian or file, "
                   f"got {deg.kernel!r}")


def degradation_fn(deg, scale: int):
  """The jnp map hr -> down_s(hr * k) a `config.degradation` block and scale describe: MATLAB
  bicubic for kernel "bicubic", else the kernel followed by `deg.downsample`. Methods use it for
  what their losses and back-projections assume."""
  kernel = kernel_from_config(deg)
  mode = "bicubic" if kernel is None else deg.downsample
  return lambda x: degrade(x, scale, kernel=kernel, mode=mode)


def blur(x, kernel, padding: str = "reflect"):
  """Depthwise convolution of (N, H, W, C) images with one (k, k) kernel, same size out.

  Borders are padded by `padding` ("reflect", "symmetric", "edge" or "constant"). The kernel is
  applied as a correlation with the flipped kernel, i.e. a true convolution.
  """
  kernel = jnp.asarray(kernel, x.dtype)
  kh, kw = kernel.shape
  pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
  xp = jnp.pad(x, pads, mode=padding)
  c = x.shape[-1]
  # HWIO with feature_group_count=C: one copy of the (flipped) kernel per channel.
  w = jnp.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(
      xp, w, window_strides=(1, 1), padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
      precision=jax.lax.Precision.HIGHEST)


def downsample(x, scale: int, offset: int = 0):
  """Keep every `scale`-th pixel starting at `offset` (direct subsampling)."""
  return x[:, offset::scale, offset::scale, :]


def degrade(hr, scale: int, kernel=None, mode: str = "bicubic", noise_sigma: float = 0.0,
            rng=None, offset: int = 0, padding: str = "reflect"):
  """F_D(HR) = down_s(HR * k) (+ Gaussian noise of std `noise_sigma` on the [0, 1] scale).

  Args:
    hr: (N, H, W, C) images.
    scale: integer downscaling factor.
    kernel: (k, k) blur kernel or None (no blur; with mode="bicubic" this is MATLAB's bicubic).
    mode: "bicubic" (MATLAB imresize after the blur) or "direct" (s-fold subsampling).
    noise_sigma: std of additive white Gaussian noise; needs `rng` when > 0.
  """
  x = hr if kernel is None else blur(hr, kernel, padding)
  if mode == "bicubic":
    lr = imresize(x, 1.0 / scale)
  elif mode == "direct":
    lr = downsample(x, scale, offset)
  else:
    raise ValueError(f"degrade: mode must be 'bicubic' or 'direct', got {mode!r}")
  if noise_sigma > 0:
    if rng is None:
      raise ValueError("degrade: noise_sigma > 0 needs an rng")
    lr = lr + noise_sigma * jax.random.normal(rng, lr.shape, lr.dtype)
  return lr

