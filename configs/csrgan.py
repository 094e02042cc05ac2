r"""python -m jsr.main --config=configs/csrgan.py --workdir=/tmp/csrgan --config.eval.sets=set14=pairs:/tmp/csrgan_test/LR,/tmp/csrgan_test/HR

CSRGAN (jsr/methods/csrgan.py): a U-Net GAN restoring a randomly blurred, downscaled, noisy and
re-upsampled input at the HR size, that also predicts the degradation's parameters.

  L_G = L_GAN + lambda * L_pred + mu * MSE(S, HR)      (the founding document's objective)

The test set is made once with the same sampler (scripts/make_degraded_set.py --pipeline=csrgan
--data=/data/Set14 --out=/tmp/csrgan_test --seed=0) and scored as given pairs:
`python -m jsr.evaluate --workdir=/tmp/csrgan --data=/tmp/csrgan_test/HR --lr=/tmp/csrgan_test/LR --scale=1`.

Settings and how the document's numbers are read:
  * sigma: "0-50" in the document. A Gaussian of std 50 px on 128-px crops is a flat colour, so we
    read it as tenths of a pixel: sigma ~ U[0, 5.0] HR pixels (`degradation.sigma_max`), with a
    fixed 31-tap kernel (2 ceil(3 sigma_max) + 1), reflected borders.
  * scale ~ U[1, 3] (continuous), MATLAB bicubic (antialiased) down, bicubic back up.
  * noise std ~ U[0, 25/255] (the document gives no range; 25 is the usual upper level of the
    denoising/SRMD literature). The LR and the output are rounded to 8 bits, as saved PNGs are.
  * weights: the document leaves them open. With L_GAN unweighted (gan.weight = 1), mu = 1000
    (MSE on [0, 1] images: the pixel term outweighs the adversarial one as SRGAN's 1e-3 does) and
    lambda = 100 on the normalised parameters (each in [0, 1] over its range); `lambda=0` is the
    ablation without prediction.
  * Adam 1e-4 (b1 0.9, b2 0.999) for G and D; 128-px HR crops (the VGG-style D's size), batch 16.
    The document's U-Net width is not given: variant `paper` is Ronneberger's (64 features,
    4 pools, 31M), `base` (16 features, 1.9M) the CPU ablation's.

Args: variant=paper|small|base|tiny, lambda=<float> (default 100), mu=<float> (default 1000),
runlocal (tiny nets, 4 steps).
"""

import ml_collections

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/csrgan.py", variant="paper", runlocal=False,
                       **{"lambda": 100.0, "mu": 1000.0})
  config = common.gan(
      generator="unet", scale=1, variant=a["variant"], patch_size=128, batch_size=16,
      total_steps=100_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="constant"),
      discriminator="vgg_style",
      discriminator_variant="tiny" if a["variant"] == "tiny" else "paper",
      gan_loss=dict(kind="vanilla", relativistic=False, weight=1.0), runlocal=a["runlocal"])
  config.method = "csrgan"
  # Keys of the GAN template that CSRGAN has no use for: gone, so a typo'd override fails.
  for key in ("pixel_loss", "perceptual"):
    del config[key]
  config.degradation = ml_collections.ConfigDict(dict(
      sigma_max=5.0,         # blur std, HR pixels: U[0, sigma_max]
      scale_min=1.0,         # downscale factor: U[scale_min, scale_max]
      scale_max=3.0,
      noise_max=25.0 / 255,  # noise std on [0, 1]: U[0, noise_max]
      quantize=True))        # 8-bit LR and input, as saved images
  config.pred_weight = a["lambda"]  # lambda: the parameter-prediction term (0: off)
  config.mse_weight = a["mu"]       # mu: MSE(S, HR)
  config.eval.sets = ""             # a paired set made by scripts/make_degraded_set.py
  config.eval.metrics = "psnr,ssim,lpips"
  return config
