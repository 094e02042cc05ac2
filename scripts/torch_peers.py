"""The jsr networks written idiomatically in PyTorch, for scripts/bench_train.py.

Same architectures, layer for layer, as jsr/models/{edsr,rcan,selfsup_net}.py (and for the GAN
step: srresnet.py, rrdbnet.py, discriminators.py's VGG-style D, vgg.py's VGG19): NCHW `nn.Conv2d`
(padding k // 2, PyTorch's default init), `nn.PixelShuffle` for EDSR/RCAN (jsr's pixel_shuffle
uses PyTorch's channel order), dm_pix's depth-to-space order for the selfsup net (what jsr uses
there), the DIV2K mean shift as a constant (no parameters, like jsr), and MATLAB bicubic as the
two dense per-axis matrices of `jsr.ops.resize.resize_matrix` (what jsr's imresize multiplies by).
Convolutions are created in the order of jsr's forward pass, so `load_flax_params` can copy jsr's
weights in and the outputs can be compared (`bench_train.py --check`); the GAN networks register
every parameter (BatchNorm, PReLU, Linear too) in that order, for `load_flax_tree`.

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
# GAN super-resolution (jsr/methods/gan.py; reference code: xinntao/BasicSR's MSRResNet-style
# SRResNet with the paper's BatchNorm, RRDBNet, VGGStyleDiscriminator, VGGFeatureExtractor and
# SRGANModel / ESRGANModel.optimize_parameters).
# --------------------------------------------------------------------------------------------


class SRResBlock(nn.Sequential):
  """conv3x3-BN-PReLU-conv3x3-BN with a skip (jsr's SRResNet block: the convs keep their bias)."""

  def __init__(self, features: int, batch_norm: bool = True):
    norm = (lambda: nn.BatchNorm2d(features)) if batch_norm else nn.Identity
    super().__init__(conv(features, features), norm(), nn.PReLU(),
                     conv(features, features), norm())

  def forward(self, x):
    return x + super().forward(x)


class SRResNet(nn.Module):
  """SRGAN's generator: 9x9 conv + PReLU, B residual blocks, conv-BN + the long skip, pixel-shuffle
  x2 stages (conv, shuffle, PReLU), 9x9 conv to RGB. PReLU has one shared slope (torch default)."""

  def __init__(self, scale: int = 4, features: int = 64, blocks: int = 16, batch_norm: bool = True):
    super().__init__()
    f = features
    self.head = nn.Sequential(conv(3, f, 9), nn.PReLU())
    self.blocks = nn.Sequential(*[SRResBlock(f, batch_norm) for _ in range(blocks)])
    self.body_out = nn.Sequential(conv(f, f), nn.BatchNorm2d(f) if batch_norm else nn.Identity())
    ups = []
    for r in [3] if scale == 3 else [2] * int(math.log2(scale)):
      ups += [conv(f, r * r * f), nn.PixelShuffle(r), nn.PReLU()]
    self.up = nn.Sequential(*ups)
    self.tail = conv(f, 3, 9)

  def forward(self, x):
    h = self.head(x)
    return self.tail(self.up(h + self.body_out(self.blocks(h))))


class ResidualDenseBlock(nn.Module):
  def __init__(self, features: int = 64, growth: int = 32, res_scale: float = 0.2):
    super().__init__()
    self.res_scale = res_scale
    self.convs = nn.ModuleList([conv(features + i * growth, growth) for i in range(4)]
                               + [conv(features + 4 * growth, features)])
    for m in self.convs:  # BasicSR's default_init_weights(..., scale=0.1)
      nn.init.kaiming_normal_(m.weight)
      m.weight.data.mul_(0.1)
      nn.init.zeros_(m.bias)

  def forward(self, x):
    feats = [x]
    for c in self.convs[:4]:
      feats.append(F.leaky_relu(c(torch.cat(feats, 1)), 0.2))
    return x + self.res_scale * self.convs[4](torch.cat(feats, 1))


class RRDB(nn.Module):
  def __init__(self, features: int, growth: int, res_scale: float = 0.2):
    super().__init__()
    self.res_scale = res_scale
    self.rdbs = nn.Sequential(*[ResidualDenseBlock(features, growth, res_scale) for _ in range(3)])

  def forward(self, x):
    return x + self.res_scale * self.rdbs(x)


class RRDBNet(nn.Module):
  """ESRGAN's generator (BasicSR's rrdbnet_arch.py), x4 body; x2/x1 pixel-unshuffle first."""

  def __init__(self, scale: int = 4, features: int = 64, growth: int = 32, blocks: int = 23):
    super().__init__()
    self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
    f = features
    self.conv_first = conv(3 * self.unshuffle ** 2, f)
    self.body = nn.Sequential(*[RRDB(f, growth) for _ in range(blocks)])
    self.conv_body = conv(f, f)
    self.conv_up1, self.conv_up2, self.conv_hr = conv(f, f), conv(f, f), conv(f, f)
    self.conv_last = conv(f, 3)

  def forward(self, x):
    if self.unshuffle > 1:
      x = F.pixel_unshuffle(x, self.unshuffle)
    feat = self.conv_first(x)
    feat = feat + self.conv_body(self.body(feat))
    feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
    return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class VGGStyleDiscriminator(nn.Module):
  """BasicSR's VGGStyleDiscriminator: 128 (or 256) px -> one logit (N, 1); conv-BN-LeakyReLU(0.2)
  pairs (3x3 s1, 4x4 s2 without bias), 64 -> 512 features down to 4x4, linear 100, linear 1."""

  def __init__(self, features: int = 64, input_size: int = 128):
    super().__init__()
    f = features
    self.input_size = input_size
    layers = [nn.Conv2d(3, f, 3, 1, 1, bias=True), nn.LeakyReLU(0.2, True),
              nn.Conv2d(f, f, 4, 2, 1, bias=False), nn.BatchNorm2d(f), nn.LeakyReLU(0.2, True)]
    cin = f
    for width in [2 * f, 4 * f, 8 * f, 8 * f] + ([8 * f] if input_size == 256 else []):
      layers += [nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                 nn.LeakyReLU(0.2, True),
                 nn.Conv2d(width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
                 nn.LeakyReLU(0.2, True)]
      cin = width
    self.features = nn.Sequential(*layers)
    self.linear1 = nn.Linear(cin * 4 * 4, 100)
    self.linear2 = nn.Linear(100, 1)

  def forward(self, x):
    if x.shape[-2:] != (self.input_size, self.input_size):
      raise ValueError(f"VGGStyleDiscriminator({self.input_size}) got {tuple(x.shape)}")
    y = self.features(x).flatten(1)
    return self.linear2(F.leaky_relu(self.linear1(y), 0.2))


VGG_BLOCKS = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGGFeatures(nn.Module):
  """torchvision's vgg16/19().features up to one tap (convB_I before its ReLU, reluB_I after),
  ImageNet mean/std applied to [0, 1] input (BasicSR's VGGFeatureExtractor, use_input_norm)."""

  def __init__(self, arch: str = "vgg19", tap: str = "relu5_4"):
    super().__init__()
    layers, cin = [], 3
    done = False
    for b, widths in enumerate(VGG_BLOCKS[arch]):
      for i, width in enumerate(widths):
        layers.append(nn.Conv2d(cin, width, 3, padding=1))
        cin = width
        if tap == f"conv{b + 1}_{i + 1}":
          done = True
          break
        layers.append(nn.ReLU(inplace=True))
        if tap == f"relu{b + 1}_{i + 1}":
          done = True
          break
      if done:
        break
      layers.append(nn.MaxPool2d(2, 2))
      if tap == f"pool{b + 1}":
        done = True
        break
    if not done:
      raise ValueError(f"VGGFeatures({arch}): unknown tap {tap!r}")
    self.features = nn.Sequential(*layers)
    self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
                         persistent=False)
    self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
                         persistent=False)

  def forward(self, x):
    return self.features((x - self.mean) / self.std)


