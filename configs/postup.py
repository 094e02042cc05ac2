r"""python -m jsr.main --config=configs/postup.py:scale=2,variant=lecture --workdir=/tmp/postup

The lecture's post-upsampling network (jsr.models.postup: conv-conv-conv-PixelShuffle-conv plus a
bicubic global residual), supervised on bicubic-downscaled HR crops (jsr/methods/supervised.py).

Defaults: loss 1*L1 + 0.001*TV (TV on the SR output, as in the exercise), 48x48 LR crops, batch
16, Adam(0.9, 0.999, 1e-8), lr 1e-4 halved every 50k of 100k steps (EDSR's recipe, shortened for
a 0.17M-parameter network).

Args: scale=2|3|4 (default 2), variant=lecture|tiny (default lecture), runlocal (tiny, seconds).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/postup.py", scale=2, variant="lecture", runlocal=False)
  return common.supervised(
      model="postup", scale=a["scale"], variant=a["variant"], loss="1*L1+0.001*TV", lr_patch=48,
      batch_size=16, total_steps=100_000,
      optim=dict(name="adam", lr=1e-4, schedule="step", decay_steps=50_000, decay_factor=0.5),
      runlocal=a["runlocal"])
