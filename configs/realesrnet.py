r"""python -m jsr.main --config=configs/realesrnet.py --workdir=/tmp/realesrnet

Real-ESRNet (Wang et al., "Real-ESRGAN", ICCVW 2021), jsr/methods/supervised.py: RRDBNet trained
with L1 on LR images made by the Real-ESRGAN degradation pipeline (jsr.ops.realworld: blur, random
resize, Gaussian/Poisson noise, JPEG, twice, then resize + sinc and JPEG), drawn per sample on the
device inside the step. The starting point of configs/realesrgan.py (`init_from`).

Paper / Real-ESRGAN's train_realesrnet_x4plus.yml (the defaults): 256x256 HR crops, batch 48
(12 per GPU x 4), L1 against the unsharp-masked HR (l1_gt_usm), Adam(0.9, 0.99) lr 2e-4, 1M
updates, EMA 0.999; the pipeline's probabilities and ranges are `degradation.realesrgan`.

Deviations: the paper trains on DF2K+OST (here: `data.train`, scikit-image's photos by default) and
warm-starts from ESRGAN's released weights (give a jsr RRDB run as `init_from`, or none); BasicSR
degrades 400-px crops then crops 256 px, and keeps a 180-image pair queue to mix its per-batch
resize factors -- here each sample draws its own chain, so the crop is degraded directly and no
queue is needed; BasicSR's `area` resize for non-integer factors is PyTorch's adaptive average
pooling, here OpenCV's INTER_AREA (exact box coverage).

Args: scale=4|2 (default 4), variant=paper|small|tiny (jsr.models.rrdbnet.VARIANTS),
pipeline=realesrgan|bsrgan (BSRGAN's degradation instead)|bsrgan+realesrgan (a mixture: each
batch draws one of the two chains), runlocal (tiny, 4 steps).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/realesrnet.py", scale=4, variant="paper",
                       pipeline="realesrgan", runlocal=False)
  config = common.supervised(
      model="rrdbnet", scale=a["scale"], variant=a["variant"], loss="1*L1", patch_size=256,
      batch_size=48, total_steps=1_000_000,
      optim=dict(name="adam", lr=2e-4, b1=0.9, b2=0.99, eps=1e-8, schedule="constant"),
      runlocal=a["runlocal"])
  config.ema_decay = 0.999
  config.degradation.pipeline = a["pipeline"]
  config.degradation.sharpen.targets = "pixel"
  if a["runlocal"]:
    config.data.patch_size = 32
  return config
