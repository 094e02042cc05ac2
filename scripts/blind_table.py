r"""Blind SR with known-but-hidden kernels: bicubic, ZSSR (bicubic assumed), KernelGAN + ZSSR, and
ZSSR given the true kernel, scored on HR benchmarks.

  python scripts/blind_table.py --data=../shared/data/benchmarks/Set5 --scale=2 \
      --output=docs/runs/blind_x2_set5.json [--images=bird,head] [--methods=...]

Each HR image (cropped to a multiple of the scale) is blurred with its own random anisotropic
Gaussian (13x13, sigma1, sigma2 ~ U(0.6, 2.5), theta ~ U(0, pi); a DIV2KRK-like draw, seeded by
the image's index), centred so that LR pixel i sits at HR position s*i + (s - 1)/2 (MATLAB's
bicubic alignment, which every method's interpolation assumes), subsampled directly by s and
rounded to 8 bits. No method sees the kernel except "zssr_true_kernel", the upper bound.
Y-PSNR/SSIM as in jsr.evaluate (8-bit SR, s pixels shaved); kernel error is the sum of squared
differences between the estimated and true kernels, both zero-padded to a common size and centred.
The JSON is rewritten after every image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/benchmarks/Set5", "Folder of HR images.")
flags.DEFINE_integer("scale", 2, "2 or 4.")
flags.DEFINE_list("images", [], "Only these image stems (default: all).")
flags.DEFINE_list("methods", ["bicubic", "zssr_bicubic", "kernelgan_zssr", "zssr_true_kernel"],
                  "What to run.")
flags.DEFINE_integer("zssr_max_iters", 0, "Override ZSSR's max_iters (0: the paper's 3000).")
flags.DEFINE_integer("kernelgan_max_iters", 0, "Override KernelGAN's max_iters (0: 3000).")
flags.DEFINE_integer("seed", 0, "Kernel draws and method seeds.")
flags.DEFINE_string("output", "", "JSON file for the results.")


def random_kernel(rng, scale: int):
  import numpy as np
  from jsr.methods import kernelgan
  from jsr.ops import degrade
  s1, s2 = rng.uniform(0.6, 2.5, size=2)
  theta = rng.uniform(0.0, np.pi)
  corr = degrade.gaussian_kernel(13, float(s1), float(s2), float(theta))  # symmetric
  aligned = kernelgan.center_kernel(corr, scale)
  return kernelgan.to_degrade_convention(aligned), dict(sigma1=s1, sigma2=s2, theta=theta)


def kernel_sse(a, b) -> float:
  import numpy as np
  n = max(a.shape[0], b.shape[0])
  pad = lambda k: np.pad(k, ((n - k.shape[0]) // 2, (n - k.shape[0] + 1) // 2))
  return float(np.sum((pad(a) - pad(b)) ** 2))


def main(argv):
  del argv
  import jax.numpy as jnp
  import numpy as np
  from configs import kernelgan as kernelgan_config
  from configs import zssr as zssr_config
  from jsr import io as jio
  from jsr import metrics
  from jsr.methods import kernelgan, zssr
  from jsr.ops import degrade
  from jsr.ops.resize import imresize

  s = FLAGS.scale
  configs = {"zssr_bicubic": zssr_config.get_config(f"scale={s}"),
             "zssr_true_kernel": zssr_config.get_config(f"scale={s},kernel=file"),
             "kernelgan_zssr": kernelgan_config.get_config(f"scale={s}")}
  for c in configs.values():
    if FLAGS.zssr_max_iters:
      c.zssr.max_iters = FLAGS.zssr_max_iters
  if FLAGS.kernelgan_max_iters:
    configs["kernelgan_zssr"].kernelgan.max_iters = FLAGS.kernelgan_max_iters

  paths = jio.list_images(FLAGS.data)
  if FLAGS.images:
    paths = [p for p in paths if Path(p).stem in FLAGS.images]
  result = {"command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "scale": s, "per_image": [], "mean": {}}

  def score(sr, hr):
    sr = metrics.quantize(jnp.clip(jnp.asarray(sr)[None], 0.0, 1.0))
    hr = jnp.asarray(hr)[None]
    return (float(metrics.psnr(sr, hr, shave=s)[0]), float(metrics.ssim(sr, hr, shave=s)[0]))

  for index, path in enumerate(paths):
    rng = np.random.default_rng(FLAGS.seed * 1000 + index)
    hr = jio.modcrop(jio.load_image(path).image, s)
    k_true, draw = random_kernel(rng, s)
    lr = np.asarray(metrics.quantize(degrade.degrade(jnp.asarray(hr)[None], s, kernel=k_true,
                                                     mode="direct")))[0]
    row = {"image": Path(path).name, "kernel": {k: float(v) for k, v in draw.items()}}
    for name in FLAGS.methods:
      t0 = time.perf_counter()
      extra = {}
      if name == "bicubic":
        sr = np.asarray(imresize(jnp.asarray(lr)[None], s))[0]
      elif name == "zssr_bicubic":
        sr, log = zssr.super_resolve(lr, configs[name], FLAGS.seed)
      elif name == "zssr_true_kernel":
        sr, log = zssr.super_resolve(lr, configs[name], FLAGS.seed, kernel=k_true)
      elif name == "kernelgan_zssr":
        sr, log = kernelgan.super_resolve(lr, configs[name], FLAGS.seed)
        extra = {"kernel_sse": kernel_sse(log["kernel"], k_true),
                 "similar_to_bicubic": log["similar_to_bicubic"],
                 "kernelgan_seconds": log["kernelgan_seconds"]}
      else:
        raise app.UsageError(f"unknown method {name!r}")
      psnr, ssim = score(sr, hr)
      row[name] = {"psnr_y": psnr, "ssim_y": ssim, "seconds": time.perf_counter() - t0, **extra}
      logging.info("%s %s: %.2f dB / %.4f (%.0f s)", row["image"], name, psnr, ssim,
                   row[name]["seconds"])
    result["per_image"].append(row)
    result["mean"] = {m: {k: float(np.mean([r[m][k] for r in result["per_image"]]))
                          for k in ("psnr_y", "ssim_y", "seconds")} for m in FLAGS.methods}
    if FLAGS.output:
      Path(FLAGS.output).write_text(json.dumps(result, indent=1))
  print(f"{'method':<20s} " + " ".join(f"{r['image']:>16s}" for r in result["per_image"])
        + "       mean")
  for m in FLAGS.methods:
    cells = " ".join(f"{r[m]['psnr_y']:7.2f}/{r[m]['ssim_y']:.4f}" for r in result["per_image"])
    print(f"{m:<20s} {cells}  {result['mean'][m]['psnr_y']:7.2f}/{result['mean'][m]['ssim_y']:.4f}")


if __name__ == "__main__":
  app.run(main)
