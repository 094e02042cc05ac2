"""The jsr networks written idiomatically in PyTorch, for scripts/bench_train.py.

Same architectures, layer for layer, as jsr/models/{edsr,rcan,selfsup_net}.py: NCHW `nn.Conv2d`
(padding k // 2, PyTorch's default init), `nn.PixelShuffle` for EDSR/RCAN (jsr's pixel_shuffle
uses PyTorch's channel order), dm_pix's depth-to-space order for the selfsup net (what jsr uses
there), the DIV2K mean shift as a constant (no parameters, like jsr), and MATLAB bicubic as the
two dense per-axis matrices of `jsr.ops.resize.resize_matrix` (what jsr's imresize multiplies by).
Convolutions are created in the order of jsr's forward pass, so `load_flax_params` can copy jsr's
weights in and the outputs can be compared (`bench_train.py --check`).

Only numpy and jsr.ops.resize (numpy + jax.numpy) are imported from jsr: no TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jsr.ops.resize import output_size, resize_matrix

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

# --------------------------------------------------------------------------------------------
# EDSR / RCAN (reference code: thstkdgus35/EDSR-PyTorch, yulunzhang/RCAN).
# --------------------------------------------------------------------------------------------


def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, k, padding=k // 2)


class MeanShift(nn.Module):
  def __init__(self, sign: float, rgb_range: float = 1.0):
    super().__init__()
    self.register_buffer("shift", sign * rgb_range *
                         torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)

  def forward(self, x):
    return x + self.shift


class Upsampler(nn.Sequential):
  def __init__(self, features: int, scale: int):
    stages = [3] if scale == 3 else [2] * int(math.log2(scale))
    layers = []
    for r in stages:
      layers += [conv(features, r * r * features), nn.PixelShuffle(r)]
    super().__init__(*layers)


class ResBlock(nn.Module):
  def __init__(self, features: int, res_scale: float = 1.0):
    super().__init__()
    self.body = nn.Sequential(conv(features, features), nn.ReLU(inplace=True),
                              conv(features, features))
    self.res_scale = res_scale

  def forward(self, x):
    return x + self.body(x) * self.res_scale if self.res_scale != 1.0 else x + self.body(x)


class EDSR(nn.Module):
  def __init__(self, scale: int = 2, features: int = 64, blocks: int = 16, res_scale: float = 1.0):
    super().__init__()
    self.sub_mean, self.add_mean = MeanShift(-1.0), MeanShift(1.0)
    self.head = conv(3, features)
    self.body = nn.Sequential(*[ResBlock(features, res_scale) for _ in range(blocks)],
                              conv(features, features))
    self.tail = nn.Sequential(Upsampler(features, scale), conv(features, 3))

  def forward(self, x):
    h = self.head(self.sub_mean(x))
    return self.add_mean(self.tail(h + self.body(h)))


class ChannelAttention(nn.Module):
  def __init__(self, features: int, reduction: int):
    super().__init__()
    self.pool = nn.AdaptiveAvgPool2d(1)
    self.du = nn.Sequential(conv(features, features // reduction, 1), nn.ReLU(inplace=True),
                            conv(features // reduction, features, 1), nn.Sigmoid())

  def forward(self, x):
    return x * self.du(self.pool(x))


class RCAB(nn.Module):
  def __init__(self, features: int, reduction: int):
    super().__init__()
    self.body = nn.Sequential(conv(features, features), nn.ReLU(inplace=True),
                              conv(features, features), ChannelAttention(features, reduction))

  def forward(self, x):
    return x + self.body(x)


class ResidualGroup(nn.Module):
  def __init__(self, features: int, blocks: int, reduction: int):
    super().__init__()
    self.body = nn.Sequential(*[RCAB(features, reduction) for _ in range(blocks)],
                              conv(features, features))

  def forward(self, x):
    return x + self.body(x)


class RCAN(nn.Module):
  def __init__(self, scale: int = 4, features: int = 64, groups: int = 10, blocks: int = 20,
               reduction: int = 16):
    super().__init__()
    self.sub_mean, self.add_mean = MeanShift(-1.0), MeanShift(1.0)
    self.head = conv(3, features)
    self.body = nn.Sequential(*[ResidualGroup(features, blocks, reduction) for _ in range(groups)],
                              conv(features, features))
    self.tail = nn.Sequential(Upsampler(features, scale), conv(features, 3))

  def forward(self, x):
    h = self.head(self.sub_mean(x))
    return self.add_mean(self.tail(h + self.body(h)))


# --------------------------------------------------------------------------------------------
# The self-supervised method's network and loss.
# --------------------------------------------------------------------------------------------


class Resize(nn.Module):
  """MATLAB imresize by a fixed factor on NCHW tensors of a fixed size: two matmuls."""

  def __init__(self, in_size: int, scale: float):
    super().__init__()
    out = output_size(in_size, scale)
    m = torch.from_numpy(resize_matrix(in_size, out, scale))
    self.register_buffer("m", m, persistent=False)

  def forward(self, x):
    # float32 like jsr's imresize (precision="highest"), also under bf16 autocast.
    with torch.autocast(x.device.type, enabled=False):
      return torch.matmul(torch.matmul(self.m, x.float()), self.m.t())  # (o,h)@(..,h,w)@(w,p)


def depth_to_space_dcr(x, r: int):
  """dm_pix.depth_to_space order (channel (i * r + j) * C + c), NCHW."""
  n, crr, h, w = x.shape
  c = crr // (r * r)
  x = x.view(n, r, r, c, h, w).permute(0, 3, 4, 1, 5, 2)  # n, c, h, i, w, j
  return x.reshape(n, c, h * r, w * r)


class SelfSupNet(nn.Module):
  def __init__(self, scale: int, patch: int, features: int = 32, blocks: int = 4):
    super().__init__()
    self.scale = scale
    self.head = conv(3, features)
    self.blocks = nn.Sequential(*[ResBlock(features) for _ in range(blocks)])
    self.body_out = conv(features, features)
    self.tail = conv(features, 3 * scale * scale)
    nn.init.zeros_(self.tail.weight)
    nn.init.zeros_(self.tail.bias)
    # Bicubic skips for the two input sizes the loss feeds: y and the pair term's D(y).
    self.up = nn.ModuleDict({str(s): Resize(s, scale) for s in {patch, patch // scale}})

  def forward(self, lr):
    x = self.head(lr)
    x = self.body_out(self.blocks(x)) + x
    out = depth_to_space_dcr(self.tail(x), self.scale).float()
    return out + self.up[str(lr.shape[-1])](lr)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
  x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
  g = torch.exp(-0.5 * (x / sigma) ** 2)
  return g / g.sum()


def ssim(x, y, window: torch.Tensor, max_val: float = 1.0):
  """Mean SSIM (dm_pix.ssim: separable Gaussian, valid, k1 = 0.01, k2 = 0.03), NCHW float32."""
  with torch.autocast(x.device.type, enabled=False):
    return _ssim(x, y, window, max_val)


def _ssim(x, y, window, max_val):
  c = x.shape[1]
  x, y = x.float(), y.float()
  wh = window.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
  ww = window.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
  blur = lambda z: F.conv2d(F.conv2d(z, wh, groups=c), ww, groups=c)
  mu_x, mu_y = blur(x), blur(y)
  sxx = blur(x * x) - mu_x ** 2
  syy = blur(y * y) - mu_y ** 2
  sxy = blur(x * y) - mu_x * mu_y
  eps = torch.finfo(torch.float32).eps ** 2  # dm_pix clips the (co)variances the same way
  sxx, syy = sxx.clamp_min(eps), syy.clamp_min(eps)
  sxy = torch.sign(sxy) * torch.minimum(torch.sqrt(sxx * syy), sxy.abs())
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
  den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
  return (num / den).mean()


class SelfSupLoss(nn.Module):
  """configs/selfsup.py's default loss: alpha * L2 + beta * (1 - SSIM) on down(f(y)) vs y (margin
  cropped) + delta * L2(f(down(y)), y); bicubic degradation, gamma (TV) = 0."""

  def __init__(self, scale: int, patch: int, alpha=1.0, beta=0.01, delta=1.0, margin=2):
    super().__init__()
    self.alpha, self.beta, self.delta, self.margin = alpha, beta, delta, margin
    self.down_hr = Resize(patch * scale, 1.0 / scale)  # f(y) -> y'
    self.down_lr = Resize(patch, 1.0 / scale)          # y -> D(y) for the pair term
    self.register_buffer("window", gaussian_window(), persistent=False)

  def forward(self, net, lr):
    # The net runs under autocast if the caller set one; resizes, SSIM and MSE in float32 (jsr's
    # model returns float32 and its losses compute in float32).
    m = self.margin
    crop = (lambda z: z[:, :, m:-m, m:-m]) if m else (lambda z: z)
    lr_pred = self.down_hr(net(lr))
    y, yp = crop(lr), crop(lr_pred)
    total = self.alpha * F.mse_loss(yp, y) + self.beta * (1.0 - ssim(yp, y, self.window))
    return total + self.delta * F.mse_loss(net(self.down_lr(lr)), lr)


# --------------------------------------------------------------------------------------------
# Construction and weights.
# --------------------------------------------------------------------------------------------


def build(family: str, variant_kw: dict, scale: int, patch: int) -> nn.Module:
  if family == "edsr":
    return EDSR(scale=scale, **variant_kw)
  if family == "rcan":
    return RCAN(scale=scale, **variant_kw)
  if family == "selfsup":
    return SelfSupNet(scale=scale, patch=patch, **variant_kw)
  raise ValueError(f"no torch peer for {family!r}")


def count_params(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def _flax_convs(tree):
  """(kernel, bias) of every flax conv in creation order (dicts keep insertion order; jax's
  tree_util would sort the keys: block10 before block2)."""
  if "kernel" in tree:
    yield tree["kernel"], tree.get("bias")
    return
  for v in tree.values():
    yield from _flax_convs(v)


@torch.no_grad()
def load_flax_params(module: nn.Module, params) -> None:
  """Copy jsr's (flax, HWIO) conv weights into the peer (OIHW), layer by layer in order."""
  convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
  flax = list(_flax_convs(params))
  if len(convs) != len(flax):
    raise ValueError(f"{len(convs)} torch convs vs {len(flax)} flax convs")
  for m, (k, b) in zip(convs, flax):
    w = torch.from_numpy(np.asarray(k, np.float32).transpose(3, 2, 0, 1).copy())
    if w.shape != m.weight.shape:
      raise ValueError(f"shape mismatch {tuple(w.shape)} vs {tuple(m.weight.shape)}")
    m.weight.copy_(w)
    m.bias.copy_(torch.from_numpy(np.array(b, np.float32)))


def conv_flops(module: nn.Module, x: torch.Tensor) -> int:
  """Forward multiply-add FLOPs (2 per MAC) of every Conv2d for input x, counted from shapes."""
  total = [0]

  def hook(m, inp, out):
    k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
    total[0] += 2 * out.numel() * k

  handles = [m.register_forward_hook(hook) for m in module.modules()
             if isinstance(m, nn.Conv2d)]
  with torch.no_grad():
    module(x)
  for h in handles:
    h.remove()
  return total[0]
