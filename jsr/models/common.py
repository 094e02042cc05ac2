"""Pieces shared by the supervised SR families: pixel shuffle, upsamplers, mean shift, PReLU,
an exact transposed convolution in sub-pixel form, and the MATLAB-bicubic upsampling that
pre-upsampling networks (SRCNN, VDSR) and bicubic global residuals use.

Conventions for every model in `jsr/models`: NHWC float32 input in [0, 1], `dtype` is the
computation dtype (bfloat16 for mixed precision) while parameters stay float32, and outputs are
returned as float32 so losses and metrics never see a low-precision image.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jsr.ops.resize import imresize

Dtype = Any

# DIV2K training-set RGB mean, as in the EDSR/RCAN reference code (MeanShift).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

# He (MSRA) init, for the plain ReLU stacks whose papers use it (VDSR).
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

# PyTorch's default Conv2d weight init (kaiming_uniform with a = sqrt(5): U(+-1/sqrt(fan_in)),
# variance 1/(3 fan_in)), which the reference code of EDSR, RCAN, SRResNet, ESRGAN and most other
# PyTorch-born SR models trains with. Flax's default (lecun_normal, variance 1/fan_in) is 3x larger
# in variance: through EDSR-baseline's 16 unscaled residual blocks it starts with outputs ~25x
# too large (initial L1 1.6 instead of 0.25) and loses the first few thousand steps to shrinking
# them. Biases start at zero (PyTorch: U(+-1/sqrt(fan_in)); this makes no measurable difference).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def init_variables(model: nn.Module, rng, *args, **kwargs):
  """`model.init`, run op by op rather than under `jax.jit`.

  Jitting init makes XLA compile one inlined threefry per parameter, and that compile grows
  faster than the parameter count: RCAN x4's jitted init took 87 s on a 2-core CPU (the step
  itself compiles in 40 s) against 3.2 s op by op (scripts/bench_init.py); for EDSR-baseline
  both take ~2.5 s.
  Values are the same either way (threefry is deterministic); the forward pass init traces runs on
  the caller's small dummy input, op by op, which is cheap.
  """
  return model.init(rng, *args, **kwargs)


def conv(features: int, kernel_size: int, *, dtype: Dtype = jnp.float32, use_bias: bool = True,
         kernel_init: Callable | None = None, strides: int = 1, name: str | None = None) -> nn.Conv:
  """A square 'SAME' (zero-padded, k // 2) convolution with float32 params, PyTorch's padding and
  (unless `kernel_init` is given) PyTorch's default weight init."""
  return nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides), padding="SAME",
                 use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name,
                 kernel_init=kernel_init or torch_default)


