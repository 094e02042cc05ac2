r"""python -m jsr.main --config=configs/fsrcnn.py:scale=3,variant=paper --workdir=/tmp/fsrcnn

FSRCNN (Dong, Loy, Tang, ECCV 2016), supervised on bicubic-downscaled HR crops
(jsr/methods/supervised.py).

Paper: MSE loss, LR sub-images of 10/7/6 px at x2/x3/x4 (HR s times that), SGD with lr 1e-3 for
the convolutions and 1e-4 for the deconvolution, batch 128, Y only. Defaults here:
  * MSE, batch 128, LR crops 10/7/6 (8 at other scales): as the paper (our deconvolution keeps the
    output exactly s times the input, so the HR crop is s * LR, not s * LR - s + 1).
  * Adam(0.9, 0.999, 1e-8), lr 1e-3, halved every 100k of 300k steps -- instead of SGD with the
    deconv layer at a 10x lower rate: jsr.optim has one rate for all layers, and Adam at 1e-3 is
    what the common PyTorch ports use. The deconv's N(0, 0.001) init is kept (jsr.models.fsrcnn).

Args: scale=2|3|4 (default 3), variant=paper|s|tiny (default paper: d=56, s=12, m=4),
runlocal (tiny, seconds).
"""

from configs import common

LR_PATCH = {2: 10, 3: 7, 4: 6}  # The paper's LR sub-image sizes.


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/fsrcnn.py", scale=3, variant="paper", runlocal=False)
  return common.supervised(
      model="fsrcnn", scale=a["scale"], variant=a["variant"], loss="1*L2",
      lr_patch=LR_PATCH.get(a["scale"], 8), batch_size=128, total_steps=300_000,
      optim=dict(name="adam", lr=1e-3, schedule="step", decay_steps=100_000, decay_factor=0.5),
      runlocal=a["runlocal"])
