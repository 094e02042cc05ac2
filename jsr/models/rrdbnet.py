"""RRDBNet, the generator of ESRGAN (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks", ECCVW 2018) and Real-ESRGAN, following BasicSR's `rrdbnet_arch.py`.

conv_first 3x3 -> B RRDBs -> conv_body 3x3, + the conv_first features (global skip) -> twice
(nearest x2 upsample -> conv -> LeakyReLU 0.2) -> conv_hr + LeakyReLU -> conv_last.

An RRDB (residual in residual dense block) is three ResidualDenseBlocks and a skip,
`x + 0.2 * rdb3(rdb2(rdb1(x)))`; an RDB is five 3x3 convs, each seeing the concatenation of the
block input and every earlier conv's output (growth channels each, LeakyReLU 0.2 after the first
four), with `x + 0.2 * conv5(...)`. The 0.2 residual scales and the RDB convs' small init (Kaiming
normal times 0.1, BasicSR's `default_init_weights(..., 0.1)`) are what let 23 blocks without
normalisation train stably; the other convs keep PyTorch's default init, as in BasicSR.

The upsampler always does x4. Like BasicSR (and Real-ESRGAN's x2plus weights), x2 and x1
pixel-unshuffle the input by 2 and 4 first, so conv_first sees 4x or 16x the channels and the
rest of the network, and its weight shapes, are the x4 ones. Those inputs must be divisible by 2
(x2) or 4 (x1).

Module names follow BasicSR's state dict (conv_first, body_{i}/rdb{1,2,3}/conv{1..5}, conv_body,
conv_up1, conv_up2, conv_hr, conv_last), so porting the published weights is a per-conv transpose
of (out, in, kh, kw) to (kh, kw, in, out); concatenations keep PyTorch's channel order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, growth=4, blocks=1),
    # 1,118,755 params at x4 (6.7% of the paper model), 1,121,347 at x2: for CPU experiments
    "small": dict(features=32, growth=16, blocks=6),
    # 16,697,987 params at x4 (the published ESRGAN / RealESRGAN_x4plus), 16,703,171 at x2
    "paper": dict(features=64, growth=32, blocks=23),
}

# Scale -> pixel-unshuffle factor of the input ahead of the fixed x4 body (BasicSR's choice).
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}

# BasicSR's default_init_weights(..., scale=0.1) for the RDB convs: torch's kaiming_normal_
# (a = 0: std sqrt(2 / fan_in), an untruncated normal, which jax's "normal" also is) times 0.1,
# i.e. variance 2 * 0.01 / fan_in. Biases start at zero.
rdb_init = nn.initializers.variance_scaling(2.0 * 0.1**2, "fan_in", "normal")


def lrelu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


def upsample_nearest(x, r: int = 2):
  """PyTorch's F.interpolate(scale_factor=r, mode='nearest'), NHWC."""
  return jnp.repeat(jnp.repeat(x, r, axis=1), r, axis=2)


class ResidualDenseBlock(nn.Module):
  """Five densely connected 3x3 convs, x + res_scale * conv5(cat(x, x1, .., x4))."""
  features: int = 64
  growth: int = 32
  res_scale: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    feats = [x]
    for i in range(1, 5):
      h = common.conv(self.growth, 3, dtype=self.dtype, kernel_init=rdb_init, name=f"conv{i}")(
          jnp.concatenate(feats, axis=-1))
      feats.append(lrelu(h))
    h = common.conv(self.features, 3, dtype=self.dtype, kernel_init=rdb_init, name="conv5")(
        jnp.concatenate(feats, axis=-1))
    return x + self.res_scale * h


class RRDB(nn.Module):
  """Residual in residual dense block: x + res_scale * rdb3(rdb2(rdb1(x)))."""
  features: int = 64
  growth: int = 32
  res_scale: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = x
    for i in range(1, 4):
      h = ResidualDenseBlock(self.features, self.growth, self.res_scale, dtype=self.dtype,
                             name=f"rdb{i}")(h)
    return x + self.res_scale * h


class RRDBNet(nn.Module):
  scale: int = 4
  features: int = 64
  growth: int = 32
  blocks: int = 23
  res_scale: float = 0.2
  out_channels: int | None = None  # None: as many as the input has
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    if self.scale not in _UNSHUFFLE:
      raise ValueError(f"RRDBNet supports scale 1, 2 or 4 (as BasicSR), got {self.scale}")
    r = _UNSHUFFLE[self.scale]
    n, h, w, c = x.shape
    if h % r or w % r:
      raise ValueError(f"RRDBNet x{self.scale} pixel-unshuffles its input by {r} (as BasicSR): "
                       f"the input size {h}x{w} must be divisible by {r}")
    dt, f = self.dtype, self.features
    conv = lambda features, name: common.conv(features, 3, dtype=dt, name=name)

    feat = x.astype(jnp.float32)
    if r > 1:
      feat = common.pixel_unshuffle(feat, r)
    feat = conv(f, "conv_first")(feat)
    body = feat
    for i in range(self.blocks):
      body = RRDB(f, self.growth, self.res_scale, dtype=dt, name=f"body_{i}")(body)
    feat = feat + conv(f, "conv_body")(body)
    feat = lrelu(conv(f, "conv_up1")(upsample_nearest(feat)))
    feat = lrelu(conv(f, "conv_up2")(upsample_nearest(feat)))
    out = conv(self.out_channels or c, "conv_last")(lrelu(conv(f, "conv_hr")(feat)))
    return out.astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 4, **kw) -> RRDBNet:
  return RRDBNet(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
