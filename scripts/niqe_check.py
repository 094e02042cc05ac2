r"""NIQE of every image in some folders, and Set14 baboon.png against MATLAB's value.

  python scripts/niqe_check.py --out=/tmp/niqe.json
  python scripts/niqe_check.py --images=path/to/sr_outputs --crop_border=4

The figure of record for `jsr.niqe`: MATLAB's niqe_release (R2021a, as BasicSR reports it) gives
5.72957338 on Set14 baboon.png (Y channel, no crop); ours must agree within 0.001. Prints one line
per image and the mean per folder; exits with status 1 when baboon is checked and misses.
"""

import json
import sys
import time
from pathlib import Path

from absl import app, flags

from jsr import io as jio
from jsr import niqe

flags.DEFINE_list("images", ["../shared/data/benchmarks/Set5", "../shared/data/benchmarks/Set14"],
                  "Folders (or single images) to score.")
flags.DEFINE_integer("crop_border", 0, "Pixels removed at each border before scoring.")
flags.DEFINE_bool("y_channel", True, "Score the Y of BT.601 YCbCr (False: MATLAB rgb2gray).")
flags.DEFINE_string("out", None, "Optional JSON file for the per-image values and means.")
FLAGS = flags.FLAGS

BABOON = "baboon.png"
MATLAB_BABOON = 5.72957338  # MATLAB R2021a, niqe_release, Y channel, no crop (BasicSR's figure)
TOLERANCE = 1e-3


def main(argv):
  del argv
  results = {"crop_border": FLAGS.crop_border, "y_channel": FLAGS.y_channel, "folders": {}}
  baboon_ok = None
  for folder in FLAGS.images:
    paths = jio.list_images(folder)
    values = {}
    print(f"## {folder} (crop_border={FLAGS.crop_border}, "
          f"{'Y' if FLAGS.y_channel else 'rgb2gray'})")
    for path in paths:
      img = jio.load_image(path).image  # float32 in [0, 1]; niqe rounds it back to 8 bits
      t0 = time.perf_counter()
      value = niqe.niqe(img, crop_border=FLAGS.crop_border, y_channel=FLAGS.y_channel)
      dt = time.perf_counter() - t0
      name, (h, w) = Path(path).name, img.shape[:2]
      line = f"{name:20s} {h:4d}x{w:<4d} NIQE {value:.4f}  {dt:.2f}s"
      values[name] = value
      if name == BABOON and FLAGS.crop_border == 0 and FLAGS.y_channel:
        diff = value - MATLAB_BABOON
        baboon_ok = abs(diff) <= TOLERANCE
        results["baboon_check"] = dict(ours=value, matlab=MATLAB_BABOON, diff=diff,
                                       tolerance=TOLERANCE, ok=baboon_ok)
        line += f"  MATLAB {MATLAB_BABOON:.4f} diff {diff:+.1e} {'ok' if baboon_ok else 'MISMATCH'}"
      print(line)
    mean = sum(values.values()) / len(values)
    print(f"mean NIQE over {len(values)} images: {mean:.4f}\n")
    results["folders"][folder] = {"mean": mean, "images": values}
  if FLAGS.out:
    Path(FLAGS.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {FLAGS.out}")
  if baboon_ok is False:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
