"""LapSRN (Lai et al., "Deep Laplacian Pyramid Networks for Fast and Accurate Super-Resolution",
CVPR 2017), as in the reference PyTorch port (twtygqyy/pytorch-LapSRN): no biases, LeakyReLU 0.2.

Progressive x2 levels on two branches.
  Feature extraction: a 3x3 input conv, then per level `depth` 3x3 convs (64) and a 4x4 stride-2
    transposed conv (the paper's upsampling), then a 3x3 conv predicting the level's residual image.
  Image reconstruction: per level the image is upsampled by a 4x4 stride-2 transposed conv
    (initialised to bilinear upsampling, one per channel) and the residual is added.

Upsampling is by transposed convolution, as in the paper, computed exactly in its sub-pixel form
(`common.ConvTranspose`: PyTorch's `ConvTranspose2d(4, stride=2, padding=1)`, same parameters,
without XLA's zero-inserting lowering).

Returns a list of the images at every level, x2 first: [x2] at scale 2, [x2, x4] at 4,
[x2, x4, x8] at 8, so a loss (Charbonnier in the paper) can supervise each level; the last entry
is the SR image at `scale`. `all_levels=False` returns that last image alone, like other models.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, depth=1),
    # On Y: 435,344 params at x2, 870,112 at x4, 1,304,880 at x8; RGB: 437,776 / 873,824 / 1,309,872
    "paper": dict(features=64, depth=10),
}


class LapSRN(nn.Module):
  scale: int = 4
  features: int = 64
  depth: int = 10
  all_levels: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt, f, c = self.dtype, self.features, x.shape[-1]
    act = lambda h: nn.leaky_relu(h, 0.2)
    img = x.astype(jnp.float32)
    h = act(common.conv(f, 3, dtype=dt, use_bias=False, name="conv_input")(x))
    outs = []
    for level in range(common.pyramid_levels(self.scale)):
      for i in range(self.depth):
        h = act(common.conv(f, 3, dtype=dt, use_bias=False, name=f"level{level}_conv{i}")(h))
      h = act(common.ConvTranspose(f, 4, 2, 1, use_bias=False, dtype=dt,
                                   name=f"level{level}_feature_up")(h))
      res = common.conv(c, 3, dtype=dt, use_bias=False, name=f"level{level}_residual")(h)
      img = common.ConvTranspose(c, 4, 2, 1, use_bias=False, dtype=dt,
                                 kernel_init=common.bilinear_kernel_init,
                                 name=f"level{level}_image_up")(img)
      img = img.astype(jnp.float32) + res.astype(jnp.float32)
      outs.append(img)
    return outs if self.all_levels else outs[-1]


def Model(*, variant: str | None = None, scale: int = 4, **kw) -> LapSRN:
  return LapSRN(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
