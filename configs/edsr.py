r"""python -m jsr.main --config=configs/edsr.py:scale=2,variant=baseline --workdir=/tmp/edsr

EDSR (Lim et al., CVPRW 2017), supervised on bicubic-downscaled HR crops (jsr/methods/supervised.py).

Paper / reference-code hyper-parameters (the defaults): L1 loss, 48x48 LR patches (HR 48*s),
batch 16, Adam(b1=0.9, b2=0.999, eps=1e-8), lr 1e-4 halved every 200k updates, 300k updates,
random flips and 90-degree rotations. The paper trains x3/x4 from the x2 model; here every scale
trains from scratch. The reference code trains on [0, 255] values (`rgb_range=255`); we train on
[0, 1], which only rescales the L1 loss (Adam is invariant to that).

Args (comma-separated after the colon):
  scale=2|3|4         upscaling factor (default 2).
  variant=NAME        baseline (1.4M params, default) or full (41M), jsr.models.edsr.VARIANTS.
  runlocal            tiny variant, 24px crops, 4 steps: finishes in seconds.

Data: defaults to scikit-image's bundled photos (nothing to download); for the paper's setting use
`--config.data.train=folder:/data/DIV2K/DIV2K_train_HR` (or `tfds:div2k`) and
`--config.eval.sets=set5=/data/Set5,set14=/data/Set14`.
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/edsr.py", scale=2, variant="baseline", runlocal=False)
  return common.supervised(
      model="edsr", scale=a["scale"], variant=a["variant"], loss="1*L1", lr_patch=48,
      batch_size=16, total_steps=300_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="step",
                 decay_steps=200_000, decay_factor=0.5),
      runlocal=a["runlocal"])