def pixel_shuffle(x, r: int):
  """Depth-to-space with PyTorch's `nn.PixelShuffle` channel order, NHWC.

  Input channel `c * r * r + i * r + j` goes to output pixel `(h * r + i, w * r + j)`, channel `c`,
  so weights ported from PyTorch models keep their meaning.
  """
  n, h, w, crr = x.shape
  if crr % (r * r):
    raise ValueError(f"pixel_shuffle: {crr} channels are not divisible by r^2 = {r * r}")
  c = crr // (r * r)
  x = x.reshape(n, h, w, c, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # n, h, i, w, j, c
  return x.reshape(n, h * r, w * r, c)


def pixel_unshuffle(x, r: int):
  """Space-to-depth, the inverse of `pixel_shuffle` (PyTorch's `nn.PixelUnshuffle` order)."""
  n, hr, wr, c = x.shape
  if hr % r or wr % r:
    raise ValueError(f"pixel_unshuffle: size {hr}x{wr} is not divisible by {r}")
  x = x.reshape(n, hr // r, r, wr // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # n, h, w, c, i, j
  return x.reshape(n, hr // r, wr // r, c * r * r)


def bicubic_upsample(x, scale: int):
  """MATLAB-bicubic upsampling (jsr.ops.resize.imresize), computed and returned in float32."""
  return imresize(x.astype(jnp.float32), scale)


def shift_mean(x, sign: float, rgb_range: float = 1.0, mean=DIV2K_RGB_MEAN):
  """EDSR's MeanShift minus its frozen 1x1 conv: x + sign * rgb_range * mean (no parameters).

  Grayscale or other channel counts use the mean of the RGB means for every channel.
  """
  c = x.shape[-1]
  m = np.asarray(mean, np.float32) if c == len(mean) else np.full((c,), np.mean(mean), np.float32)
  return x + jnp.asarray(sign * rgb_range * m, x.dtype)


def scale_stages(scale: int) -> list[int]:
  """Pixel-shuffle stages for a scale: 2 -> [2], 3 -> [3], 4 -> [2, 2], 8 -> [2, 2, 2]."""
  if scale == 3:
    return [3]
  if scale >= 2 and scale & (scale - 1) == 0:
    return [2] * int(math.log2(scale))
  raise ValueError(f"unsupported scale {scale}: use 2, 3 or a power of two (4, 8)")


def pyramid_levels(scale: int) -> int:
  """Number of x2 levels of a Laplacian-pyramid model (2 -> 1, 4 -> 2, 8 -> 3)."""
  if scale >= 2 and scale & (scale - 1) == 0:
    return int(math.log2(scale))
  raise ValueError(f"pyramid models upsample by x2 per level: scale must be 2, 4 or 8, got {scale}")


class PReLU(nn.Module):
  """PReLU with PyTorch's defaults (one shared slope, initialised to 0.25); `channelwise` gives
  one slope per channel (PyTorch's `nn.PReLU(num_parameters=C)`)."""
  channelwise: bool = False
  init: float = 0.25

  @nn.compact
  def __call__(self, x):
    shape = (x.shape[-1],) if self.channelwise else ()
    a = self.param("negative_slope", nn.initializers.constant(self.init), shape, jnp.float32)
    return jnp.where(x >= 0, x, a.astype(x.dtype) * x)


def icnr(r: int, base: Callable = torch_default) -> Callable:
  """ICNR initialisation of a conv feeding `pixel_shuffle(., r)` (Aitken et al., "Checkerboard
  artifact free sub-pixel convolution", 2017): draw one kernel per output feature with `base`
  (at the fan-in of the conv) and repeat it for the feature's r^2 sub-pixel channels, so that
  conv + shuffle starts as conv + nearest-neighbour upsampling and the sub-pixel grid (the
  checkerboard of an undertrained upsampler) is absent at step 0 rather than trained away."""

  def init(key, shape, dtype=jnp.float32):
    *spatial, cin, cout = shape
    if cout % (r * r):
      raise ValueError(f"icnr: {cout} output channels are not divisible by r^2 = {r * r}")
    w = base(key, (*spatial, cin, cout // (r * r)), dtype)
    # pixel_shuffle reads channel c * r^2 + k for feature c: repeat each kernel r^2 times.
    return jnp.repeat(w, r * r, axis=-1)

  return init


class Upsampler(nn.Module):
  """EDSR's Upsampler: per stage a 3x3 conv to r^2 * features, pixel shuffle by r (x4 = two x2
  stages, x8 three), optionally followed by an activation (SRResNet: PReLU).

  `init_scheme="icnr"` starts each stage's conv with ICNR (see `icnr`); "default" is PyTorch's
  init."""
  features: int
  scale: int
  activation: str | None = None  # None, "relu" or "prelu"
  init_scheme: str = "default"  # "default" or "icnr"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.init_scheme not in ("default", "icnr"):
      raise ValueError(f"Upsampler: unknown init_scheme {self.init_scheme!r} "
                       "(expected 'default' or 'icnr')")
    for r in scale_stages(self.scale):
      kernel_init = icnr(r) if self.init_scheme == "icnr" else None
      x = pixel_shuffle(conv(r * r * self.features, 3, dtype=self.dtype,
                             kernel_init=kernel_init)(x), r)
      if self.activation == "relu":
        x = nn.relu(x)
      elif self.activation == "prelu":
        x = PReLU()(x)
      elif self.activation is not None:
        raise ValueError(f"Upsampler: unknown activation {self.activation!r}")
    return x


def _phase_taps(kernel_size: int, stride: int, padding: int):
  """Index tables turning a transposed conv into `stride` phases of an ordinary conv (one axis).

  A transposed conv (PyTorch semantics) computes out[o] = sum_i x[i] * w[o + p - i * s]. Writing
  o = q * s + r and i = q + t gives out[q * s + r] = sum_t x[q + t] * w[r + p - t * s]: for each
  phase r an ordinary correlation over the low-resolution grid with taps t. Returns the kernel
  index for (phase, tap), whether that tap exists, and the tap range [t_min, t_max].
  """
  k, s, p = kernel_size, stride, padding
  taps = [t for r in range(s) for t in range(-k, k + 1) if 0 <= r + p - t * s < k]
  t_min, t_max = min(taps), max(taps)
  n = t_max - t_min + 1
  index = np.zeros((s, n), np.int32)
  valid = np.zeros((s, n), bool)
  for r in range(s):
    for u in range(n):
      kk = r + p - (t_min + u) * s
      if 0 <= kk < k:
        index[r, u], valid[r, u] = kk, True
  return index, valid, t_min, t_max


def bilinear_kernel_init(key, shape, dtype=jnp.float32):
  """Bilinear-upsampling init for a (k, k, C, C) transposed-conv kernel: the bilinear filter on the
  channel diagonal (LapSRN's image branch; `get_upsample_filter` of its reference code)."""
  del key
  k, _, cin, cout = shape
  factor = (k + 1) // 2
  center = factor - 1 if k % 2 == 1 else factor - 0.5
  f1 = 1 - np.abs(np.arange(k) - center) / factor
  w = np.zeros(shape, np.float32)
  for c in range(min(cin, cout)):
    w[:, :, c, c] = np.outer(f1, f1)
  return jnp.asarray(w, dtype)


class ConvTranspose(nn.Module):
  """Exactly PyTorch's `ConvTranspose2d(k, stride, padding, output_padding=stride + 2p - k)`,
  computed as a sub-pixel convolution.

  The output is always `stride` times the input size, which is what SR heads need. Instead of the
  zero-inserting (lhs-dilated) convolution XLA lowers a transposed conv to, which spends
  (stride^2 - 1)/stride^2 of its FLOPs on inserted zeros, the k x k kernel is rearranged (an
  exact gather, no approximation) into one ceil(k/s)-ish tap convolution on the low-resolution grid
  with stride^2 * out_features outputs, followed by `pixel_shuffle`. The parameters are the
  transposed conv's own: a (k, k, in, out) kernel -- PyTorch's weight (in, out, k, k) transposed
  with (2, 3, 0, 1) -- and an (out,) bias, so the parameter count is the deconvolution's.
  """
  features: int
  kernel_size: int
  stride: int
  padding: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s, p = self.kernel_size, self.stride, self.padding
    output_padding = s + 2 * p - k
    if not 0 <= output_padding < s:
      raise ValueError(f"ConvTranspose: k={k}, stride={s}, padding={p} cannot give stride x output "
                       f"(needs 0 <= stride + 2 * padding - k < stride)")
    cin = x.shape[-1]
    w = self.param("kernel", self.kernel_init, (k, k, cin, self.features), jnp.float32)
    index, valid, t_min, t_max = _phase_taps(k, s, p)
    # (s, T) x (s, T) gathers -> (s_h, T_h, s_w, T_w, cin, out), zero where a phase lacks a tap.
    g = w[index[:, :, None, None], index[None, None, :, :]]
    mask = (valid[:, :, None, None] & valid[None, None, :, :]).astype(np.float32)
    g = g * jnp.asarray(mask)[..., None, None]
    # -> (T_h, T_w, cin, out, s_h, s_w): output channel c * s * s + r_h * s + r_w, pixel_shuffle's.
    n = t_max - t_min + 1
    g = g.transpose(1, 3, 4, 5, 0, 2).reshape(n, n, cin, self.features * s * s)
    pad = (-t_min, t_max)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), g.astype(self.dtype), window_strides=(1, 1), padding=(pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + jnp.repeat(b, s * s).astype(self.dtype)
    return pixel_shuffle(y, s)


def resolve_variant(variants: dict, variant: str | None, kw: dict) -> dict:
  """maxim's `Model(*, variant=None, **kw)` rule: the variant's settings, overridden by `kw`."""
  if variant is None:
    return dict(kw)
  if variant not in variants:
    raise ValueError(f"unknown variant {variant!r}; choose from {sorted(variants)}")
  return {**variants[variant], **kw}
