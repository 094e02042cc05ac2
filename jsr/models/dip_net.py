"""Deep Image Prior's "skip" hourglass (Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018).

The reference's models/skip.py as its super-resolution notebook builds it: `get_net(32, "skip",
pad="reflection", skip_n33d=128, skip_n33u=128, skip_n11=4, num_scales=5,
upsample_mode="bilinear")`, i.e. need_bias=True, need1x1_up=True, downsample_mode="stride",
LeakyReLU(0.2), sigmoid output. Level i (0 = full resolution) maps x to

    skip   = act(BN(conv1x1(x)))                                       # 4 channels
    deeper = up2(level_{i+1}(act(BN(conv3x3(act(BN(conv3x3/2(x))))))))  # 128 channels
    y      = act(BN(conv1x1(act(BN(conv3x3(BN(concat(skip, deeper))))))))

(the deepest level has no level_{i+1}), and the network is sigmoid(conv1x1(level_0(z))). Every
convolution has a bias and reflection padding of k // 2; "3x3/2" is stride 2; up2 is bilinear x2
with half-pixel centres (PyTorch's align_corners=False). Concat crops both inputs to the smaller
size, taking rows/cols from (diff // 2), as the reference does: an odd side gives ceil(n / 2)
after the stride and 2 ceil(n / 2) after up2, so the output has the input's size for any size.

BatchNorm normalises with the statistics of the batch it sees, always: the reference never
switches the network to eval mode, so its final output also uses batch statistics. There are no
running averages, hence no mutable collection: the state is the parameters alone.

Not an LR -> SR network like the others in jsr/models: it maps a fixed noise code z (N, H, W, 32)
at the *output* size to an image (N, H, W, out_channels). jsr/methods/dip.py fits it per image.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    # The paper's SR net: 5 scales of 128 down / 128 up / 4 skip channels.
    # 2,217,831 params with a 32-channel input and RGB output; ~0.59 MFLOP per output pixel
    # forward (~155 GFLOP for a 512x512 HR image, x3 for a training step).
    "paper": dict(down=(128,) * 5, up=(128,) * 5, skip=(4,) * 5),
    # The same graph, 3 scales of 8: 8,025 params with input_depth=32 and RGB (tests, runlocal).
    "tiny": dict(down=(8,) * 3, up=(8,) * 3, skip=(2,) * 3),
}


def reflect_pad(x, p: int):
  return x if p == 0 else jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def upsample_bilinear2x(x):
  """x2 bilinear upsampling of (N, H, W, C) with half-pixel centres and clamped edges, i.e.
  PyTorch's `Upsample(scale_factor=2, mode="bilinear")` (align_corners=False): output pixel 2i
  is 0.75 x[i] + 0.25 x[i - 1], 2i + 1 is 0.75 x[i] + 0.25 x[i + 1] (edges repeated). A fixed
  stencil, not jax.image.resize's dense per-axis matrices (O(n^2) per axis at 512 px)."""
  def axis(x, ax):
    n = x.shape[ax]
    prev = jnp.concatenate([jnp.take(x, jnp.array([0]), ax),
                            jnp.take(x, jnp.arange(n - 1), ax)], ax)
    nxt = jnp.concatenate([jnp.take(x, jnp.arange(1, n), ax),
                           jnp.take(x, jnp.array([n - 1]), ax)], ax)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], ax + 1)
    shape = list(x.shape)
    shape[ax] *= 2
    return out.reshape(shape)
  return axis(axis(x, 1), 2)


def crop_to(x, h: int, w: int):
  """The reference's Concat crop: rows/cols from (size - target) // 2."""
  dh, dw = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
  return x[:, dh:dh + h, dw:dw + w]


class BatchStatNorm(nn.Module):
  """BatchNorm2d in training mode: per-channel mean and biased variance over (N, H, W), eps 1e-5,
  then a learnt scale (init 1) and bias (init 0)."""
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
    y = (x32 - mean) * (scale / jnp.sqrt(var + self.epsilon)) + bias
    return y.astype(x.dtype)


class ConvBlock(nn.Module):
  """Reflection pad k // 2, conv (PyTorch's default init), and, unless `plain`, BN + LeakyReLU."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  plain: bool = False
  negative_slope: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = reflect_pad(x, self.kernel_size // 2)
    x = nn.Conv(self.features, (self.kernel_size,) * 2, strides=(self.strides,) * 2,
                padding="VALID", use_bias=True, dtype=self.dtype, param_dtype=jnp.float32,
                kernel_init=common.torch_default, name="conv")(x)
    if self.plain:
      return x
    return nn.leaky_relu(BatchStatNorm(name="bn")(x), self.negative_slope)


class SkipNet(nn.Module):
  """The skip hourglass; `down`, `up`, `skip` give each scale's channels (finest first)."""
  down: Sequence[int] = (128,) * 5
  up: Sequence[int] = (128,) * 5
  skip: Sequence[int] = (4,) * 5
  out_channels: int = 3
  kernel_down: int = 3
  kernel_up: int = 3
  kernel_skip: int = 1
  need1x1_up: bool = True
  negative_slope: float = 0.2
  dtype: Any = jnp.float32

  def _level(self, x, i: int):
    blk = lambda f, k, s=1, name=None: ConvBlock(f, k, s, negative_slope=self.negative_slope,
                                                 dtype=self.dtype, name=name)
    d = blk(self.down[i], self.kernel_down, 2, name=f"down{i}_0")(x)
    d = blk(self.down[i], self.kernel_down, name=f"down{i}_1")(d)
    if i + 1 < len(self.down):
      d = self._level(d, i + 1)
    d = upsample_bilinear2x(d)
    if self.skip[i]:
      s = blk(self.skip[i], self.kernel_skip, name=f"skip{i}")(x)
      h, w = min(s.shape[1], d.shape[1]), min(s.shape[2], d.shape[2])
      y = jnp.concatenate([crop_to(s, h, w), crop_to(d, h, w)], axis=-1)
    else:
      y = d
    y = BatchStatNorm(name=f"bn{i}")(y)
    y = blk(self.up[i], self.kernel_up, name=f"up{i}_0")(y)
    if self.need1x1_up:
      y = blk(self.up[i], 1, name=f"up{i}_1")(y)
    return y

  @nn.compact
  def __call__(self, z, train: bool = True):
    del train  # Batch statistics always (module doc).
    if not len(self.down) == len(self.up) == len(self.skip):
      raise ValueError("SkipNet: down, up and skip need one entry per scale")
    y = self._level(z.astype(self.dtype), 0)
    y = ConvBlock(self.out_channels, 1, plain=True, dtype=self.dtype, name="out")(y)
    return nn.sigmoid(y.astype(jnp.float32))


def Model(*, variant: str | None = None, scale: int | None = None, **kw) -> SkipNet:  # noqa: N802
  del scale  # The net works at the output size; the scale only matters to the loss.
  return SkipNet(**common.resolve_variant(VARIANTS, variant, kw))
