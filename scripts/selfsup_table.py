r"""Self-supervised x2 on the shared training photos (as LR observations), evaluated on Set5/Set14.

  python scripts/selfsup_table.py --runs=consistency,pair,both --steps=2000 \
      --workdir=/tmp/selfsup_table --output=docs/selfsup_x2.json

Each run is `python -m jsr.main --config=configs/selfsup.py:scale=S,loss=RUN,variant=V` with the
training folder as `data.train` (no HR image is used for training) and Set5/Set14 as eval sets
(their LR inputs are made from HR by MATLAB bicubic, so kernel = bicubic). Extra overrides for every
run go after `--`, e.g. `-- --config.loss.gamma=1e-5`. Prints a markdown table with the bicubic
row, each run's final Y-PSNR/SSIM and its wall-clock training time.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("runs", "consistency,pair,both", "Loss settings (configs/selfsup.py loss=).")
flags.DEFINE_integer("scale", 2, "Scale.")
flags.DEFINE_string("variant", "small", "Network variant.")
flags.DEFINE_integer("steps", 2000, "Training steps per run.")
flags.DEFINE_string("train", "../shared/data/train", "Folder of LR observations.")
flags.DEFINE_string("benchmarks", "../shared/data/benchmarks", "Folder with Set5/ and Set14/.")
flags.DEFINE_string("workdir", "/tmp/selfsup_table", "Parent folder of the runs' workdirs.")
flags.DEFINE_string("output", None, "JSON file for the results.")
FLAGS = flags.FLAGS


def _last(rows, key):
  vals = [r[key] for r in rows if key in r]
  return vals[-1] if vals else float("nan")


def main(argv):
  extra = argv[1:]
  sets = f"set5={FLAGS.benchmarks}/Set5,set14={FLAGS.benchmarks}/Set14"
  results = {}
  for run in FLAGS.runs.split(","):
    workdir = Path(FLAGS.workdir) / f"{run}_x{FLAGS.scale}_{FLAGS.variant}"
    cmd = [sys.executable, "-m", "jsr.main",
           f"--config=configs/selfsup.py:scale={FLAGS.scale},loss={run},variant={FLAGS.variant}",
           f"--workdir={workdir}", f"--config.data.train=folder:{FLAGS.train}",
           f"--config.eval.sets={sets}", f"--config.total_steps={FLAGS.steps}",
           f"--config.eval_every_steps={FLAGS.steps}", *extra]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    rows = [json.loads(l) for l in open(workdir / "metrics.jsonl") if l.strip()]
    s = FLAGS.scale
    results[run] = {k: _last(rows, f"eval/{n}_x{s}/{m}")
                    for k, (n, m) in {"set5_psnr": ("set5", "psnr_y"),
                                      "set5_ssim": ("set5", "ssim_y"),
                                      "set14_psnr": ("set14", "psnr_y"),
                                      "set14_ssim": ("set14", "ssim_y")}.items()}
    results[run].update(wall_minutes=wall / 60, steps=FLAGS.steps, variant=FLAGS.variant)
    results["bicubic"] = {k: _last(rows, f"eval/{n}_x{s}/bicubic_{m}")
                          for k, (n, m) in {"set5_psnr": ("set5", "psnr_y"),
                                            "set5_ssim": ("set5", "ssim_y"),
                                            "set14_psnr": ("set14", "psnr_y"),
                                            "set14_ssim": ("set14", "ssim_y")}.items()}
  print(f"\n| x{FLAGS.scale} | Set5 PSNR / SSIM | Set14 PSNR / SSIM | steps | wall (min) |")
  print("|---|---|---|---|---|")
  for name in ["bicubic"] + FLAGS.runs.split(","):
    r = results[name]
    steps = r.get("steps", "")
    wall = f"{r['wall_minutes']:.1f}" if "wall_minutes" in r else ""
    print(f"| {name} | {r['set5_psnr']:.2f} / {r['set5_ssim']:.4f} | "
          f"{r['set14_psnr']:.2f} / {r['set14_ssim']:.4f} | {steps} | {wall} |")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
  os.environ.setdefault("PYTHONUNBUFFERED", "1")
  app.run(main)
