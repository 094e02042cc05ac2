"""A small post-upsampling network (an SR lecture exercise), with a bicubic global residual.

  5x5 conv 32 - ReLU - 3x3 conv 64 - ReLU - 3x3 conv (shuffle_channels) - PixelShuffle(s)
  - 3x3 conv C
  output = net(lr) + bicubic(lr)

The 256 channels before the shuffle become 256 / s^2 feature maps after it: 64 at x2, 16 at x4,
4 at x8. 256 is not divisible by 9, so at x3 the conv produces 9 * floor(256 / 9) = 252 channels
(28 maps after the shuffle); in general it produces s^2 * floor(shuffle_channels / s^2).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=(4, 8), shuffle_channels=64),
    # 170,371 params at x2, 167,091 at x3, 169,075 at x4
    "lecture": dict(features=(32, 64), shuffle_channels=256),
}


class PostUp(nn.Module):
  scale: int = 2
  features: tuple = (32, 64)
  shuffle_channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    s2 = self.scale * self.scale
    if self.shuffle_channels < s2:
      raise ValueError(f"PostUp: shuffle_channels={self.shuffle_channels} < scale^2 = {s2}")
    n1, n2 = self.features
    h = nn.relu(common.conv(n1, 5, dtype=self.dtype)(x))
    h = nn.relu(common.conv(n2, 3, dtype=self.dtype)(h))
    h = common.conv(s2 * (self.shuffle_channels // s2), 3, dtype=self.dtype)(h)
    h = common.pixel_shuffle(h, self.scale)
    out = common.conv(x.shape[-1], 3, dtype=self.dtype)(h).astype(jnp.float32)
    return out + common.bicubic_upsample(x, self.scale)


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> PostUp:
  return PostUp(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
