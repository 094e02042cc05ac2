r"""python -m jsr.main --config=configs/srmd.py:scale=2,variant=srmd --workdir=/tmp/srmd_x2

SRMD / SRMDNF (Zhang, Zuo, Zhang, CVPR 2018): jsr/methods/srmd.py trains jsr/models/srmd.py on HR
crops degraded on device, per sample, by a random anisotropic Gaussian kernel, MATLAB bicubic
downscaling and (SRMD) white noise of std U[0, 75]/255; the network sees the kernel's PCA code and
the noise level as input maps. Evaluation and predict use the maps of `config.srmd.kernel`
("bicubic" by default: the delta kernel of the paper's bicubic-degradation tables) and
`config.srmd.noise_sigma` (0).

Paper (Sec. 4.1): L2 loss, Adam, mini-batch 128, LR patches 40x40 (HR 80/120/160 at x2/x3/x4),
lr 1e-3 decreased to 1e-5 "when the training error stops decreasing", then BN folded into the
convs and fine-tuned at 1e-5; training images BSD400 + DIV2K 800 + WED 4,744; SRMDNF is trained
noise-free. Defaults here:
  * L2 (1*L2, the mean squared error), Adam(0.9, 0.999, 1e-8), batch 128, HR crop 40 s.
  * lr 1e-3, x0.1 at 400k and again at 450k steps, 500k steps: fixed milestones stand in for the
    paper's plateau rule (its step count is not given); no BN-folding fine-tune (predict runs BN
    with its running statistics, the same function folding gives).
  * Kernels and noise as the authors' released `degradation_model.m` (l1, l2 in [0.1, 10] px^2
    for every scale; see jsr/methods/srmd.py), not the per-scale ranges the paper's text gives.
  * Data: `samples:train` unless --config.data.train=folder:DIR (the paper's sets are not bundled).

Args: scale=2|3|4 (default 2), variant=srmd|srmdnf|tiny (default srmd; srmdnf trains noise-free),
runlocal (tiny variant, 2-image batches of 24-px HR crops, 4 steps: seconds).
"""

from configs import common
from jsr.methods import srmd as srmd_method


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/srmd.py", scale=2, variant="srmd", runlocal=False)
  if a["variant"] not in ("srmd", "srmdnf", "tiny"):
    raise ValueError(f"configs/srmd.py: variant must be srmd, srmdnf or tiny, got {a['variant']!r}")
  config = common.supervised(
      model="srmd", scale=a["scale"], variant=a["variant"], loss="1*L2", lr_patch=40,
      batch_size=128, total_steps=500_000,
      optim=dict(name="adam", lr=1e-3, schedule="multistep", milestones=(400_000, 450_000),
                 decay_factor=0.1),
      runlocal=a["runlocal"])
  config.method = "srmd"
  # SRMD draws its own degradations (config.srmd); the supervised block would be unread.
  del config.degradation
  config.srmd = srmd_method.default_config()
  if a["variant"] == "srmdnf":
    config.srmd.noise_max = 0.0
  return config