def vgg_param_count(arch: str) -> int:
  """Parameters of the whole feature stack (torchvision's vgg19().features: 20,024,384)."""
  return count_params(VGGFeatures(arch, f"relu5_{len(VGG_BLOCKS[arch][-1])}"))


def _layout(x: torch.Tensor) -> torch.memory_format:
  return (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
          and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


class BicubicDownQuantized(nn.Module):
  """jsr.ops.resize.imresize(hr, 1/s, quantize=True): MATLAB's uint8 bicubic, each axis pass
  rounded half up to 8 bits (H first), as jsr.methods.supervised.synthesize_lr makes the LR."""

  def __init__(self, hr_size: int, scale: int):
    super().__init__()
    m = torch.from_numpy(resize_matrix(hr_size, output_size(hr_size, 1.0 / scale), 1.0 / scale))
    self.register_buffer("m", m, persistent=False)

  @torch.no_grad()
  def forward(self, hr):
    q = lambda v: torch.floor(v.clamp(0.0, 255.0) + 0.5)
    with torch.autocast(hr.device.type, enabled=False):  # float32 like jsr's, also under bf16
      x = torch.round(hr.float() * 255.0)
      x = q(torch.matmul(self.m, x))        # (o, h) @ (.., h, w)
      x = q(torch.matmul(x, self.m.t()))    # (.., o, w) @ (w, p)
      return (x / 255.0).contiguous(memory_format=_layout(hr))


class GANTrainer:
  """One GAN step as BasicSR's SRGANModel / ESRGANModel.optimize_parameters does it, with jsr's
  configuration (jsr/methods/gan.py): LR = bicubic(HR) (no grad); G step with D frozen
  (requires_grad off): pixel L1 + perceptual (VGG taps of SR vs HR) + adversarial (BCE with logits;
  relativistic average with D(HR) detached for ESRGAN); then D step on HR and the detached SR
  (G's output before its update), each network its own Adam. BasicSR backpropagates D's real and
  fake terms separately (a DDP workaround) and, for ESRGAN, runs D on SR once more for the mean it
  detaches: the same gradients, here one backward of the sum and no extra forward (jsr's work).

  `recipe`: pixel_l1 (weight, 0 = off), tap, criterion (l1|l2), percep_weight, gan_weight,
  relativistic, lr, betas, eps, ema (0 = off). `compile`: torch.compile of the G and D losses.
  """

  def __init__(self, g: nn.Module, d: nn.Module, vgg: nn.Module, recipe: dict, hr_size: int,
               scale: int, compile: bool = False, fused: bool | None = None):
    self.g, self.d, self.vgg, self.r = g, d, vgg, recipe
    self.down = BicubicDownQuantized(hr_size, scale).to(next(g.parameters()).device)
    self.vgg.eval()
    for p in self.vgg.parameters():
      p.requires_grad_(False)
    kw = {"fused": True} if fused else {"foreach": True}
    make = lambda m: torch.optim.Adam(m.parameters(), lr=recipe["lr"], betas=recipe["betas"],
                                      eps=recipe["eps"], **kw)
    self.opt_g, self.opt_d = make(g), make(d)
    self.ema = ([p.detach().clone() for p in g.parameters()] if recipe["ema"] > 0 else None)
    self.g_loss = torch.compile(self._g_loss) if compile else self._g_loss
    self.d_loss = torch.compile(self._d_loss) if compile else self._d_loss

  def _criterion(self, a, b):
    return F.l1_loss(a, b) if self.r["criterion"] == "l1" else F.mse_loss(a, b)

  def _g_loss(self, lr, hr):
    r = self.r
    sr = self.g(lr)
    terms = {}
    total = 0.0
    if r["pixel_l1"]:
      terms["l_pix"] = r["pixel_l1"] * F.l1_loss(sr, hr)
      total = total + terms["l_pix"]
    if r["percep_weight"]:
      terms["l_percep"] = self._criterion(self.vgg(sr), self.vgg(hr))  # hr: no graph (frozen VGG)
      total = total + r["percep_weight"] * terms["l_percep"]
    fake = self.d(sr)
    if r["relativistic"]:
      real = self.d(hr).detach()
      l_gan = 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.zeros_like(real))
                     + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones_like(fake)))
    else:
      l_gan = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    terms["l_g_gan"] = l_gan
    total = total + r["gan_weight"] * l_gan
    return total, sr, terms

  def _d_loss(self, hr, fake):
    real_logits, fake_logits = self.d(hr), self.d(fake)
    if self.r["relativistic"]:
      real_rel = real_logits - fake_logits.detach().mean()
      fake_rel = fake_logits - real_logits.detach().mean()
      loss = 0.5 * (F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
                    + F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel)))
    else:
      loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
              + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    return loss, real_logits.detach().mean(), fake_logits.detach().mean()

  def step(self, hr, update: bool = True) -> dict:
    """hr: (N, 3, P, P) float in [0, 1]. Returns the step's losses (tensors, not synced)."""
    lr = self.down(hr)
    for p in self.d.parameters():
      p.requires_grad_(False)
    self.opt_g.zero_grad(set_to_none=True)
    g_total, sr, terms = self.g_loss(lr, hr)
    if update:
      g_total.backward()
      self.opt_g.step()
      if self.ema is not None:
        with torch.no_grad():
          torch._foreach_lerp_(self.ema, [p.detach() for p in self.g.parameters()],
                               1.0 - self.r["ema"])
    for p in self.d.parameters():
      p.requires_grad_(True)
    self.opt_d.zero_grad(set_to_none=True)
    l_d, d_real, d_fake = self.d_loss(hr, sr.detach())
    if update:
      l_d.backward()
      self.opt_d.step()
    return {"loss": g_total.detach(), **{k: v.detach() for k, v in terms.items()},
            "l_d": l_d.detach(), "d_real": d_real, "d_fake": d_fake}


