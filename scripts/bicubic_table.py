r"""Bicubic baselines on the benchmark sets with the papers' protocol, against the published values.

  python scripts/bicubic_table.py --benchmarks=../shared/data/benchmarks --output=docs/bicubic.json

Prints a markdown table (ours vs the EDSR/RCAN tables) and the timing of each set.
"""

import json
import time
from pathlib import Path

from absl import app, flags

from jsr import evaluate
from jsr import io as jio

flags.DEFINE_string("benchmarks", "../shared/data/benchmarks", "Folder holding Set5/, Set14/, ...")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")
FLAGS = flags.FLAGS

# Bicubic rows of the EDSR / RCAN tables: (PSNR, SSIM) per scale.
PUBLISHED = {
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
    "B100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
    "Urban100": {2: (26.88, 0.8403), 3: (24.46, 0.7349), 4: (23.14, 0.6577)},
    "Manga109": {2: (30.80, 0.9339), 3: (26.95, 0.8556), 4: (24.89, 0.7866)},
}


def main(argv):
  del argv
  rows, results = [], {}
  print("| set | scale | PSNR-Y (ours) | published | diff | SSIM-Y (ours) | published | diff | s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name, table in PUBLISHED.items():
    folder = Path(FLAGS.benchmarks) / name
    if not folder.is_dir():
      continue
    paths = jio.list_images(folder)
    for scale, (p_pub, s_pub) in table.items():
      t0 = time.perf_counter()
      res = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", scale), paths, scale,
                                     log=None)
      dt = time.perf_counter() - t0
      p, s = res["mean"]["psnr_y"], res["mean"]["ssim_y"]
      results[f"{name}_x{scale}"] = dict(psnr_y=p, ssim_y=s, published_psnr=p_pub,
                                         published_ssim=s_pub, seconds=dt)
      print(f"| {name} | x{scale} | {p:.3f} | {p_pub:.2f} | {p - p_pub:+.3f} | {s:.4f} | "
            f"{s_pub:.4f} | {s - s_pub:+.4f} | {dt:.1f} |")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
