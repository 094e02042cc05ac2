"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016).

Three convolutions -- patch extraction f1 x f1 (n1 = 64), non-linear mapping f2 x f2 (n2 = 32),
reconstruction f3 x f3 -- with ReLU between, applied to the bicubic-upsampled image. The module
does the MATLAB-bicubic upsampling itself so that, like every model here, it maps LR -> SR.

Differences from the paper, on purpose: convolutions are zero-padded ('SAME') so the output has the
HR size (the paper trains on valid convolutions and crops the target), and the network runs on all
input channels (the paper uses Y only: pass a 1-channel image for that). `residual=True` adds a
global bicubic skip (output = bicubic + net), which later work found trains faster; it is off by
default to match the paper.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

# Weights only (no biases), as the paper counts them, on one (Y) channel.
VARIANTS = {
    "tiny": dict(features=(8, 4), kernel_sizes=(3, 1, 3)),
    "9-1-5": dict(features=(64, 32), kernel_sizes=(9, 1, 5)),  # 8,032 weights (Y); 8,129 params
    "9-3-5": dict(features=(64, 32), kernel_sizes=(9, 3, 5)),  # 24,416 weights (Y)
    "9-5-5": dict(features=(64, 32), kernel_sizes=(9, 5, 5)),  # 57,184 weights (Y); 57,281 params
}


class SRCNN(nn.Module):
  scale: int = 3
  features: Sequence[int] = (64, 32)
  kernel_sizes: Sequence[int] = (9, 1, 5)
  residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    up = common.bicubic_upsample(x, self.scale)
    (n1, n2), (f1, f2, f3) = self.features, self.kernel_sizes
    h = nn.relu(common.conv(n1, f1, dtype=self.dtype)(up))
    h = nn.relu(common.conv(n2, f2, dtype=self.dtype)(h))
    out = common.conv(x.shape[-1], f3, dtype=self.dtype)(h).astype(jnp.float32)
    return up + out if self.residual else out


def Model(*, variant: str | None = None, scale: int = 3, **kw) -> SRCNN:
  return SRCNN(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
