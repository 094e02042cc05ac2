"""KernelGAN's two networks (Bell-Kligler, Shocher, Irani, "Blind Super-Resolution Kernel
Estimation using an Internal-GAN", NeurIPS 2019).

* `KernelGenerator`: a deep *linear* network (valid convolutions, no biases, no activations) that
  downscales by `scale`; its only stride is in the last (1x1) layer, so it equals one blur kernel
  of size sum(k - 1) + 1 (13 for the paper's 7, 5, 3, 1, 1, 1) followed by subsampling. It runs
  on one channel: colour images go through it as a batch of gray ones.
* `KernelDiscriminator`: a fully convolutional patch discriminator: one spectrally normalised
  7x7 convolution (its receptive field is the patch size), then 1x1 convolutions with batch norm
  and ReLU, then a sigmoid map: one real/fake score per 7x7 patch.

Both start with Xavier-normal weights of gain 0.1 as in the reference code; batch norm scales
start N(1, 0.02).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "tiny": dict(features=8, structure=(3, 3, 1), d_features=8, d_kernel=3, d_layers=3),
    "paper": dict(features=64, structure=(7, 5, 3, 1, 1, 1), d_features=64, d_kernel=7,
                  d_layers=7),  # G 0.18M params (13x13 kernel), D 0.03M
}

xavier_01 = nn.initializers.variance_scaling(0.1 ** 2, "fan_avg", "normal")


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class KernelGenerator(nn.Module):
  """(N, H, W, 1) -> (N, (H - K + 1 + 1) // s, ..., 1), K = sum(structure) - len + 1."""
  structure: Sequence[int] = (7, 5, 3, 1, 1, 1)
  features: int = 64
  scale: int = 2

  @nn.compact
  def __call__(self, x):
    n = len(self.structure)
    for i, k in enumerate(self.structure):
      last = i == n - 1
      x = nn.Conv(1 if last else self.features, (k, k), strides=self.scale if last else 1,
                  padding="VALID", use_bias=False, kernel_init=xavier_01)(x)
    return x

  @property
  def kernel_size(self) -> int:
    return sum(self.structure) - len(self.structure) + 1


class KernelDiscriminator(nn.Module):
  features: int = 64
  kernel_size: int = 7
  layers: int = 7

  @nn.compact
  def __call__(self, x, train: bool = True):
    def sn_conv(features, k):
      return nn.SpectralNorm(nn.Conv(features, (k, k), padding="VALID", kernel_init=xavier_01))

    h = sn_conv(self.features, self.kernel_size)(x, update_stats=train)
    for _ in range(self.layers - 2):
      h = sn_conv(self.features, 1)(h, update_stats=train)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       scale_init=_bn_scale_init)(h)
      h = nn.relu(h)
    return nn.sigmoid(sn_conv(1, 1)(h, update_stats=train))


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> tuple[nn.Module, nn.Module]:  # noqa: N802
  """(generator, discriminator) of a variant; keys as in VARIANTS."""
  v = common.resolve_variant(VARIANTS, variant or "paper", kw)
  return (KernelGenerator(structure=tuple(v["structure"]), features=v["features"], scale=scale),
          KernelDiscriminator(features=v["d_features"], kernel_size=v["d_kernel"],
                              layers=v["d_layers"]))
