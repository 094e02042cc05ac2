r"""python -m jsr.main --config=configs/srresnet.py:scale=4,variant=paper --workdir=/tmp/srresnet

SRResNet (the SRGAN generator, Ledig et al., CVPR 2017) trained alone with MSE
(jsr/methods/supervised.py); BatchNorm running statistics live in the train state.

Paper hyper-parameters (the defaults): MSE loss, 96x96 HR crops (24x24 LR at x4), batch 16,
Adam(b1=0.9), lr 1e-4, 10^6 update iterations, constant learning rate. The paper scales LR inputs
to [0, 1] and HR to [-1, 1]; we keep both in [0, 1] (the MSE differs by a constant factor).

Args: scale=2|4|8 (default 4; 3 also works), variant=paper|no_bn|paper_icnr|no_bn_icnr|tiny
(default paper, with BN; *_icnr: ICNR-initialised sub-pixel convs), runlocal (tiny, seconds).

Data: bundled scikit-image photos by default; the paper used 350k ImageNet images: any
`--config.data.train=folder:/path` of HR photos.
"""

from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, name="configs/srresnet.py", scale=4, variant="paper", runlocal=False)
  return common.supervised(
      model="srresnet", scale=a["scale"], variant=a["variant"], loss="1*L2",
      patch_size=common.hr_patch_near(96, a["scale"]), batch_size=16, total_steps=1_000_000,
      optim=dict(name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="constant"),
      runlocal=a["runlocal"])
