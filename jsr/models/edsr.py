"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017), following the reference code (thstkdgus35/EDSR-PyTorch, `model/edsr.py`).

mean shift -> 3x3 head -> B residual blocks (conv-ReLU-conv, scaled by res_scale, no BN) -> 3x3
conv -> + head (global skip) -> Upsampler (x2/x3 one pixel-shuffle stage, x4 two x2 stages) ->
3x3 conv to RGB -> add the mean back.

The mean shift subtracts the DIV2K RGB mean and has no trainable parameters (the reference's is a
frozen 1x1 conv), so parameter counts are the published ones. `rgb_range` is the reference's: it
trains on [0, 255] pixel values; inputs and outputs here stay in [0, 1] and are scaled inside, so
`rgb_range=255` reproduces the reference network exactly (e.g. to port its released weights).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, blocks=1, res_scale=1.0),
    # 1,369,859 params at x2 (1.37M), 1,554,499 at x3, 1,517,571 at x4 (1.52M)
    "baseline": dict(features=64, blocks=16, res_scale=1.0),
    # 40,729,603 params at x2 (40.7M), 43,680,003 at x3, 43,089,923 at x4 (43.1M)
    "full": dict(features=256, blocks=32, res_scale=0.1),
}


class ResBlock(nn.Module):
  features: int
  res_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = nn.relu(common.conv(self.features, 3, dtype=self.dtype)(x))
    h = common.conv(self.features, 3, dtype=self.dtype)(h)
    return x + h * self.res_scale


class EDSR(nn.Module):
  scale: int = 2
  features: int = 64
  blocks: int = 16
  res_scale: float = 1.0
  rgb_range: float = 1.0
  rgb_mean: Sequence[float] = common.DIV2K_RGB_MEAN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    c = x.shape[-1]
    x = common.shift_mean(x.astype(jnp.float32) * self.rgb_range, -1.0, self.rgb_range,
                          self.rgb_mean)
    h = common.conv(self.features, 3, dtype=self.dtype, name="head")(x)
    r = h
    for i in range(self.blocks):
      r = ResBlock(self.features, self.res_scale, dtype=self.dtype, name=f"block{i}")(r)
    r = common.conv(self.features, 3, dtype=self.dtype, name="body_end")(r)
    h = common.Upsampler(self.features, self.scale, dtype=self.dtype, name="upsample")(h + r)
    out = common.conv(c, 3, dtype=self.dtype, name="tail")(h).astype(jnp.float32)
    return common.shift_mean(out, 1.0, self.rgb_range, self.rgb_mean) / self.rgb_range


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> EDSR:
  return EDSR(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
