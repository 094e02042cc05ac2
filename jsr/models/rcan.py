"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV 2018), following the reference code (yulunzhang/RCAN, `model/rcan.py`).

Residual in residual: G residual groups of B residual channel-attention blocks (RCAB: conv-ReLU-
conv, then channel attention = global average pool, 1x1 conv down by `reduction`, ReLU, 1x1 conv
up, sigmoid, rescale; plus skip), each group closed by a 3x3 conv and a skip; the body closed by a
3x3 conv and a long skip; EDSR's upsampler and tail, and the DIV2K mean shift (no parameters; see
edsr.py for `rgb_range`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, groups=1, blocks=1, reduction=4),
    # 15,444,643 params at x2, 15,629,283 at x3, 15,592,355 at x4 (15.59M; "about 16M" in the paper)
    "paper": dict(features=64, groups=10, blocks=20, reduction=16),
}


class ChannelAttention(nn.Module):
  features: int
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = jnp.mean(x, axis=(1, 2), keepdims=True)
    y = nn.relu(common.conv(self.features // self.reduction, 1, dtype=self.dtype)(y))
    y = nn.sigmoid(common.conv(self.features, 1, dtype=self.dtype)(y))
    return x * y


class RCAB(nn.Module):
  features: int
  reduction: int = 16
  res_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = nn.relu(common.conv(self.features, 3, dtype=self.dtype)(x))
    h = common.conv(self.features, 3, dtype=self.dtype)(h)
    h = ChannelAttention(self.features, self.reduction, dtype=self.dtype)(h)
    return x + h * self.res_scale


class ResidualGroup(nn.Module):
  features: int
  blocks: int
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = x
    for i in range(self.blocks):
      h = RCAB(self.features, self.reduction, dtype=self.dtype, name=f"rcab{i}")(h)
    return x + common.conv(self.features, 3, dtype=self.dtype, name="group_end")(h)


class RCAN(nn.Module):
  scale: int = 4
  features: int = 64
  groups: int = 10
  blocks: int = 20
  reduction: int = 16
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
    for g in range(self.groups):
      r = ResidualGroup(self.features, self.blocks, self.reduction, dtype=self.dtype,
                        name=f"group{g}")(r)
    r = common.conv(self.features, 3, dtype=self.dtype, name="body_end")(r)
    h = common.Upsampler(self.features, self.scale, dtype=self.dtype, name="upsample")(h + r)
    out = common.conv(c, 3, dtype=self.dtype, name="tail")(h).astype(jnp.float32)
    return common.shift_mean(out, 1.0, self.rgb_range, self.rgb_mean) / self.rgb_range


def Model(*, variant: str | None = None, scale: int = 4, **kw) -> RCAN:
  return RCAN(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
