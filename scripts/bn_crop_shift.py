r"""How much a BatchNorm generator's output changes between train-mode (batch statistics) and
eval-mode (running statistics) BN, at the crop size it was trained on and at another one.

  python scripts/bn_crop_shift.py --workdir=/work/gan_runs/srresnet_mse_icnr --crops=64:16,128:8

A GAN fine-tune applies G in train mode (SRGAN's BN generator, as the paper trains it), so if
its crops differ from the warm start's, G's first updates start from different activations than
the ones the start was trained on. This measures that gap directly: random HR crops of the shared
training photos, MATLAB-bicubic x`scale` LR rounded to 8 bits, RGB PSNR of G's output in both
modes, averaged over --reps batches (same crops for both modes).
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
import sys

from absl import app, flags
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsr import inference  # noqa: E402
from jsr.ops.resize import imresize  # noqa: E402

flags.DEFINE_string("workdir", None, "A supervised run of a BatchNorm model (e.g. SRResNet).")
flags.DEFINE_string("train", "../shared/data/train", "Folder of HR photos (searched recursively).")
flags.DEFINE_string("crops", "64:16,128:8", "HR crop size:batch pairs.")
flags.DEFINE_integer("reps", 6, "Batches per crop size.")
flags.DEFINE_string("output", "", "JSON file for the results.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(_):
  config, method, variables, step = inference.load_variables(FLAGS.workdir)
  net = method.create_model(config) if hasattr(method, "create_model") else None
  if net is None or "batch_stats" not in variables:
    raise SystemExit(f"{FLAGS.workdir}: not a run of a BatchNorm model")
  scale = int(config.scale)
  files = sorted(f for f in glob.glob(os.path.join(FLAGS.train, "**", "*"), recursive=True)
                 if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")))
  rng = np.random.default_rng(0)
  rows = []
  for spec in FLAGS.crops.split(","):
    p, n = (int(v) for v in spec.split(":"))
    psnr = {"train": [], "eval": []}
    for _ in range(FLAGS.reps):
      hr = []
      for f in rng.choice(files, n):
        im = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255
        y, x = rng.integers(0, im.shape[0] - p), rng.integers(0, im.shape[1] - p)
        hr.append(im[y:y + p, x:x + p])
      hr = np.stack(hr)
      lr = np.round(np.clip(np.asarray(imresize(jnp.asarray(hr), 1 / scale)), 0, 1) * 255) / 255
      sr_train, _ = net.apply(variables, lr, train=True, mutable=["batch_stats"])
      sr_eval = net.apply(variables, lr, train=False)
      for mode, sr in (("train", sr_train), ("eval", sr_eval)):
        psnr[mode].append(float(10 * np.log10(1 / np.mean((np.asarray(sr) - hr) ** 2))))
    row = {"crop": p, "batch": n, "psnr_train_mode_bn": float(np.mean(psnr["train"])),
           "psnr_eval_mode_bn": float(np.mean(psnr["eval"]))}
    rows.append(row)
    print(f"{p}-px crops, batch {n}: PSNR {row['psnr_train_mode_bn']:.2f} dB with batch "
          f"statistics, {row['psnr_eval_mode_bn']:.2f} dB with the running ones")
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"workdir": FLAGS.workdir, "step": step, "patch_size": config.data.patch_size,
                 "rows": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
