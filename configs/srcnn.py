r"""python -m jsr.main --config=configs/srcnn.py:scale=3,variant=9-5-5 --workdir=/tmp/srcnn

SRCNN (Dong et al., TPAMI 2016), supervised on bicubic-downscaled HR crops
(jsr/methods/supervised.py). The model upsamples its input by MATLAB bicubic itself.

Paper: MSE loss, 33x33 HR sub-images, batch 128, SGD with lr 1e-4 (1e-5 for the last layer),
~10^8 backpropagations, Y channel only, valid convolutions (the target cropped to 21x21).
Defaults here, and where they deviate:
  * MSE, batch 128, HR crops of the multiple of the scale nearest 33 (33 at x3, 32 at x2
    and x4): as the paper.
  * Adam(0.9, 0.999, 1e-8), lr 1e-4, constant, 200k steps -- instead of plain SGD with per-layer
    rates, which needs ~10^8 updates to converge (the paper's curves) and jsr.optim has one rate
    for all layers. Adam at 1e-4 is what the common re-implementations use and converges to the
    paper's PSNR in a fraction of the updates.
  * 'SAME' zero-padded convolutions and RGB in/out (jsr.models.srcnn), so the whole crop is
    supervised; PSNR is measured on Y as in the paper.

Args: scale=2|3|4 (default 3), variant=9-1-5|9-3-5|9-5-5|tiny (default 9-5-5, the paper's best),
runlocal (tiny, seconds).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/srcnn.py", scale=3, variant="9-5-5", runlocal=False)
  return common.supervised(
      model="srcnn", scale=a["scale"], variant=a["variant"], loss="1*L2",
      patch_size=common.hr_patch_near(33, a["scale"]), batch_size=128, total_steps=200_000,
      optim=dict(name="adam", lr=1e-4, schedule="constant"),
      runlocal=a["runlocal"])
