"""A multi-scale Laplacian-pyramid residual network ("lapres"): one network giving x2, x4 and x8.

The description this follows: an initial feature module (a 3x3 conv to 512 feature maps, then two
3x3 convs to 128), then 12 blocks, each emitting an upsampled image at one of x2/x4/x8 and a
downsampled residual of what the previous block did not recover; the upsampled maps are
concatenated progressively and compressed by a 3x3 conv, with skip connections.

Our reading, made concrete (each choice below is ours where the description is silent):
  * Feature module: conv3x3(C -> 512) - ReLU - conv3x3(512 -> 128) - ReLU - conv3x3(128 -> 128).
  * Blocks are grouped by pyramid level, coarse to fine: `blocks_per_level` (4) blocks at x2, then
    4 at x4, then 4 at x8 -- 12 blocks for the three levels.
  * Block b at level scale s takes the LR features h and the LR residual e (the part of the LR
    image the previous block's estimate did not explain; e = lr before the first block):
      g   = h + conv3x3(e)                       residual injected into the features (skip)
      h'  = g + conv3x3(ReLU(conv3x3(g)))        a residual unit (skip)
      u_b = PixelShuffle_s(conv3x3(h' -> C s^2)) the block's upsampled image at x s
  * Progressive concatenation: after block b, the images u of all blocks so far at this level are
    concatenated and compressed by a 3x3 conv to C channels; the level estimate is
      est_s = base_s + conv3x3(concat(u_1..u_b)),
    where base_s (the skip) is the coarser level's final estimate upsampled x2 by MATLAB bicubic
    (bicubic(lr) at x2): each level only adds its Laplacian band on top of the coarser one.
  * Downsampled residual: e = lr - bicubic_down_s(est_s), the MATLAB bicubic degradation of the
    current estimate compared with the input, fed to the next block.
Returns the list [x2, x4, x8] of level estimates up to `scale` (2, 4 or 8), like LapSRN, so a
loss can apply at each level; `all_levels=False` returns only the image at `scale`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common
from jsr.ops.resize import imresize

VARIANTS = {
    "tiny": dict(stem_features=16, features=8, blocks_per_level=1),
    # RGB: 5,501,586 params at x8 (12 blocks), 3,420,252 at x4 (8), 2,003,046 at x2 (4)
    "paper": dict(stem_features=512, features=128, blocks_per_level=4),
}


class LapResBlock(nn.Module):
  features: int
  scale: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h, e, out_channels: int):
    dt, f = self.dtype, self.features
    g = h + common.conv(f, 3, dtype=dt, name="inject")(e)
    r = nn.relu(common.conv(f, 3, dtype=dt)(g))
    h = g + common.conv(f, 3, dtype=dt)(r)
    s = self.scale
    u = common.pixel_shuffle(common.conv(out_channels * s * s, 3, dtype=dt, name="up")(h), s)
    return h, u


class LapRes(nn.Module):
  scale: int = 8
  stem_features: int = 512
  features: int = 128
  blocks_per_level: int = 4
  all_levels: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt, c = self.dtype, x.shape[-1]
    lr = x.astype(jnp.float32)
    h = nn.relu(common.conv(self.stem_features, 3, dtype=dt, name="stem0")(x))
    h = nn.relu(common.conv(self.features, 3, dtype=dt, name="stem1")(h))
    h = common.conv(self.features, 3, dtype=dt, name="stem2")(h)
    e, est, outs = lr, lr, []
    for level in range(common.pyramid_levels(self.scale)):
      s = 2 ** (level + 1)
      base = common.bicubic_upsample(est, 2)
      ups = []
      for b in range(self.blocks_per_level):
        h, u = LapResBlock(self.features, s, dtype=dt, name=f"level{level}_block{b}")(h, e, c)
        ups.append(u)
        fused = common.conv(c, 3, dtype=dt, name=f"level{level}_fuse{b}")(
            jnp.concatenate(ups, axis=-1))
        est = base + fused.astype(jnp.float32)
        e = lr - imresize(est, 1.0 / s)
      outs.append(est)
    return outs if self.all_levels else outs[-1]


def Model(*, variant: str | None = None, scale: int = 8, **kw) -> LapRes:
  return LapRes(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
