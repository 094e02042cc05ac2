"""GAN discriminators for SR: SRGAN/ESRGAN's VGG-style classifier, Real-ESRGAN's U-Net with
spectral norm, and pix2pix's PatchGAN.

- `VGGStyleDiscriminator` (BasicSR's, used by SRGAN and ESRGAN): ten conv-BN-LeakyReLU layers,
  3x3 stride 1 and 4x4 stride 2 (no bias) alternating, 64 -> 512 features, down to 4x4 (a 128 px
  crop; 256 px adds one more pair), then linear 100 -> LeakyReLU -> linear 1. One logit per image,
  shape (N, 1). The linear layer fixes the input size, so a wrong crop is an error, not a reshape.
- `UNetDiscriminatorSN` (Real-ESRGAN): conv0 -> three 4x4 stride-2 downsamplings -> three
  (bilinear x2 -> 3x3 conv) upsamplings with additive skips -> two 3x3 convs -> conv9 to one
  channel. Per-pixel logits (N, H, W, 1), so it judges local texture as well as global structure.
  All convs but the first and last are spectrally normalised (`flax.linen.SpectralNorm`): their
  power-iteration vectors `u` and the estimates `sigma` live in `batch_stats`, updated when
  `train=True` (apply with `mutable=["batch_stats"]`). H and W must be divisible by 8.
  Two differences from torch's `spectral_norm`, both flax's: at init the stored kernel is already
  divided by the first (one-step) estimate of its norm (about 1.6x PyTorch's default init at
  paper size; the forward is invariant to the kernel's scale, so only the optimiser sees it), and
  in eval mode the power iteration still runs from the stored u (without storing), where torch
  uses the stored u and v as they are.
- `PatchDiscriminator` (pix2pix's NLayerDiscriminator, "70x70 PatchGAN"): 4x4 convs, stride 2 for
  the first `layers`, then two stride-1 ones; one logit per overlapping patch,
  (N, H/2^layers - 2, W/2^layers - 2, 1) for H, W divisible by 2^layers.

Every network takes NHWC images (in [0, 1] or whatever the method feeds it), computes in `dtype`
with float32 parameters, returns float32 logits and accepts `train` (BatchNorm batch statistics,
spectral-norm power iteration). With BatchNorm or spectral norm, `init` creates a `batch_stats`
collection; apply with `mutable=["batch_stats"]` when `train=True`.

Initialisation follows each reference: PyTorch's default for BasicSR's two (neither calls
`default_init_weights`), pix2pix's N(0, 0.02) for the PatchGAN. Names follow the reference state
dicts (conv0_0, bn0_1, linear1, conv1..conv9, ...) so weights could be ported; the VGG-style
classifier flattens in PyTorch's (C, H, W) order so that linear1 ports by a transpose alone.

Construct one with `vgg_style(variant)`, `unet_sn(variant)`, `patch(variant)`, or
`Model(kind=..., variant=...)` (which `jsr.models.get_model("discriminators", kind=...)` reaches).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jsr.models import common

VARIANTS = {
    "vgg_style": {
        "tiny": dict(features=8),
        # 14,499,401 params at 128 px (BasicSR's count; BN running statistics are not params)
        "paper": dict(features=64, input_size=128),
        "paper_256": dict(features=64, input_size=256),  # 21,055,049 params
    },
    "unet_sn": {
        "tiny": dict(features=8),
        # 4,376,897 params, BasicSR's/Real-ESRGAN's weight_orig + biases (u, v are buffers)
        "paper": dict(features=64, skip_connection=True),
    },
    "patch": {
        "tiny": dict(features=8),
        # 2,765,633 params on RGB (2,768,705 on pix2pix's 6-channel conditional input)
        "paper": dict(features=64, layers=3, norm="batch"),
    },
}


def lrelu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


def _conv4x4(features, strides, *, dtype, use_bias, kernel_init=common.torch_default, name=None):
  """PyTorch's Conv2d(k=4, stride, padding=1): explicit padding, since 'SAME' pads a stride-1
  4x4 conv asymmetrically (1, 2) instead of (1, 1)."""
  return nn.Conv(features, (4, 4), strides=(strides, strides), padding=((1, 1), (1, 1)),
                 use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init,
                 name=name)


def _batch_norm(train, dtype, name=None, scale_init=nn.initializers.ones):
  # PyTorch's BatchNorm2d: momentum 0.1 on the running statistics (flax counts the other way).
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      param_dtype=jnp.float32, scale_init=scale_init, name=name)


def upsample_bilinear_2x(x):
  """PyTorch's F.interpolate(scale_factor=2, mode='bilinear', align_corners=False), exactly, NHWC.

  Output pixel 2q samples the input at q - 1/4 and 2q + 1 at q + 1/4, so each is 3/4 of pixel q
  plus 1/4 of its neighbour (q - 1 or q + 1), the edge pixel standing in for the missing one.
  Slices and adds only: no (out x in) interpolation matrices as `jax.image.resize` builds.
  """
  for axis in (1, 2):
    n = x.shape[axis]
    first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis=axis)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    shape = list(x.shape)
    shape[axis] *= 2
    x = jnp.stack([even, odd], axis=axis + 1).reshape(shape)
  return x


# ---------------------------------------------------------------------------------- VGG-style

class VGGStyleDiscriminator(nn.Module):
  """BasicSR's VGGStyleDiscriminator: a 128 (or 256) px crop -> one logit, shape (N, 1)."""
  features: int = 64
  input_size: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    s = self.input_size
    if s not in (128, 256):
      raise ValueError(f"VGGStyleDiscriminator: input_size must be 128 or 256 (as BasicSR), "
                       f"got {s}")
    n, h, w, _ = x.shape
    if (h, w) != (s, s):
      raise ValueError(f"VGGStyleDiscriminator(input_size={s}) expects {s}x{s} crops (its linear "
                       f"layer is sized for them), got {h}x{w}"
                       + ("; use input_size=256 for 256 px crops" if (h, w) == (256, 256) else ""))
    dt, f = self.dtype, self.features
    norm = lambda name: _batch_norm(train, dt, name)

    y = lrelu(common.conv(f, 3, dtype=dt, name="conv0_0")(x))
    y = lrelu(norm("bn0_1")(_conv4x4(f, 2, dtype=dt, use_bias=False, name="conv0_1")(y)))
    widths = [2 * f, 4 * f, 8 * f, 8 * f] + ([8 * f] if s == 256 else [])
    for i, width in enumerate(widths, start=1):  # each pair halves the size: 4x4 at the end
      y = lrelu(norm(f"bn{i}_0")(
          common.conv(width, 3, dtype=dt, use_bias=False, name=f"conv{i}_0")(y)))
      y = lrelu(norm(f"bn{i}_1")(
          _conv4x4(width, 2, dtype=dt, use_bias=False, name=f"conv{i}_1")(y)))
    # Flatten in PyTorch's (C, H, W) order: linear1's weight then ports by a transpose alone.
    y = y.transpose(0, 3, 1, 2).reshape(n, -1)
    dense = lambda k, name: nn.Dense(k, dtype=dt, param_dtype=jnp.float32,
                                     kernel_init=common.torch_default, name=name)
    y = lrelu(dense(100, "linear1")(y))
    return dense(1, "linear2")(y).astype(jnp.float32)


