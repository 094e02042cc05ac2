r"""How well KernelGAN recovers a hidden kernel: 20 random DIV2KRK-style kernels on Set14 images.

  python scripts/kernelgan_accuracy.py --data=../shared/data/benchmarks/Set14 --kernels=20 \
      --output=docs/runs/kernelgan_accuracy_x2.json

Kernel i (jsr.ops.realworld.div2krk_kernel with default_rng([seed, i]): covariance eigenvalues
U(0.35, 5) at x2 in the paper's units, any angle, 25% multiplicative tap noise) blurs Set14 image
i mod 14 (modcropped; gray images as gray), which is subsampled directly by 2 and rounded to 8 bits,
the way scripts/make_degraded_set.py --pipeline=kernel makes a test set. KernelGAN
(configs/kernelgan.py's settings, 3000 iterations) sees only that LR image. Errors, per kernel:
  * the kernels' second moments: sigma_major, sigma_minor (square roots of the covariance's
    eigenvalues, HR pixels) and the major axis' angle, true vs estimated (relative sigma error; the
    angle error only where the true kernel is anisotropic, sigma_major / sigma_minor > 1.25);
  * the centroid offset (HR pixels): a shifted kernel misplaces every output pixel;
  * the PSNR between the HR image blurred by the estimate and by the truth (RGB, 8-px border
    shaved): what the estimate is for, one number.
Baseline: the same errors for the kernel "assume bicubic" means (MATLAB imresize x0.5 written as a
9x9 blur + direct subsampling).
The JSON is rewritten after every kernel, with the medians so far.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import sys
import time

from absl import app, flags, logging
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/benchmarks/Set14", "Folder of HR images.")
flags.DEFINE_integer("kernels", 20, "How many random kernels (image i mod len(images)).")
flags.DEFINE_integer("seed", 0, "Kernel draws: default_rng([seed, i]); KernelGAN's seed is i.")
flags.DEFINE_integer("max_iters", 0, "Override KernelGAN's max_iters (0: the config's 3000).")
flags.DEFINE_string("output", "", "JSON file for the results.")
flags.DEFINE_integer("first", 0, "Start at kernel `first`, appending to --output's kernels before "
                     "it (to finish an interrupted run).")


def moments(k: np.ndarray) -> dict[str, float]:
  """Centroid (row, col), sigma_major, sigma_minor and the major axis' angle in [0, pi) of a
  kernel's (clipped, normalised) mass: the definition written out, no fitting."""
  k = np.clip(np.asarray(k, np.float64), 0.0, None)
  k = k / k.sum()
  rows, cols = np.mgrid[:k.shape[0], :k.shape[1]].astype(np.float64)
  mr, mc = (k * rows).sum(), (k * cols).sum()
  dr, dc = rows - mr, cols - mc
  cov = np.array([[(k * dc * dc).sum(), (k * dc * dr).sum()],
                  [(k * dc * dr).sum(), (k * dr * dr).sum()]])  # (x, y) = (col, row)
  vals, vecs = np.linalg.eigh(cov)
  major = vecs[:, 1]
  # Relative to the tap jsr.ops.degrade.blur puts at the output pixel, (size - 1) // 2.
  return {"center_row": mr - (k.shape[0] - 1) // 2, "center_col": mc - (k.shape[1] - 1) // 2,
          "sigma_major": float(np.sqrt(max(vals[1], 0.0))),
          "sigma_minor": float(np.sqrt(max(vals[0], 0.0))),
          "angle": float(np.arctan2(major[1], major[0]) % np.pi)}


def bicubic_kernel() -> np.ndarray:
  """The 9x9 kernel k with degrade(x, 2, k, "direct") == MATLAB imresize(x, 0.5) away from the
  borders, read off imresize's response to deltas (it is linear): the "assume bicubic" baseline."""
  import jax.numpy as jnp
  from jsr.ops import degrade
  from jsr.ops.resize import imresize
  w = {}
  for p in (16, 17):
    x = np.zeros((1, 32, 1, 1), np.float32)
    x[0, p] = 1.0
    y = np.asarray(imresize(jnp.asarray(np.repeat(x, 32, axis=2)), 0.5))[0, :, 8, 0]
    for i in range(16):
      if abs(p - 2 * i) <= 4:
        w[p - 2 * i] = y[i] * 2.0  # imresize's 2-D response is the product of two 1-D ones.
  k1 = np.array([w[4 - j] for j in range(9)])  # blur is a true convolution about tap 4.
  k = np.outer(k1, k1) / np.outer(k1, k1).sum()
  x = np.random.default_rng(0).random((1, 40, 40, 1)).astype(np.float32)
  a = np.asarray(degrade.degrade(jnp.asarray(x), 2, kernel=k, mode="direct"))[0, 4:-4, 4:-4]
  b = np.asarray(imresize(jnp.asarray(x), 0.5))[0, 4:-4, 4:-4]
  assert np.abs(a - b).max() < 1e-4, np.abs(a - b).max()
  return k.astype(np.float32)


