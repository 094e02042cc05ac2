r"""python -m jsr.main --config=configs/kernelgan.py:scale=2 --workdir=/tmp/kernelgan_x2 --config.data.inputs=/path/to/lr_photos

KernelGAN + ZSSR (Bell-Kligler, Shocher, Irani, NeurIPS 2019): zero-shot *blind* SR. For each
image, KernelGAN estimates the blur kernel from the image alone (jsr/methods/kernelgan.py), then
ZSSR (configs/zssr.py:kernel=file's settings: no rotations, no self-ensemble, 2 back-projection
iterations) super-resolves it with that kernel. The kernels are saved as
workdir/kernels/<set>/<image>.npy (jsr.ops.degrade's convention: `--config.degradation.kernel=file
--config.degradation.kernel_file=...` of any other config reads them).

Args: scale=2|4 (x4 composes the x2 estimate with itself), variant=paper|tiny (the GAN's size),
runlocal (tiny nets, a few iterations: seconds).

Scored images (config.eval.sets) get LR by MATLAB bicubic, where the true kernel is bicubic's; the
blind setting this method is for is LR images made by an unknown kernel: `config.data.inputs`, or
scripts/blind_table.py, which degrades HR benchmarks with known kernels and scores the result.
"""

import ml_collections

from configs import common
from configs import zssr as zssr_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, name="configs/kernelgan.py", scale=2, variant="paper", runlocal=False)
  config = zssr_config.get_config(f"scale={a['scale']},kernel=file"
                                  + (",runlocal" if a["runlocal"] else ""))
  config.method = "kernelgan"
  # The blur is each image's estimate (kernel_file stays unused); sampling is direct, from pixel 0.
  config.degradation.downsample = "direct"

  config.kernelgan = k = ml_collections.ConfigDict()
  k.variant = a["variant"]
  k.max_iters = 3000
  k.crop_size = 64  # G's input; D sees G-output-sized (26 px) crops of the image
  k.lr = 2e-4
  k.b1 = 0.5
  k.b2 = 0.999
  k.lr_decay_every = 750
  k.lr_decay_factor = 10.0
  k.lambda_bicubic = 5.0  # until G matches bicubic, then divided by 100 every lambda_update_every
  # G "matches bicubic" (three iterations running) when its MSE to bicubic is under this fraction
  # of the MSE of an all-zero output (the reference's absolute 0.4 is met by G's initial ~0).
  k.bicubic_match = 0.1
  k.lambda_bicubic_min = 5e-6
  k.lambda_update_every = 200
  k.lambda_sum2one = 0.5
  k.lambda_boundaries = 0.5
  k.lambda_centralized = 1.0  # switched on once lambda_bicubic < 5e-3
  k.lambda_sparse = 5.0  # likewise
  k.n_filtering = 40  # kernel values under 0.75x the 40th largest are zeroed
  k.shave_edges = True  # drop 10 px per side first (synthetic LR images have border artefacts)

  if a["runlocal"]:
    k.variant = "tiny"
    k.max_iters = 6
    k.crop_size = 16
    k.lambda_update_every = 2
    k.lr_decay_every = 3
    k.n_filtering = 4
    k.shave_edges = False
  return config
