r"""python -m jsr.main --config=configs/selfsup.py:scale=2 --workdir=/tmp/selfsup_x2

Self-supervised blind SR (the flagship): trains on LR observations only.

Args (comma-separated after the colon, e.g. `configs/selfsup.py:scale=4,variant=base,runlocal`):
  scale=2|3|4     upscaling factor (default 2).
  variant=NAME    network size from jsr.models.selfsup_net.VARIANTS (default "small").
  loss=NAME       "both" (consistency + pair, default), "consistency" or "pair". "consistency"
                  also sets model.skip=lanczos3 and model.tail=adjoint (see the comments below).
  runlocal        shrink everything so a run finishes in seconds (tests, laptops).

The default (no args) trains on the photos bundled in scikit-image and evaluates on two held-out
ones; it finishes in about 7.5 minutes on a 2-core AVX-512 CPU (7 min 26 s measured) and about 18
minutes on a 2-core AVX2 one (docs/selfsup.md). Point it at your own LR photos with
`--config.data.train=folder:/path/to/photos` and at benchmarks with
`--config.eval.sets=set5=/path/Set5,set14=/path/Set14`. Blind (the kernel of the observations is
unknown): `--config.degradation.kernel=estimate` (docs/selfsup.md).
"""

import ml_collections

from configs import common
from configs import kernelgan as kernelgan_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = common.parse_arg(arg, name="configs/selfsup.py", scale=2, variant="small", loss="both",
                       runlocal=False)
  config = ml_collections.ConfigDict()
  config.method = "selfsup"
  config.scale = a["scale"]
  config.seed = 0
  config.distributed = False  # multi-host: jax.distributed.initialize() (see jsr/main.py)
  config.engine = "train"  # jsr/train.py; "zeroshot" runs jsr/zeroshot.py
  # Warm start: "WORKDIR" or "WORKDIR:STEP" of another run whose network initialises this one's
  # (the method's generator fields); ignored once this workdir has a checkpoint of its own.
  config.init_from = ""
  # Resuming with a config that differs from the workdir's config.json is refused unless True
  # (the old file is then kept as config.<step>.json).
  config.allow_config_change = False

  consistency = a["loss"] in ("both", "consistency")
  pair = a["loss"] in ("both", "pair")
  if not (consistency or pair):
    raise ValueError(f"configs/selfsup.py: loss must be both, consistency or pair, got {a['loss']!r}")

  config.model = ml_collections.ConfigDict()
  config.model.name = "selfsup_net"
  config.model.variant = a["variant"]
  config.model.dtype = "float32"  # "bfloat16" for mixed precision (params stay float32)
  # Kernel of the global interpolation skip: cubic (MATLAB bicubic), lanczos2, lanczos3, bilinear,
  # or none. The network starts as exactly this interpolation.
  # Tail: "shuffle" (sub-pixel conv) or "adjoint": the residual is D^T of an LR map (D = the
  # assumed degradation), so the output moves from the skip only where the consistency loss sees.
  # The consistency loss alone cannot tell what belongs in D's null space, so there the skip's
  # content is kept: Lanczos-3 holds more true detail than bicubic (docs/selfsup.md).
  only_consistency = consistency and not pair
  config.model.skip = "lanczos3" if only_consistency else "cubic"
  config.model.tail = "adjoint" if only_consistency else "shuffle"

  # The assumed degradation y = down_s(x * k). "bicubic" is MATLAB imresize (the usual benchmark
  # protocol); "gaussian" uses sigma/sigma2/theta and `downsample`; "file" loads kernel_file (.npy);
  # "estimate" (blind: x2 and x4) estimates k from the training observations before training:
  # KernelGAN (the `kernelgan` block) on `estimate_images` of them, median of their kernels,
  # followed by `downsample` (KernelGAN's kernels are for direct subsampling).
  config.degradation = common.degradation()
  config.degradation.estimate_images = 8
  config.kernelgan = kernelgan_config.get_config(
      f"scale={a['scale'] if a['scale'] in (2, 4) else 2}"
      + (",runlocal" if a["runlocal"] else "")).kernelgan

  # L = alpha*L2 + beta*(1-SSIM) + gamma*TV(HR') [consistency] + delta*L2 [pair].
  config.loss = ml_collections.ConfigDict()
  config.loss.alpha = 1.0 if consistency else 0.0
  config.loss.beta = 0.01 if consistency else 0.0
  config.loss.gamma = 0.0
  config.loss.delta = 1.0 if pair else 0.0
  config.loss.margin = 2  # LR pixels left out of the consistency term at each patch border

  config.data = ml_collections.ConfigDict()
  config.data.train = "samples:train"
  config.data.tfds_data_dir = ""
  config.data.patch_size = 48  # LR observation patches
  config.data.batch_size = 16
  config.data.augment = True  # random flips and 90-degree rotations
  config.data.backend = "auto"  # "tf" (tf.data), "numpy" (threads; no TensorFlow needed), "auto"

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adamax"  # as in the seed paper
  config.optim.lr = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.weight_decay = 0.0
  config.optim.schedule = "cosine"
  config.optim.warmup_steps = 100
  config.optim.decay_steps = 0
  config.optim.decay_factor = 0.5
  config.optim.grad_clip_norm = 0.0

  config.eval = ml_collections.ConfigDict()
  config.eval.sets = "samples:eval"
  config.eval.metrics = "psnr,ssim"  # any of psnr,ssim,lpips,lpips_alex,niqe (jsr.evaluate)

  # 7.5 minutes on a 2-core AVX-512 CPU (7.5 steps/s), ~18 on an AVX2 one; a GPU: under a minute.
  config.total_steps = 3000
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3

  if a["runlocal"]:
    config.model.variant = "tiny"
    config.data.patch_size = 24
    config.data.batch_size = 4
    config.optim.warmup_steps = 0
    config.total_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 6
    config.checkpoint_every_steps = 3
  return config
