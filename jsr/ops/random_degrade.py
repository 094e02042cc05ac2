"""Per-sample random degradations in jnp, inside the jitted step: CSRGAN's blur -> downscale ->
noise -> bicubic back to the HR size, each sample with its own (sigma, scale, noise).

A batch has one shape, yet every sample is blurred, shrunk by its own non-integer factor and
enlarged back. Along each axis every stage is linear, so each is one (n, n) matrix per sample,
built on the device from the traced parameters:

  G(sigma)   Gaussian blur, a fixed 2r+1 support (r = ceil(3 sigma_max)), reflected borders
             (numpy/scipy "reflect"/"mirror": the edge pixel is not repeated); sigma -> 0 is the
             identity.
  D(f)       MATLAB imresize(., 1/f): out m = ceil(n/f), antialiased cubic, symmetric borders --
             jsr.ops.resize.resize_matrix with a traced scale. Rows >= m are zero (padding).
  U(f)       MATLAB imresize(., [n n]) of the m-pixel image: scale n/m; columns >= m unused.

lr_up = U (D G x G^T D^T + noise) U^T per axis pair, noise drawn on the m x m LR grid (the rows
beyond m never reach U). Two batched matmuls per stage, no host round trip, differentiable.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Enough taps for MATLAB's antialiased cubic at shrink factors up to this (width 4 f + 2).
MAX_FACTOR = 4.0


def _cubic(x):
  ax = jnp.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) +
          (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def resize_matrices(rows: int, cols: int, in_size, out_size, scale, max_factor: float = MAX_FACTOR):
  """(B, rows, cols) MATLAB `contributions()` matrices for traced (B,) in/out sizes and scales.

  The jnp twin of jsr.ops.resize.resize_matrix: row i < out_size holds output pixel i's weights
  over input pixels < in_size; other rows are zero.
  """
  s = jnp.asarray(scale, jnp.float32)[:, None]                 # (B, 1)
  n_in = jnp.asarray(in_size, jnp.int32)[:, None, None]
  x = jnp.arange(1, rows + 1, dtype=jnp.float32)[None, :]      # 1-based output pixels
  u = x / s + 0.5 * (1.0 - 1.0 / s)
  shrink = s < 1.0
  width = jnp.where(shrink, 4.0 / s, 4.0)
  left = jnp.floor(u - width / 2)
  taps = int(math.ceil(4.0 * max_factor)) + 2
  idx = left[..., None] + jnp.arange(taps, dtype=jnp.float32)  # (B, rows, taps), 1-based
  d = u[..., None] - idx
  ss = s[..., None]
  w = jnp.where(shrink[..., None], ss * _cubic(ss * d), _cubic(d))
  w = w / jnp.sum(w, axis=-1, keepdims=True)
  m = jnp.mod(idx.astype(jnp.int32) - 1, 2 * n_in)             # symmetric: 1..n, n..1, ...
  j = jnp.where(m < n_in, m, 2 * n_in - 1 - m)
  onehot = j[..., None] == jnp.arange(cols, dtype=jnp.int32)
  mat = jnp.sum(w[..., None] * onehot, axis=-2)
  valid = jnp.arange(rows)[None, :, None] < jnp.asarray(out_size, jnp.int32)[:, None, None]
  return jnp.where(valid, mat, 0.0)


def gaussian_matrices(n: int, sigma, radius: int):
  """(B, n, n) 1-D Gaussian blur of std sigma (B,), support 2 radius + 1, reflected borders."""
  sigma = jnp.asarray(sigma, jnp.float32)
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  safe = jnp.maximum(sigma, 1e-3)[:, None]
  k = jnp.exp(-0.5 * (t[None, :] / safe) ** 2)
  k = k / jnp.sum(k, axis=-1, keepdims=True)
  k = jnp.where(sigma[:, None] < 1e-3, (t == 0).astype(jnp.float32)[None, :], k)
  pos = jnp.arange(n)[:, None] + jnp.arange(-radius, radius + 1)[None, :]   # (n, taps)
  pos = jnp.abs(pos)
  pos = jnp.where(pos > n - 1, 2 * (n - 1) - pos, pos)
  onehot = (pos[..., None] == jnp.arange(n)).astype(jnp.float32)            # (n, taps, n)
  return jnp.einsum("bt,itj->bij", k, onehot)


def _apply(mh, mw, x):
  """Per-sample separable operator: (B, H', H), (B, W', W), (B, H, W, C) -> (B, H', W', C)."""
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("bih,bhwc->biwc", mh, x, precision=hi)
  return jnp.einsum("bjw,biwc->bijc", mw, x, precision=hi)


def sample_params(rng, batch: int, sigma_max: float, scale_min: float, scale_max: float,
                  noise_max: float) -> dict[str, jax.Array]:
  """Uniform draws per sample: sigma in [0, sigma_max] (HR pixels), scale in [scale_min,
  scale_max], noise std in [0, noise_max] (on the [0, 1] scale)."""
  k1, k2, k3 = jax.random.split(rng, 3)
  u = lambda k, lo, hi: jax.random.uniform(k, (batch,), jnp.float32, lo, hi)
  return {"sigma": u(k1, 0.0, sigma_max), "scale": u(k2, scale_min, scale_max),
          "noise": u(k3, 0.0, noise_max)}


def blur_down_noise_up(hr, params: dict[str, jax.Array], rng, sigma_max: float,
                       quantize: bool = True):
  """(B, H, W, C) in [0, 1] -> the degraded image at the HR size, per-sample `params`
  (sample_params). `quantize` rounds the LR and the output to 8 bits, as saved PNGs are."""
  b, h, w, c = hr.shape
  radius = int(math.ceil(3.0 * sigma_max)) if sigma_max > 0 else 0
  if radius >= min(h, w):
    raise ValueError(f"blur_down_noise_up: sigma_max={sigma_max} needs a {2 * radius + 1}-pixel "
                     f"kernel, larger than the {h}x{w} image")
  f = params["scale"]
  mh_lr = jnp.ceil(h / f - 1e-6).astype(jnp.int32)
  mw_lr = jnp.ceil(w / f - 1e-6).astype(jnp.int32)
  full = lambda n: jnp.full((b,), n, jnp.int32)
  dh = resize_matrices(h, h, full(h), mh_lr, 1.0 / f) @ gaussian_matrices(h, params["sigma"], radius)
  dw = resize_matrices(w, w, full(w), mw_lr, 1.0 / f) @ gaussian_matrices(w, params["sigma"], radius)
  lr = _apply(dh, dw, hr.astype(jnp.float32))
  lr = lr + params["noise"][:, None, None, None] * jax.random.normal(rng, lr.shape, lr.dtype)
  if quantize:
    lr = jnp.clip(jnp.round(lr * 255.0), 0.0, 255.0) / 255.0
  uh = resize_matrices(h, h, mh_lr, full(h), h / mh_lr.astype(jnp.float32))
  uw = resize_matrices(w, w, mw_lr, full(w), w / mw_lr.astype(jnp.float32))
  out = _apply(uh, uw, lr)
  if quantize:
    out = jnp.clip(jnp.round(out * 255.0), 0.0, 255.0) / 255.0
  return out
