"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016).

(f1, n1) = (5, 64), (f2, n2) = (3, 32) with tanh (the paper's choice over ReLU), then a 3x3 conv
to scale^2 * C channels and a periodic shuffle (pixel shuffle, PyTorch order), all on the LR grid.
The output layer is linear.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=(8, 4)),
    "paper": dict(features=(64, 32)),  # 22,729 params at x3 on Y; 26,796 x2 / 37,200 x4 on RGB
}


class ESPCN(nn.Module):
  scale: int = 3
  features: Sequence[int] = (64, 32)
  kernel_sizes: Sequence[int] = (5, 3, 3)
  activation: str = "tanh"  # "tanh" (paper) or "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    act = {"tanh": jnp.tanh, "relu": nn.relu}[self.activation]
    (n1, n2), (f1, f2, f3) = self.features, self.kernel_sizes
    c = x.shape[-1]
    h = act(common.conv(n1, f1, dtype=self.dtype)(x))
    h = act(common.conv(n2, f2, dtype=self.dtype)(h))
    h = common.conv(self.scale * self.scale * c, f3, dtype=self.dtype)(h)
    return common.pixel_shuffle(h, self.scale).astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 3, **kw) -> ESPCN:
  return ESPCN(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