def angle_error(a: float, b: float) -> float:
  d = abs(a - b) % np.pi
  return float(min(d, np.pi - d))


def main(argv):
  del argv
  import jax.numpy as jnp
  from configs import kernelgan as kernelgan_config
  from jsr import io as jio
  from jsr import metrics
  from jsr.methods import kernelgan
  from jsr.ops import degrade, realworld

  config = kernelgan_config.get_config("scale=2")
  if FLAGS.max_iters:
    config.kernelgan.max_iters = FLAGS.max_iters
  paths = jio.list_images(FLAGS.data)
  k_bic = bicubic_kernel()
  result = {"command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "per_kernel": [], "median": {}}
  if FLAGS.first:
    done = json.loads(Path(FLAGS.output).read_text())["per_kernel"]
    if len(done) < FLAGS.first:
      raise app.UsageError(f"--first={FLAGS.first}: {FLAGS.output} holds {len(done)} kernels")
    result["per_kernel"] = done[:FLAGS.first]
  for i in range(FLAGS.first, FLAGS.kernels):
    path = paths[i % len(paths)]
    hr = jio.modcrop(jio.load_image(path).image, 2)
    k_true, draw = realworld.div2krk_kernel(np.random.default_rng([FLAGS.seed, i]), 2)
    lr = np.asarray(metrics.quantize(degrade.degrade(jnp.asarray(hr)[None], 2, kernel=k_true,
                                                     mode="direct")))[0]
    t0 = time.perf_counter()
    k_est, log = kernelgan.estimate_kernel(lr, config, seed=i)
    seconds = time.perf_counter() - t0
    mt, me, mb = moments(k_true), moments(k_est), moments(k_bic)
    blur_t = degrade.blur(jnp.asarray(hr)[None], k_true)
    blur_e = degrade.blur(jnp.asarray(hr)[None], k_est)
    blur_b = degrade.blur(jnp.asarray(hr)[None], k_bic)
    blur_psnr = float(metrics.psnr(jnp.clip(blur_e, 0, 1), jnp.clip(blur_t, 0, 1), shave=8,
                                   y_channel=False, quantized=False)[0])
    bic_psnr = float(metrics.psnr(jnp.clip(blur_b, 0, 1), jnp.clip(blur_t, 0, 1), shave=8,
                                  y_channel=False, quantized=False)[0])
    row = {"image": Path(path).name, "draw": draw, "true": mt, "estimate": me,
           "bicubic_blur_psnr": bic_psnr,
           "bicubic_sigma_major_rel_error": mb["sigma_major"] / mt["sigma_major"] - 1.0,
           "sigma_major_rel_error": me["sigma_major"] / mt["sigma_major"] - 1.0,
           "sigma_minor_rel_error": me["sigma_minor"] / mt["sigma_minor"] - 1.0,
           "anisotropic": mt["sigma_major"] / mt["sigma_minor"] > 1.25,
           "angle_error_deg": float(np.degrees(angle_error(me["angle"], mt["angle"]))),
           "center_offset": float(np.hypot(me["center_row"] - mt["center_row"],
                                           me["center_col"] - mt["center_col"])),
           "blur_psnr": blur_psnr, "seconds": seconds,
           "similar_to_bicubic": log["similar_to_bicubic"]}
    result["per_kernel"].append(row)
    rows = result["per_kernel"]
    result["median"] = {
        "abs_sigma_major_rel_error": float(np.median([abs(r["sigma_major_rel_error"]) for r in rows])),
        "abs_sigma_minor_rel_error": float(np.median([abs(r["sigma_minor_rel_error"]) for r in rows])),
        "angle_error_deg_anisotropic": float(np.median([r["angle_error_deg"] for r in rows
                                                        if r["anisotropic"]] or [np.nan])),
        "center_offset": float(np.median([r["center_offset"] for r in rows])),
        "blur_psnr": float(np.median([r["blur_psnr"] for r in rows])),
        "bicubic_blur_psnr": float(np.median([r["bicubic_blur_psnr"] for r in rows])),
        "abs_bicubic_sigma_major_rel_error": float(np.median(
            [abs(r["bicubic_sigma_major_rel_error"]) for r in rows])),
        "kernels": len(rows)}
    logging.info("kernel %d (%s): sigma %.2f/%.2f vs true %.2f/%.2f, angle err %.0f deg, centre "
                 "off %.2f px, blur PSNR %.2f dB (bicubic kernel %.2f), %.0f s", i, row["image"], me["sigma_major"],
                 me["sigma_minor"], mt["sigma_major"], mt["sigma_minor"], row["angle_error_deg"],
                 row["center_offset"], blur_psnr, bic_psnr, seconds)
    if FLAGS.output:
      Path(FLAGS.output).write_text(json.dumps(result, indent=1))
  print(json.dumps(result["median"], indent=1))


if __name__ == "__main__":
  app.run(main)
