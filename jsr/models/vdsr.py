"""VDSR (Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks",
CVPR 2016).

20 3x3 conv layers of 64 features (ReLU after all but the last) predict the residual between the
HR image and its bicubic upsampling; output = bicubic(lr) + residual. The module upsamples itself
(MATLAB bicubic) so it maps LR -> SR. He init as in the paper; zero-padded convs keep the size.
The paper runs on Y (pass one channel for its parameter count).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(depth=3, features=8),
    "paper": dict(depth=20, features=64),  # 665,921 params on Y (0.67M); 668,227 on RGB
}


class VDSR(nn.Module):
  scale: int = 2
  depth: int = 20
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    up = common.bicubic_upsample(x, self.scale)
    h = up
    for _ in range(self.depth - 1):
      h = nn.relu(common.conv(self.features, 3, dtype=self.dtype, kernel_init=common.he_normal)(h))
    res = common.conv(x.shape[-1], 3, dtype=self.dtype, kernel_init=common.he_normal)(h)
    return up + res.astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> VDSR:
  return VDSR(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
