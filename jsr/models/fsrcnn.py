"""FSRCNN (Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural Network",
ECCV 2016).

On the LR image: feature extraction 5x5 (d), shrinking 1x1 (s), m mapping layers 3x3 (s),
expanding 1x1 (d), each followed by PReLU, then a 9x9 deconvolution with stride `scale` to the
image channels. FSRCNN(d=56, s=12, m=4) is the paper's model, FSRCNN-s(32, 5, 1) its small one.

The deconvolution. The paper defines the head as a transposed conv; we compute it *exactly*, as
the equivalent sub-pixel convolution (`common.ConvTranspose`): the 9x9 kernel is rearranged into
scale^2 phase kernels over the LR grid followed by a pixel shuffle. This is the same function and
the same parameters as PyTorch's `ConvTranspose2d(d, C, 9, stride=scale, padding=4,
output_padding=scale - 1)` (the alignment of the common PyTorch port, whose output is exactly
scale x the input), so the parameter count is the paper's (81 * d * C weights + C biases) and
weights port across; but XLA lowers a real transposed conv to a convolution over a zero-inserted
input, wasting (scale^2 - 1)/scale^2 of its FLOPs, while the sub-pixel form does none of that.
The equivalence is tested against a numpy transposed conv.

PReLU slopes are per channel (PyTorch ports use `nn.PReLU(d)`); the paper's parameter counts, like
SRCNN's, count convolution weights only.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

# Weights only (no biases, no PReLU slopes), on one (Y) channel, as in the paper's Table 1.
VARIANTS = {
    "tiny": dict(d=8, s=4, m=1),
    # 12,464 weights (Y); 12,809 params with biases and PReLU slopes (RGB at x3: 24,683)
    "paper": dict(d=56, s=12, m=4),
    "s": dict(d=32, s=5, m=1),  # FSRCNN-s: 3,937 weights (Y)
}


class FSRCNN(nn.Module):
  scale: int = 3
  d: int = 56
  s: int = 12
  m: int = 4
  deconv_kernel: int = 9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt = self.dtype
    h = common.PReLU(channelwise=True)(common.conv(self.d, 5, dtype=dt)(x))
    h = common.PReLU(channelwise=True)(common.conv(self.s, 1, dtype=dt)(h))
    for _ in range(self.m):
      h = common.PReLU(channelwise=True)(common.conv(self.s, 3, dtype=dt)(h))
    h = common.PReLU(channelwise=True)(common.conv(self.d, 1, dtype=dt)(h))
    # Paper init: deconv weights from N(0, 0.001).
    out = common.ConvTranspose(x.shape[-1], self.deconv_kernel, self.scale,
                               self.deconv_kernel // 2, dtype=dt,
                               kernel_init=nn.initializers.normal(1e-3), name="deconv")(h)
    return out.astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 3, **kw) -> FSRCNN:
  return FSRCNN(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
