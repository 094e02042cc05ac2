r"""python -m jsr.main --config=configs/rrdb.py --workdir=/tmp/rrdb_psnr

RRDB-PSNR (ESRGAN's PSNR-oriented generator, Wang et al., ECCVW 2018): RRDBNet trained alone with
L1 (jsr/methods/supervised.py), the starting point of configs/esrgan.py (`init_from`).

Paper / BasicSR (train_RRDBNet_PSNR_x4.yml) hyper-parameters (the defaults): L1 loss, 128x128 HR
crops, batch 16, Adam(b1=0.9, b2=0.99), lr 2e-4 halved every 200k updates, 1M updates, EMA of the
weights 0.999 (BasicSR's `ema_decay`), flips and 90-degree rotations. Deviations: the paper trains
on DIV2K+Flickr2K+OST (here: whatever `data.train` points at; scikit-image's photos by default),
and BasicSR's published run uses cosine restarts instead of the paper's halvings.

Args: scale=4|2 (default 4), variant=paper|small|tiny (jsr.models.rrdbnet.VARIANTS; paper =
23 blocks, 16.7M parameters at x4), runlocal (tiny, 4 steps).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/rrdb.py", scale=4, variant="paper", runlocal=False)
  config = common.supervised(
      model="rrdbnet", scale=a["scale"], variant=a["variant"], loss="1*L1", patch_size=128,
      batch_size=16, total_steps=1_000_000,
      optim=dict(name="adam", lr=2e-4, b1=0.9, b2=0.99, eps=1e-8, schedule="step",
                 decay_steps=200_000, decay_factor=0.5),
      runlocal=a["runlocal"])
  config.ema_decay = 0.999
  return config
