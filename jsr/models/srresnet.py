"""SRResNet, the generator of SRGAN (Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", CVPR 2017).

9x9 conv (64) + PReLU -> B residual blocks (conv3x3-BN-PReLU-conv3x3-BN, skip) -> conv3x3-BN,
+ skip from the first layer -> pixel-shuffle x2 stages, each conv3x3 (256) -> shuffle -> PReLU
-> 9x9 conv to the image channels (linear output).

BatchNorm follows the paper by default (`batch_norm=True`); EDSR showed that removing it helps
PSNR, so it is a flag. With BN, `train=True` uses batch statistics and updates the running ones:
apply with `mutable=["batch_stats"]`. PReLU has one shared slope per layer (PyTorch's default),
which is what gives the published 1.5M parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, blocks=1),
    # 1,549,462 params at x4 (1.5M; BN running statistics are not parameters), 1,401,749 at x2
    "paper": dict(features=64, blocks=16, batch_norm=True),
    "no_bn": dict(features=64, blocks=16, batch_norm=False),  # 1,545,238 params at x4
    # The same networks with ICNR-initialised sub-pixel convs (jsr.models.common.icnr): no
    # checkerboard at step 0, which a short training budget otherwise leaves in the output.
    "paper_icnr": dict(features=64, blocks=16, batch_norm=True, upsample_init="icnr"),
    "no_bn_icnr": dict(features=64, blocks=16, batch_norm=False, upsample_init="icnr"),
}


class SRResNet(nn.Module):
  scale: int = 4
  features: int = 64
  blocks: int = 16
  batch_norm: bool = True
  upsample_init: str = "default"  # "icnr": ICNR sub-pixel convs (common.Upsampler)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    dt, f = self.dtype, self.features

    def norm(h):
      if not self.batch_norm:
        return h
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dt,
                          param_dtype=jnp.float32)(h)

    h = common.PReLU()(common.conv(f, 9, dtype=dt)(x))
    skip = h
    for _ in range(self.blocks):
      r = common.PReLU()(norm(common.conv(f, 3, dtype=dt)(h)))
      h = h + norm(common.conv(f, 3, dtype=dt)(r))
    h = skip + norm(common.conv(f, 3, dtype=dt)(h))
    h = common.Upsampler(f, self.scale, activation="prelu", init_scheme=self.upsample_init,
                         dtype=dt)(h)
    return common.conv(x.shape[-1], 9, dtype=dt)(h).astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 4, **kw) -> SRResNet:
  return SRResNet(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
