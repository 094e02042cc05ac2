"""SRMD / SRMDNF (Zhang, Zuo, Zhang, "Learning a Single Convolutional Super-Resolution Network for
Multiple Degradations", CVPR 2018).

The input is the LR image concatenated with its degradation maps ("dimensionality stretching"):
the blur kernel's t = 15 PCA code and, for SRMD, the noise level, each stretched to a constant
h x w map. SRMD: 3 + 15 + 1 = 19 input channels; SRMDNF (noise-free): 3 + 15 = 18. The network is
a plain stack of `depth` = 12 3x3 conv layers of 128 features (paper, Sec. 3.3 / Fig. 2, and the
authors' `model_init_SRMD_x3.m`): Conv+ReLU, then depth - 2 Conv+BN+ReLU, then a Conv to
3 s^2 channels and a pixel shuffle (one sub-pixel stage, also at x4). No residual learning, no
bicubic input (the paper: with BN and Adam it trains without them, and bicubic upsampling of a noisy
LR would complicate the noise).

Layer count: KAIR's `models/network_srmd.py` headline comment says "15 conv layers" and its
`__main__` builds nb=15 with nc=64, but its `SRMD(nb=12, nc=128)` defaults and `main_test_srmd.py`
(nb = 12, "fixed") agree with the paper's 12, which is what is built here.

BatchNorm: the paper and the authors' training code (`useBnorm = 1`) train with BN after every
middle conv; after training they fold BN into the convs and fine-tune the folded network at lr
1e-5, so the released weights (and KAIR's inference network, act_mode='R') have no BN. Here the
paper variants keep BN (`batch_norm=True`): in eval mode a BN layer is an affine map, which is
exactly what folding makes, so `predict` computes the folded network; the short BN-free
fine-tune at the end is not reproduced. `batch_norm=False` builds KAIR's inference layout.
The tiny variant has no BN (its 2-image runlocal batches would make batch statistics noise).

Weights: orthogonal init as `orthrize` in the MATLAB code (the 3*3*C_in x C_out matrix with
orthonormal columns); BN scale 1, bias 0 (the MATLAB code draws small random scales: DnCNN's
habit, not described in the paper).

`degradation` is (N, t) (one vector per image, stretched here) or (N, h, w, t) (spatially variant
maps, as the paper allows); t = code_dim + 1 with a noise channel, code_dim without.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    # 1.51M params at x2 (1,514,252; 1,531,547 at x3, 1,555,760 at x4), of which BN's scales and
    # biases are 2,560 (plus 2,560 running statistics in batch_stats).
    "srmd": dict(depth=12, features=128, noise_channel=True, batch_norm=True),
    # 1,513,100 params at x2: the first conv has 3*3*128 = 1,152 fewer weights.
    "srmdnf": dict(depth=12, features=128, noise_channel=False, batch_norm=True),
    # 9,132 params at x2.
    "tiny": dict(depth=4, features=16, noise_channel=True, batch_norm=False),
}

CODE_DIM = 15  # t, the PCA code length of the paper (and of jsr/assets/srmd_pca.npz).


def stretch(degradation, height: int, width: int):
  """(N, t) vectors -> (N, height, width, t) constant maps; (N, h, w, t) maps pass through."""
  if degradation.ndim == 2:
    n, t = degradation.shape
    return jnp.broadcast_to(degradation[:, None, None, :], (n, height, width, t))
  if degradation.ndim == 4 and degradation.shape[1:3] == (height, width):
    return degradation
  raise ValueError(f"SRMD degradation must be (N, t) or (N, {height}, {width}, t), "
                   f"got shape {degradation.shape}")


class SRMD(nn.Module):
  scale: int = 2
  depth: int = 12
  features: int = 128
  noise_channel: bool = True
  batch_norm: bool = True
  code_dim: int = CODE_DIM
  dtype: Any = jnp.float32

  @property
  def map_channels(self) -> int:
    return self.code_dim + int(self.noise_channel)

  @nn.compact
  def __call__(self, lr, degradation, train: bool = False):
    if self.depth < 2:
      raise ValueError(f"SRMD depth must be >= 2 conv layers, got {self.depth}")
    n, h, w, c = lr.shape
    maps = stretch(jnp.asarray(degradation, jnp.float32), h, w)
    if maps.shape[-1] != self.map_channels:
      raise ValueError(f"SRMD ({'with' if self.noise_channel else 'without'} noise channel) "
                       f"takes {self.map_channels} degradation channels, got {maps.shape[-1]}")
    x = jnp.concatenate([lr.astype(jnp.float32), maps], axis=-1).astype(self.dtype)
    init = nn.initializers.orthogonal()
    x = nn.relu(common.conv(self.features, 3, dtype=self.dtype, kernel_init=init)(x))
    for _ in range(self.depth - 2):
      x = common.conv(self.features, 3, dtype=self.dtype, kernel_init=init)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.relu(x)
    x = common.conv(c * self.scale ** 2, 3, dtype=self.dtype, kernel_init=init)(x)
    return common.pixel_shuffle(x, self.scale).astype(jnp.float32)


def Model(*, variant: str | None = None, scale: int = 2, **kw) -> SRMD:
  return SRMD(scale=scale, **common.resolve_variant(VARIANTS, variant, kw))