# --------------------------------------------------------------------------------- U-Net + SN

class UNetDiscriminatorSN(nn.Module):
  """Real-ESRGAN's U-Net discriminator with spectral norm: per-pixel logits (N, H, W, 1)."""
  features: int = 64
  skip_connection: bool = True
  sn_steps: int = 1  # power iterations per call (torch's spectral_norm default: 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    n, h, w, _ = x.shape
    if h % 8 or w % 8:
      raise ValueError(f"UNetDiscriminatorSN downsamples by 8: the input size {h}x{w} must be "
                       f"divisible by 8")
    dt, f = self.dtype, self.features

    def sn_conv(features, kernel_size, strides, name):
      if kernel_size == 4:
        layer = _conv4x4(features, strides, dtype=dt, use_bias=False, name=name)
      else:
        layer = common.conv(features, kernel_size, dtype=dt, use_bias=False, name=name)
      # The kernel stays a plain parameter under `name` (torch's weight_orig); the wrapper owns
      # only the batch_stats (u, sigma), under f"{name}_sn".
      sn = nn.SpectralNorm(layer, n_steps=self.sn_steps, name=f"{name}_sn")
      return lambda y: lrelu(sn(y, update_stats=train))

    x0 = lrelu(common.conv(f, 3, dtype=dt, name="conv0")(x))
    x1 = sn_conv(2 * f, 4, 2, "conv1")(x0)
    x2 = sn_conv(4 * f, 4, 2, "conv2")(x1)
    x3 = sn_conv(8 * f, 4, 2, "conv3")(x2)

    x4 = sn_conv(4 * f, 3, 1, "conv4")(upsample_bilinear_2x(x3))
    if self.skip_connection:
      x4 = x4 + x2
    x5 = sn_conv(2 * f, 3, 1, "conv5")(upsample_bilinear_2x(x4))
    if self.skip_connection:
      x5 = x5 + x1
    x6 = sn_conv(f, 3, 1, "conv6")(upsample_bilinear_2x(x5))
    if self.skip_connection:
      x6 = x6 + x0

    out = sn_conv(f, 3, 1, "conv7")(x6)
    out = sn_conv(f, 3, 1, "conv8")(out)
    return common.conv(1, 3, dtype=dt, name="conv9")(out).astype(jnp.float32)


