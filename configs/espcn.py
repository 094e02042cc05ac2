r"""python -m jsr.main --config=configs/espcn.py:scale=3,variant=paper --workdir=/tmp/espcn

ESPCN (Shi et al., CVPR 2016), supervised on bicubic-downscaled HR crops
(jsr/methods/supervised.py).

Paper: MSE loss, 17x17 LR sub-images (HR 17s), tanh, lr from 0.01 down to 1e-4 "when the
improvement of the cost function is smaller than a threshold", Y only. Defaults here:
  * MSE, LR crops 17x17, tanh (jsr.models.espcn): as the paper.
  * Adam(0.9, 0.999, 1e-8), lr 1e-3 divided by 10 after 50k of 100k steps, batch 16 -- the
    paper's plateau-driven SGD schedule needs a validation signal inside the step loop; a fixed
    step decay over the same two decades (Adam's 1e-3 is SGD's 1e-2 in effect) is reproducible.
    The paper does not give a batch size; 16 is the common one.

Args: scale=2|3|4 (default 3), variant=paper|tiny (default paper), runlocal (tiny, seconds).
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/espcn.py", scale=3, variant="paper", runlocal=False)
  return common.supervised(
      model="espcn", scale=a["scale"], variant=a["variant"], loss="1*L2", lr_patch=17,
      batch_size=16, total_steps=100_000,
      optim=dict(name="adam", lr=1e-3, schedule="step", decay_steps=50_000, decay_factor=0.1),
      runlocal=a["runlocal"])