def gan_flops(g: nn.Module, d: nn.Module, vgg: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
              relativistic: bool) -> tuple[int, int]:
  """(forward FLOPs of one step, train FLOPs of one step), conv + linear, counted from shapes.

  Forwards: G(LR), VGG(HR), VGG(SR), D(SR) in G's step (+ D(HR) if relativistic), D(HR), D(SR).
  A backward costs 2x its forward where weights get gradients (G; D in its own step) and 1x where
  only the input does (VGG(SR); D(SR) in G's step).
  """
  fg, fv, fd = (conv_flops(m, x) for m, x in ((g, lr), (vgg, hr), (d, hr)))
  fwd = fg + 2 * fv + (4 if relativistic else 3) * fd
  train = 3 * fg + fv + 2 * fv + 2 * fd + (fd if relativistic else 0) + 2 * 3 * fd
  return fwd, train


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
  if family == "srgan":
    return SRResNet(scale=scale, **variant_kw)
  if family == "esrgan":
    return RRDBNet(scale=scale, **variant_kw)
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
  """Forward multiply-add FLOPs (2 per MAC) of every Conv2d (and Linear) for input x, counted
  from shapes."""
  total = [0]

  def hook(m, inp, out):
    if isinstance(m, nn.Linear):
      total[0] += 2 * out.numel() * m.in_features
      return
    k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
    total[0] += 2 * out.numel() * k

  handles = [m.register_forward_hook(hook) for m in module.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
  with torch.no_grad():
    module(x)
  for h in handles:
    h.remove()
  return total[0]


def _flax_leaves(tree):
  """Every array of a flax params tree in insertion (creation) order."""
  if not isinstance(tree, dict):
    yield tree
    return
  for v in tree.values():
    yield from _flax_leaves(v)


@torch.no_grad()
def load_flax_tree(module: nn.Module, params) -> None:
  """Copy every jsr parameter into the peer, in order: conv kernels HWIO -> OIHW, dense kernels
  (in, out) -> (out, in), the rest (biases, BatchNorm scale/bias, PReLU slopes) reshaped. Needs
  `params` in flax's creation order (an unjitted init) and the peer registering its parameters in
  the same order (the GAN networks above)."""
  ours = list(module.parameters())
  theirs = list(_flax_leaves(params))
  if len(ours) != len(theirs):
    raise ValueError(f"{len(ours)} torch parameters vs {len(theirs)} flax arrays")
  for p, a in zip(ours, theirs):
    a = np.asarray(a, np.float32)
    if a.ndim == 4:
      a = a.transpose(3, 2, 0, 1)
    elif a.ndim == 2:
      a = a.T
    a = np.ascontiguousarray(a).reshape(p.shape) if a.size == p.numel() else a
    if tuple(a.shape) != tuple(p.shape):
      raise ValueError(f"shape mismatch {a.shape} vs {tuple(p.shape)}")
    p.copy_(torch.from_numpy(a.copy()))
