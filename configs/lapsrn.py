r"""python -m jsr.main --config=configs/lapsrn.py:scale=4,variant=paper --workdir=/tmp/lapsrn

LapSRN (Lai et al., CVPR 2017), supervised on bicubic-downscaled HR crops
(jsr/methods/supervised.py). The model returns every x2 level; the Charbonnier loss
(eps = 1e-3) is applied to each level against the HR crop downscaled by MATLAB bicubic to that
level's size, and the levels are summed, as in the paper.

Paper: Charbonnier on every level, 128x128 HR patches, batch 64, SGD momentum 0.9, weight decay
1e-4, lr 1e-5 halved every 50 epochs, depth 10 per level. Defaults here:
  * Charbonnier on every level, 128x128 HR crops, batch 64, depth 10: as the paper.
  * Adam(0.9, 0.999, 1e-8), lr 1e-4 halved every 100k of 300k steps, no weight decay -- instead
    of SGD at 1e-5, which converges far more slowly (the PyTorch reference port uses Adam 1e-4).

Args: scale=2|4|8 (default 4; pyramid levels are x2 each), variant=paper|tiny (default paper),
runlocal (tiny, seconds).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/lapsrn.py", scale=4, variant="paper", runlocal=False)
  return common.supervised(
      model="lapsrn", scale=a["scale"], variant=a["variant"], loss="1*Charbonnier",
      patch_size=128, batch_size=64, total_steps=300_000,
      optim=dict(name="adam", lr=1e-4, schedule="step", decay_steps=100_000, decay_factor=0.5),
      runlocal=a["runlocal"])
