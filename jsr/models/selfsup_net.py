"""The self-supervised method's network: a post-upsampling residual CNN with a bicubic skip.

    sr = bicubic(lr) + PixelShuffle(conv(body(head(lr))))     (the skip's kernel is configurable)

All convolutions run at LR resolution (cheap), the sub-pixel layer does the upsampling, and the
output layer starts at zero so an untrained network is exactly MATLAB bicubic: training can only
move away from the bicubic baseline where the loss asks for it.
"""

from __future__ import annotations

from typing import Any, Callable

import dm_pix as pix
import flax.linen as nn
import jax
import jax.numpy as jnp

from jsr.ops.resize import imresize

VARIANTS = {
    "tiny": dict(features=8, blocks=1),     # 2.9K params at x2; for tests
    "small": dict(features=32, blocks=4),   # 85K params at x2
    "base": dict(features=64, blocks=8),    # 0.60M params at x2
    "large": dict(features=64, blocks=16),  # 1.19M params at x2
}


class ResBlock(nn.Module):
  features: int
  res_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.features, (3, 3), dtype=self.dtype)(x)
    y = nn.relu(y)
    y = nn.Conv(self.features, (3, 3), dtype=self.dtype)(y)
    return x + self.res_scale * y


class SelfSupNet(nn.Module):
  """LR (N, h, w, C) in [0, 1] -> SR (N, h*s, w*s, C), not clipped."""
  scale: int
  features: int = 32
  blocks: int = 4
  res_scale: float = 1.0
  channels: int = 3
  # The global skip: MATLAB imresize of the input with this kernel ("cubic", "lanczos2",
  # "lanczos3", "bilinear", ...) is added to the output; "none" drops it. With the consistency loss
  # alone it decides what the output holds in the null space of the degradation (see
  # docs/selfsup.md): the loss never changes that part.
  skip: str = "cubic"
  zero_tail: bool = True      # start as exactly the skip's interpolation
  # How the residual reaches HR: "shuffle" (sub-pixel conv, s^2*C channels) or "adjoint": the tail
  # gives C channels at LR and the residual is D^T of them, D = `degrade` (the assumed linear
  # degradation hr -> lr). Then the output differs from the skip only in D's row space, the part
  # the consistency loss sees; nothing unobserved is added (docs/selfsup.md).
  tail: str = "shuffle"
  degrade: Callable | None = None
  dtype: Any = jnp.float32  # computation dtype; params stay float32

  @nn.compact
  def __call__(self, lr, train: bool = False):
    del train  # no batch norm or dropout
    x = nn.Conv(self.features, (3, 3), dtype=self.dtype, name="head")(lr)
    skip = x
    for i in range(self.blocks):
      x = ResBlock(self.features, self.res_scale, self.dtype, name=f"block_{i}")(x)
    x = nn.Conv(self.features, (3, 3), dtype=self.dtype, name="body_out")(x) + skip
    tail_init = nn.initializers.zeros if self.zero_tail else nn.linear.default_kernel_init
    if self.tail == "shuffle":
      x = nn.Conv(self.channels * self.scale**2, (3, 3), dtype=self.dtype,
                  kernel_init=tail_init, name="tail")(x)
      out = pix.depth_to_space(x, self.scale).astype(jnp.float32)
    elif self.tail == "adjoint":
      if self.degrade is None:
        raise ValueError("SelfSupNet: tail='adjoint' needs the degradation (degrade=hr -> lr)")
      x = nn.Conv(self.channels, (3, 3), dtype=self.dtype, kernel_init=tail_init,
                  name="tail")(x).astype(jnp.float32)
      n, h, w, c = x.shape
      hr = jax.ShapeDtypeStruct((n, h * self.scale, w * self.scale, c), jnp.float32)
      (out,) = jax.linear_transpose(self.degrade, hr)(x)
    else:
      raise ValueError(f"SelfSupNet: tail must be 'shuffle' or 'adjoint', got {self.tail!r}")
    if self.skip != "none":
      out = out + imresize(lr.astype(jnp.float32), self.scale, kernel=self.skip)
    return out


def Model(*, variant: str | None = None, scale: int, **kw) -> SelfSupNet:  # noqa: N802
  """SelfSupNet from a VARIANTS name, with keyword overrides (features=, blocks=, dtype=)."""
  if variant is not None:
    if variant not in VARIANTS:
      raise ValueError(f"selfsup_net: unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    kw = {**VARIANTS[variant], **kw}
  return SelfSupNet(scale=scale, **kw)
