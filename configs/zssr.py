r"""python -m jsr.main --config=configs/zssr.py:scale=2 --workdir=/tmp/zssr_x2

ZSSR (Shocher, Cohen, Irani, CVPR 2018), zero-shot: a network is trained on each test image alone
(jsr/methods/zssr.py, run per image by jsr/zeroshot.py). The defaults are the paper's released
configuration: 8 x 64 convs, L1, Adam 1e-3 divided by 10 when the reconstruction error stops
falling (down to 9e-6), at most 3000 iterations, 128-px fathers, x8 median self-ensemble and 10
back-projection iterations.

Args: scale=2|3|4 (default 2), variant=paper|tiny, kernel=bicubic|file (default bicubic: the
"ideal" case; "file" uses config.degradation.kernel_file, e.g. a kernel estimated by KernelGAN,
and turns rotations and the self-ensemble off as the paper's X2_GIVEN_KERNEL_CONF does, since a
kernel need not be symmetric), gradual=True (x2 only: the reference's X2_GRADUAL_IDEAL_CONF, six
trainings at 1x1.5, 1.5x1, 1.5x1.5, 1.5x2, 2x1.5, 2x2 with 6, 6, 8, 10, 10, 12 back-projections;
about six times the one jump's time; any other stage list through --config.zssr.gradual),
runlocal (a tiny net, a few iterations: seconds).

The default scores the two held-out photos bundled with scikit-image; point it at benchmarks with
`--config.eval.sets=set5=/data/Set5,set14=/data/Set14` and at your own LR images with
`--config.data.inputs=/path/to/photos` (their SR is written, unscored).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, name="configs/zssr.py", scale=2, variant="paper", kernel="bicubic",
                       gradual=False, runlocal=False)
  if a["kernel"] not in ("bicubic", "file"):
    raise ValueError(f"configs/zssr.py: kernel must be bicubic or file, got {a['kernel']!r}")
  if a["gradual"] and (a["scale"] != 2 or a["kernel"] != "bicubic"):
    raise ValueError("configs/zssr.py: gradual=True is the reference's x2 bicubic configuration; "
                     "for other scales set --config.zssr.gradual to a list of stages")
  config = ml_collections.ConfigDict()
  config.engine = "zeroshot"  # jsr.main runs jsr/zeroshot.py: one training per image.
  config.method = "zssr"
  config.scale = a["scale"]
  config.seed = 0
  config.distributed = False

  config.model = ml_collections.ConfigDict()
  config.model.name = "zssr_net"
  config.model.variant = a["variant"]
  config.model.dtype = "float32"

  # How sons are made from fathers and what back-projection inverts (jsr.ops.degrade).
  config.degradation = common.degradation()
  config.degradation.kernel = a["kernel"]
  given_kernel = a["kernel"] == "file"

  config.zssr = z = ml_collections.ConfigDict()
  z.max_iters = 3000
  z.min_iters = 256  # updates between two learning-rate cuts, at least
  z.lr = 1e-3
  z.b1 = 0.9
  z.b2 = 0.999
  z.min_lr = 9e-6  # stop when the learning rate falls below this
  z.lr_change_ratio = 1.5  # cut when -ratio * slope < std of the fitted slope
  z.policy_check_every = 60
  z.slope_range = 256  # updates of reconstruction error the line is fitted to
  z.test_every = 50  # updates between reconstruction-error tests
  z.crop_size = 128  # father side (smaller if the image is)
  z.batch_size = 1  # fathers per update
  z.noise_std = 0.0  # noise added to sons (0.0125 for real, noisy photos)
  z.back_projection_iters = 2 if given_kernel else 10
  z.self_ensemble = not given_kernel  # median over the 8 dihedral transforms
  # Gradual SR: "HxW,HxW,..." stage scales ending at config.scale ("" = one jump), and each
  # stage's back-projection iterations ("" = back_projection_iters for every stage).
  z.gradual = "1x1.5,1.5x1,1.5x1.5,1.5x2,2x1.5,2x2" if a["gradual"] else ""
  z.gradual_back_projection_iters = "6,6,8,10,10,12" if a["gradual"] else ""
  z.augment = ml_collections.ConfigDict()
  z.augment.leave_as_is_probability = 0.05
  z.augment.no_interpolate_probability = 0.45
  z.augment.min_scale = 0.5
  z.augment.scale_diff_sigma = 0.25
  z.augment.shear_sigma = 0.1
  z.augment.allow_rotation = not given_kernel
  # Where an affine father's map leaves the image: "black" (zeros, as the reference's OpenCV warp
  # pads) or "mirror" (jsr's default until 2026-12-03; docs/zeroshot.md: black +0.10 dB on Set5).
  z.augment.pad = "black"

  config.data = ml_collections.ConfigDict()
  config.data.inputs = ""  # a folder (or file) of LR images to upscale, unscored

  config.eval = ml_collections.ConfigDict()
  config.eval.sets = "samples:eval"
  config.eval.metrics = "psnr,ssim"  # any of psnr,ssim,lpips,lpips_alex,niqe (jsr.evaluate)

  if a["runlocal"]:
    config.model.variant = "tiny"
    z.max_iters = 40
    z.min_iters = 4
    z.test_every = 10
    z.policy_check_every = 10
    z.slope_range = 30
    z.crop_size = 32
    z.back_projection_iters = 2
  return config
