"""VGG16 / VGG19 feature stacks (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015): the convolutional part only, for perceptual losses
(SRGAN, ESRGAN) and LPIPS.

Layer for layer torchvision's `vgg16().features` / `vgg19().features`: 3x3 'SAME' convolutions
with ReLU, a 2x2 max-pool (stride 2) after each of the five blocks, no classifier. Convolutions
are named as the literature names them, `conv<block>_<index>` (conv1_1, conv1_2, conv2_1, ...,
conv5_3 for VGG16, conv5_4 for VGG19), so that pretrained weights map by name
(`jsr.pretrained.load_vgg`).

Taps (what the module returns) follow BasicSR's perceptual-loss convention, and the name says
which side of the ReLU it is:

* `conv5_4`: the convolution's output *before* its ReLU (ESRGAN's loss: sharper, signed features);
* `relu5_4`: the same features *after* the ReLU (SRGAN's VGG54, LPIPS's relu1_2 ... relu5_3);
* `pool5`: after the block's max-pool.

`VGGFeatures(arch="vgg19")(x, taps=("conv5_4",))` returns `{"conv5_4": features}`, float32.
Only the layers up to the deepest requested tap run: a loss on relu2_2 never computes conv3_1 and
beyond (and those parameters need not even be present).

Input: NHWC RGB in [0, 1] (a single gray channel is used as R = G = B). With `normalize=True`
(default) the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) that torchvision's
weights expect are applied inside the module; LPIPS passes `normalize=False` and does its own
scaling (which is the same affine map, written as [-1, 1] input with a shift and scale).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jsr.models import common

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Output channels of each block's convolutions (torchvision's configurations "D" and "E").
BLOCKS = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

VARIANTS = {
    "vgg16": dict(arch="vgg16"),  # 14,714,688 params (torchvision's vgg16().features)
    "vgg19": dict(arch="vgg19"),  # 20,024,384 params (torchvision's vgg19().features)
}


def conv_names(arch: str) -> list[str]:
  """The convolutions of `arch` in order: ["conv1_1", "conv1_2", "conv2_1", ...]."""
  return [f"conv{b + 1}_{i + 1}" for b, widths in enumerate(_blocks(arch))
          for i in range(len(widths))]


def tap_names(arch: str) -> list[str]:
  """Every valid tap of `arch`, in the order the forward pass reaches them."""
  names = []
  for b, widths in enumerate(_blocks(arch)):
    for i in range(len(widths)):
      names += [f"conv{b + 1}_{i + 1}", f"relu{b + 1}_{i + 1}"]
    names.append(f"pool{b + 1}")
  return names


def _blocks(arch: str):
  if arch not in BLOCKS:
    raise ValueError(f"unknown VGG arch {arch!r}; choose from {sorted(BLOCKS)}")
  return BLOCKS[arch]


def check_taps(arch: str, taps: Sequence[str]) -> list[str]:
  """`taps` as a list, or a ValueError naming the unknown ones and the naming convention."""
  if isinstance(taps, str):
    taps = (taps,)
  valid = tap_names(arch)
  unknown = [t for t in taps if t not in valid]
  if unknown or not taps:
    raise ValueError(f"VGGFeatures({arch}): unknown taps {unknown or '(none given)'}; "
                     f"taps are convB_I (before ReLU), reluB_I (after) or poolB, "
                     f"from {valid[0]} to {valid[-1]}")
  return list(taps)


def rgb_input(x, where: str):
  """(N, H, W, 3) images as given; (N, H, W, 1) gray images as R = G = B."""
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"{where}: expected NHWC RGB (or gray) images, got shape {x.shape}")
  return jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


class VGGFeatures(nn.Module):
  """VGG16/VGG19 convolutional features at named taps (see the module docstring).

  Attributes:
    arch: "vgg16" or "vgg19".
    normalize: apply the ImageNet mean/std to the [0, 1] input (torchvision's preprocessing).
    dtype: computation dtype (e.g. bfloat16); parameters are float32 and taps are returned as
      float32.
  """
  arch: str = "vgg19"
  normalize: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, taps: Sequence[str] | None = None) -> dict[str, jnp.ndarray]:
    """Features of `x` at `taps` (default: the last ReLU, relu5_3 / relu5_4: the whole stack).

    Args:
      x: (N, H, W, 3) float images in [0, 1] (or already scaled when `normalize=False`).
      taps: tap names, e.g. ("relu2_2", "conv5_4"); a static argument under jit.

    Returns:
      {tap: (N, h, w, C) float32} for each requested tap, h = H / 2^(pools before it).
    """
    blocks = _blocks(self.arch)
    if taps is None:
      taps = (f"relu5_{len(blocks[-1])}",)
    taps = check_taps(self.arch, taps)
    order = tap_names(self.arch)
    last = max(order.index(t) for t in taps)
    wanted = set(taps)

    h = rgb_input(x, "VGGFeatures").astype(jnp.float32)
    if self.normalize:
      h = (h - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    h = h.astype(self.dtype)
    out = {}

    def emit(name, value):
      if name in wanted:
        out[name] = value.astype(jnp.float32)
      return order.index(name) >= last  # Nothing deeper is needed: stop here.

    for b, widths in enumerate(blocks):
      for i, features in enumerate(widths):
        name = f"{b + 1}_{i + 1}"
        h = common.conv(features, 3, dtype=self.dtype, name=f"conv{name}")(h)
        if emit(f"conv{name}", h):
          return out
        h = nn.relu(h)
        if emit(f"relu{name}", h):
          return out
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
      if emit(f"pool{b + 1}", h):
        return out
    return out


def Model(*, variant: str | None = None, **kw) -> VGGFeatures:  # noqa: N802
  """`VGGFeatures` by variant name ("vgg16", "vgg19"), for `jsr.models.get_model("vgg", ...)`."""
  return VGGFeatures(**common.resolve_variant(VARIANTS, variant, kw))
