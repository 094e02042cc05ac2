r"""python -m jsr.main --config=configs/vdsr.py:scale=2,variant=paper --workdir=/tmp/vdsr

VDSR (Kim, Lee, Lee, CVPR 2016), supervised on bicubic-downscaled HR crops
(jsr/methods/supervised.py). The model predicts the residual over its own MATLAB-bicubic upsampling.

Paper: MSE loss, 41x41 HR patches, batch 64, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided
by 10 every 20 epochs (80 epochs), adjustable gradient clipping, one model for x2/x3/x4, Y only.
Defaults here:
  * MSE, batch 64, HR crops of the multiple of the scale nearest 41 (40 at x2/x4, 42 at x3).
  * Adam(0.9, 0.999, 1e-8), lr 1e-4 divided by 10 every 20k of 80k steps, no weight decay, no
    clipping -- instead of SGD at 0.1 with the paper's per-element clipping to 0.01/lr, which
    jsr.optim (global-norm clipping) does not express and which diverges without it. The
    "divide by 10 every 20 of 80 epochs" structure is kept with an epoch taken as 1000 updates
    (EDSR's code's convention for patch-sampled epochs).
  * One scale per model (train scale=2, 3, 4 separately); the paper mixes scales in a batch.

Args: scale=2|3|4 (default 2), variant=paper|tiny (default paper), runlocal (tiny, seconds).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/vdsr.py", scale=2, variant="paper", runlocal=False)
  return common.supervised(
      model="vdsr", scale=a["scale"], variant=a["variant"], loss="1*L2",
      patch_size=common.hr_patch_near(41, a["scale"]), batch_size=64, total_steps=80_000,
      optim=dict(name="adam", lr=1e-4, schedule="step", decay_steps=20_000, decay_factor=0.1),
      runlocal=a["runlocal"])
