r"""python -m jsr.main --config=configs/dip.py:scale=4 --workdir=/tmp/dip_x4

Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018), zero-shot: for each LR image a randomly
initialised skip hourglass (jsr/models/dip_net.py, 2.2M params) is fitted so that its output on a
fixed noise code, downsampled by the fixed Lanczos-2 Downsampler, matches the LR image
(jsr/methods/dip.py, run per image by jsr/zeroshot.py). The defaults are the reference's
super-resolution notebook at x4: 32-channel uniform code (x0.1), code perturbation 0.03 per step,
MSE, Adam 0.01, 2000 iterations. At about 0.6 MFLOP per HR pixel forward, a 512x512 HR image costs
~0.5 TFLOP per iteration: a GPU job (docs/dip.md has timings).

Args: scale=2|4 (default 4; x2 reuses the x4 settings, the authors ran x4 and x8 only),
variant=paper|tiny, runlocal (a tiny net, 30 iterations: a minute or two on a 2-core CPU).

The default scores the two held-out photos bundled with scikit-image; point it at benchmarks with
`--config.eval.sets=set5=/data/Set5,set14=/data/Set14` and at your own LR images with
`--config.data.inputs=/path/to/photos` (their SR is written, unscored).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, name="configs/dip.py", scale=4, variant="paper", runlocal=False)
  if a["scale"] not in (2, 4):
    raise ValueError(f"configs/dip.py: scale must be 2 or 4, got {a['scale']}")
  config = ml_collections.ConfigDict()
  config.engine = "zeroshot"  # jsr.main runs jsr/zeroshot.py: one optimisation per image.
  config.method = "dip"
  config.scale = a["scale"]
  config.seed = 0
  config.distributed = False

  config.model = ml_collections.ConfigDict()
  config.model.name = "dip_net"
  config.model.variant = a["variant"]
  config.model.dtype = "float32"

  config.dip = d = ml_collections.ConfigDict()
  d.iterations = 2000  # The notebook's num_iter at x4 (4000 at x8); the step count regularises.
  d.lr = 0.01
  d.b1 = 0.9
  d.b2 = 0.999
  d.eps = 1e-8  # torch.optim.Adam's defaults
  d.input_depth = 32  # channels of the noise code z
  d.input_scale = 0.1  # z = input_scale * U[0, 1) (get_noise's var=1/10)
  d.reg_noise_std = 0.03  # z + reg_noise_std * N(0, 1) at each step (0.05 at x8)
  # The loss's downsampling: "lanczos2" (the reference's Downsampler, jsr.ops.downsampler),
  # "lanczos3", or "bicubic" (MATLAB imresize: the operator that makes jsr's benchmark LR).
  d.kernel_type = "lanczos2"
  d.report_every = 50  # iterations between loss reports (each waits for the device)
  # Iterations after which f(z) is kept in the log ("snapshot"), e.g. [250, 500, 1000] for
  # scripts/dip_iterations.py; each costs one forward pass.
  d.snapshot_iters = []

  config.data = ml_collections.ConfigDict()
  config.data.inputs = ""  # a folder (or file) of LR images to upscale, unscored

  config.eval = ml_collections.ConfigDict()
  config.eval.sets = "samples:eval"
  config.eval.metrics = "psnr,ssim"  # any of psnr,ssim,lpips,lpips_alex,niqe (jsr.evaluate)

  if a["runlocal"]:
    config.model.variant = "tiny"
    d.iterations = 30
    d.report_every = 10
  return config
