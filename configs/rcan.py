r"""python -m jsr.main --config=configs/rcan.py:scale=2,variant=paper --workdir=/tmp/rcan

RCAN (Zhang et al., ECCV 2018), supervised on bicubic-downscaled HR crops (jsr/methods/supervised.py).

Paper hyper-parameters (the defaults): L1 loss, 48x48 LR patches, batch 16, Adam(b1=0.9,
b2=0.999, eps=1e-8), lr 1e-4 halved every 2x10^5 updates, flips and rotations. The paper does not
state its number of updates; we train 300k as EDSR does (one halving). 10 residual groups of 20
RCABs, 64 features, reduction 16 (15.6M params); the `tiny` variant is for tests.

Args: scale=2|3|4 (default 2), variant=paper|tiny (default paper), runlocal (tiny, seconds).

Data: bundled scikit-image photos by default; `--config.data.train=folder:/data/DIV2K_train_HR`
(or `tfds:div2k`) and `--config.eval.sets=set5=/data/Set5,set14=/data/Set14` for the paper's.
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/rcan.py", scale=2, variant="paper", runlocal=False)
  return common.supervised(
      model="rcan", scale=a["scale"], variant=a["variant"], loss="1*L1", lr_patch=48,
      batch_size=16, total_steps=300_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="step",
                 decay_steps=200_000, decay_factor=0.5),
      runlocal=a["runlocal"])
