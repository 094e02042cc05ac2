r"""The best the consistency (data) term alone can do: exact back-projection on Set5/Set14.

    python scripts/data_term_optimum.py --scale=2 --output=docs/runs/data_term_optimum_x2.json

For y = D x (D = MATLAB bicubic downscaling, the benchmark protocol, as two per-axis matrices
D = Dh (x) Dw), every image with D x' = y minimises the data term, and the one nearest (in L2) to a
starting interpolation x0 = U y is the back-projection

    x' = x0 + D^T (D D^T)^-1 (y - D x0),    D^T (D D^T)^-1 = [Dh^T (Dh Dh^T)^-1] (x) [Dw^T (Dw Dw^T)^-1].

Gradient descent on ||D x - y||^2 from x0 converges to it (its steps lie in D's row space). So its
PSNR is the ceiling of per-image optimisation of the data term, and x0 alone decides what x' holds
in D's null space. Prints, for each interpolation kernel, Y-PSNR/SSIM (8-bit, shave = scale) of x0
and of its back-projection.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags
import numpy as np

from jsr import io, metrics
from jsr.ops import resize

flags.DEFINE_integer("scale", 2, "Scale factor.")
flags.DEFINE_string("benchmarks", "../shared/data/benchmarks", "Folder holding the sets.")
flags.DEFINE_list("sets", ["Set5", "Set14"], "Benchmark sets.")
flags.DEFINE_list("kernels", ["cubic", "lanczos2", "lanczos3", "bilinear"], "Starting interpolations.")
flags.DEFINE_string("output", "", "JSON file for the results.")
FLAGS = flags.FLAGS


def _apply(a, x, b):
  """a @ x @ b^T on each channel of (H, W, C) x."""
  return np.einsum("Hh,hwc,Ww->HWc", a, x, b, optimize=True)


def main(argv):
  del argv
  s = FLAGS.scale
  results = {}
  for name in FLAGS.sets:
    rows: dict[str, list] = {}
    for path in io.list_images(Path(FLAGS.benchmarks) / name):
      hr = io.modcrop(io.load_image(path).image, s).astype(np.float64)
      lr = np.asarray(resize.imresize(hr.astype(np.float32), 1 / s, quantize=True), np.float64)
      (big_h, big_w), (h, w) = hr.shape[:2], lr.shape[:2]
      dh = resize.resize_matrix(big_h, h, 1 / s).astype(np.float64)
      dw = resize.resize_matrix(big_w, w, 1 / s).astype(np.float64)
      ph, pw = dh.T @ np.linalg.inv(dh @ dh.T), dw.T @ np.linalg.inv(dw @ dw.T)
      for kernel in FLAGS.kernels:
        uh = resize.resize_matrix(h, big_h, s, kernel).astype(np.float64)
        uw = resize.resize_matrix(w, big_w, s, kernel).astype(np.float64)
        x0 = _apply(uh, lr, uw)
        x = x0 + _apply(ph, lr - _apply(dh, x0, dw), pw)
        for label, im in ((kernel, x0), (f"{kernel}+backprojection", x)):
          m = metrics.psnr_ssim(np.clip(im, 0, 1)[None].astype(np.float32),
                                hr[None].astype(np.float32), shave=s)
          rows.setdefault(label, []).append((float(m["psnr"][0]), float(m["ssim"][0])))
    results[name] = {k: {"psnr_y": float(np.mean([r[0] for r in v])),
                         "ssim_y": float(np.mean([r[1] for r in v])), "images": len(v)}
                     for k, v in rows.items()}
    for k, v in results[name].items():
      print(f"{name} x{s}  {k:28s} {v['psnr_y']:.3f} / {v['ssim_y']:.4f}")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps({"scale": s, "results": results}, indent=1) + "\n")
    print("wrote", FLAGS.output)


if __name__ == "__main__":
  app.run(main)
