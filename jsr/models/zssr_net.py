"""The ZSSR network (Shocher, Cohen, Irani, "'Zero-Shot' Super-Resolution using Deep Internal
Learning", CVPR 2018).

A plain stack of 3x3 convolutions with ReLU between them and no biases, learning the residual over
the MATLAB-bicubic upsampling of its input; the module upsamples itself, so it maps LR -> SR like
every jsr model. Weights start N(0, init_variance / fan_in) with the paper's init_variance = 0.1,
small because the residual starts near zero. One such network is trained per test image
(jsr/methods/zssr.py), so its size is a per-image cost: the paper's 8 x 64 is 0.22M parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common
from jsr.ops.resize import imresize

VARIANTS = {
    "tiny": dict(depth=3, features=8),
    "paper": dict(depth=8, features=64),  # 224,640 params on RGB; ~2.4 GFLOP per 128x128 forward
}


class ZSSRNet(nn.Module):
  scale: int = 2
  depth: int = 8
  features: int = 64
  init_variance: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, scale: tuple[float, float] | None = None,
               out_shape: tuple[int, int] | None = None):
    """x (N, h, w, C) -> (N, s*h, s*w, C). ZSSR's gradual stages pass a per-axis `scale` and the
    `out_shape` the son came from (the weights do not depend on the scale: the upsampling is not
    learned)."""
    del train
    init = nn.initializers.variance_scaling(self.init_variance, "fan_in", "normal")
    if scale is None and out_shape is None:
      up = common.bicubic_upsample(x, self.scale)
    else:
      up = imresize(x.astype(jnp.float32), scale=scale or self.scale, out_shape=out_shape)
    h = up
    for _ in range(self.depth - 1):
      h = nn.relu(common.conv(self.features, 3, dtype=self.dtype, use_bias=False,
                              kernel_init=init)(h))
    res = common.conv(x.shape[-1], 3, dtype=self.dtype, use_bias=False, kernel_init=init)(h)
    return up + res.astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> ZSSRNet:  # noqa: N802
  return ZSSRNet(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
