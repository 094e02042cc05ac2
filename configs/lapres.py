r"""python -m jsr.main --config=configs/lapres.py:scale=8,variant=paper --workdir=/tmp/lapres

The multi-scale Laplacian-pyramid residual network (jsr.models.lapres; x2, x4 and x8 from one
model), supervised on bicubic-downscaled HR crops (jsr/methods/supervised.py). The DSSIM loss
(1 - SSIM, 11x11 Gaussian window) is applied to every level against the HR crop downscaled by
MATLAB bicubic to that level's size, and the levels are summed.

Description's hyper-parameters (the defaults): DSSIM, 64x64 LR crops (HR 64s: 512 at x8), batch
16, Adam(b1=0.9, b2=0.999, eps=1e-8), lr 1e-4 divided by 10 after 30 epochs. Expressed as a step
decay with an epoch of 1000 updates (EDSR's code's convention for patch-sampled "epochs"):
decay_steps = 30k, factor 0.1, 40k steps in all (10 epochs at 1e-5; the description does not
say when training stops).

Args: scale=2|4|8 (default 8), variant=paper|tiny (default paper), runlocal (tiny, seconds; its
crops are 6 LR pixels, so the x2 level is 12 px, enough for the 11x11 SSIM window).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/lapres.py", scale=8, variant="paper", runlocal=False)
  return common.supervised(
      model="lapres", scale=a["scale"], variant=a["variant"], loss="1*DSSIM", lr_patch=64,
      batch_size=16, total_steps=40_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="step",
                 decay_steps=30_000, decay_factor=0.1),
      runlocal=a["runlocal"], runlocal_lr_patch=6)