# ---------------------------------------------------------------------------------- PatchGAN

class PatchDiscriminator(nn.Module):
  """pix2pix's NLayerDiscriminator: a map of logits, one per overlapping patch, (N, h, w, 1).

  `norm` is "batch" (pix2pix's default; convs before it have no bias), "instance" (no affine, as
  pix2pix's InstanceNorm2d) or "none".
  """
  features: int = 64
  layers: int = 3
  norm: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.norm not in ("batch", "instance", "none"):
      raise ValueError(f"PatchDiscriminator: norm must be 'batch', 'instance' or 'none', "
                       f"got {self.norm!r}")
    dt, f = self.dtype, self.features
    init = nn.initializers.normal(0.02)  # pix2pix's init_weights('normal', gain=0.02)

    def normalise(y, name):
      if self.norm == "batch":
        # pix2pix: BatchNorm weight ~ N(1, 0.02), bias 0.
        scale_init = lambda key, shape, dtype: 1.0 + init(key, shape, dtype)
        return _batch_norm(train, dt, name, scale_init=scale_init)(y)
      if self.norm == "instance":
        return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dt,
                               name=name)(y)
      return y

    use_bias = self.norm != "batch"
    y = lrelu(_conv4x4(f, 2, dtype=dt, use_bias=True, kernel_init=init, name="conv0")(x))
    for i in range(1, self.layers + 1):
      width = f * min(2**i, 8)
      stride = 2 if i < self.layers else 1
      y = _conv4x4(width, stride, dtype=dt, use_bias=use_bias, kernel_init=init, name=f"conv{i}")(y)
      y = lrelu(normalise(y, f"norm{i}"))
    y = _conv4x4(1, 1, dtype=dt, use_bias=True, kernel_init=init, name=f"conv{self.layers + 1}")(y)
    return y.astype(jnp.float32)


# --------------------------------------------------------------------------------- factories

_CLASSES = {"vgg_style": VGGStyleDiscriminator, "unet_sn": UNetDiscriminatorSN,
            "patch": PatchDiscriminator}


def Model(*, kind: str, variant: str | None = None, **kw) -> nn.Module:
  """The discriminator `kind` ("vgg_style", "unet_sn" or "patch") with `variant`'s settings,
  overridden by `kw`."""
  if kind not in _CLASSES:
    raise ValueError(f"unknown discriminator kind {kind!r}; choose from {sorted(_CLASSES)}")
  return _CLASSES[kind](**common.resolve_variant(VARIANTS[kind], variant, kw))


def vgg_style(variant: str | None = None, **kw) -> VGGStyleDiscriminator:
  return Model(kind="vgg_style", variant=variant, **kw)


def unet_sn(variant: str | None = None, **kw) -> UNetDiscriminatorSN:
  return Model(kind="unet_sn", variant=variant, **kw)


def patch(variant: str | None = None, **kw) -> PatchDiscriminator:
  return Model(kind="patch", variant=variant, **kw)
