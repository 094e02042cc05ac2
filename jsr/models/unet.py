"""CSRGAN's generator: a U-Net on the pre-upsampled input with a sigmoid output, and a head that
predicts the input's degradation parameters.

U-Net (Ronneberger et al. 2015) with `depth` levels: two 3x3 conv + LeakyReLU(0.2) per level,
2x2 max-pool down, 2x2 transposed conv up, skip concatenation; the output is sigmoid(1x1 conv) --
in [0, 1] by construction, which the founding document chose over min-max normalisation (it
traced its colour shifts to that). Inputs of any size are reflect-padded to a multiple of 2^depth
and cropped back. LeakyReLU, not ReLU: with ReLU, the head's early gradients killed the encoder's
units within 50 Adam steps (every sample then got the same estimate; measured while building).

The degradation head reads the encoder: for each level (full resolution down to the bottleneck)
the spatial mean and log standard deviation of every feature, LayerNorm, Dense -> ReLU ->
Dense(3) -> sigmoid: (sigma, noise, scale) normalised to [0, 1] over their configured ranges.
Why there: the degradation is one set of numbers per image, and blur and noise show in the energy
of filter responses at fine scales (a plain average of the bottleneck, our first version, left
the estimates at the range's middle after 500 steps), so the head pools statistics of every
level; and it sits on the encoder the restoration path uses, so its gradient shapes the features
the image comes from -- the interaction the document's claim (predicting the parameters hurts the
image) is about. A head on a separate network could not affect the image at all.
`Model(...)(x)` returns (image, params); `predict` keeps the image.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, depth=2),     # 30,638 params (head included)
    "base": dict(features=16, depth=4),    # 1,959,062 params: the CPU ablation
    "small": dict(features=32, depth=4),   # 7,827,750 params
    "paper": dict(features=64, depth=4),   # 31,294,022 params: Ronneberger's widths, 4 pools
}

NUM_PARAMS = 3  # sigma, noise, scale


class UNet(nn.Module):
  features: int = 64
  depth: int = 4
  num_params: int = NUM_PARAMS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    n, h, w, c = x.shape
    m = 2 ** self.depth
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
      mode = "reflect" if ph < h and pw < w else "edge"
      x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
    conv = lambda f, name: common.conv(f, 3, dtype=self.dtype, name=name)
    act = lambda t: nn.leaky_relu(t, 0.2)
    y = x.astype(self.dtype)
    skips = []
    for i in range(self.depth):
      f = self.features * 2 ** i
      y = act(conv(f, f"enc{i}_0")(y))
      y = act(conv(f, f"enc{i}_1")(y))
      skips.append(y)
      y = nn.max_pool(y, (2, 2), (2, 2))
    f = self.features * 2 ** self.depth
    y = act(conv(f, "mid_0")(y))
    y = act(conv(f, "mid_1")(y))

    # The degradation head on the encoder (see the module doc): each level's feature statistics.
    stats = []
    for t in skips + [y]:
      t = t.astype(jnp.float32)
      stats += [jnp.mean(t, axis=(1, 2)), jnp.log(jnp.std(t, axis=(1, 2)) + 1e-4)]
    g = nn.LayerNorm(name="head_norm")(jnp.concatenate(stats, axis=-1))
    g = nn.relu(nn.Dense(self.features, name="head_0")(g))
    params = nn.sigmoid(nn.Dense(self.num_params, name="head_1")(g))

    for i in reversed(range(self.depth)):
      f = self.features * 2 ** i
      y = nn.ConvTranspose(f, (2, 2), strides=(2, 2), dtype=self.dtype, name=f"up{i}")(y)
      y = jnp.concatenate([y, skips[i]], axis=-1)
      y = act(conv(f, f"dec{i}_0")(y))
      y = act(conv(f, f"dec{i}_1")(y))
    out = common.conv(c, 1, dtype=self.dtype, name="out")(y)
    image = nn.sigmoid(out.astype(jnp.float32))[:, :h, :w]
    return image, params


def Model(*, variant: str | None = None, scale: int = 1, **kw) -> UNet:  # pylint: disable=invalid-name
  if scale != 1:
    raise ValueError(f"unet maps a pre-upsampled input to the same size: scale must be 1, got "
                     f"{scale}")
  return UNet(**common.resolve_variant(VARIANTS, variant, kw))
