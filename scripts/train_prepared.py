r"""A training set larger than the training process's memory: prepare it, train on it, measure.

    python scripts/train_prepared.py --data=../shared/data/train --out=/tmp/jsr_prepared \
        --crop=96 --step=16 --steps=300 --output=docs/runs/prepared_training_cpu.json

1. `python -m jsr.prepare` cuts the photos into --crop sub-images every --step pixels (dense
   overlapping windows: the shared photos are ~30 MB of PNG; at step 16 they make a ~6 GB set,
   the size that matters here being the decoded bytes a folder source would hold in memory);
2. `python -m jsr.main` trains EDSR runlocal (the tiny variant) for --steps steps on
   `records:OUT` at --batch, in its own process, whose peak RSS (ru_maxrss of the child) is
   compared with the set's decoded size;
3. the input pipeline alone on the same set (jsr.data.benchmark, numpy backend), patches/s.

The OS page cache holds whatever of the set was read recently; it is the kernel's, shared and
reclaimable, and not in the process's RSS (pread, not mmap: jsr/records.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import resource
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine_info import machine  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/train", "Photos to prepare.")
flags.DEFINE_string("out", "/tmp/jsr_prepared", "Prepared set (re-used when it exists).")
flags.DEFINE_integer("crop", 96, "Sub-image size.")
flags.DEFINE_integer("step", 16, "Sub-image stride.")
flags.DEFINE_integer("steps", 300, "Training steps.")
flags.DEFINE_integer("batch", 16, "Global batch.")
flags.DEFINE_string("config", "configs/edsr.py:scale=2,runlocal", "Training config.")
flags.DEFINE_string("workdir", "/tmp/jsr_prepared_run", "Training workdir (emptied first).")
flags.DEFINE_string("output", "", "JSON file for the figures.")

ROOT = Path(__file__).resolve().parents[1]


def main(argv):
  del argv
  out = Path(FLAGS.out)
  result = {"machine": machine(), "flags": {k: FLAGS[k].value for k in (
      "data", "crop", "step", "steps", "batch", "config")}}
  if not (out / "index.json").exists():
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jsr.prepare", f"--data={FLAGS.data}", f"--out={out}",
                    f"--crop={FLAGS.crop}", f"--step={FLAGS.step}"], cwd=ROOT, check=True)
    result["prepare_s"] = time.perf_counter() - t0
  index = json.loads((out / "index.json").read_text())
  decoded = index["count"] * index["crop"] ** 2 * 3
  disk = sum(f.stat().st_size for f in out.iterdir())
  result.update(sub_images=index["count"], decoded_bytes=decoded, disk_bytes=disk,
                shards=len(index["shards"]))
  print(f"prepared set: {index['count']} sub-images, {decoded / 1e9:.2f} GB decoded, "
        f"{disk / 1e9:.2f} GB on disk")

  subprocess.run(["rm", "-rf", FLAGS.workdir], check=True)
  cmd = [sys.executable, "-m", "jsr.main", f"--config={FLAGS.config}",
         f"--workdir={FLAGS.workdir}", f"--config.data.train=records:{out}",
         f"--config.total_steps={FLAGS.steps}", f"--config.data.batch_size={FLAGS.batch}",
         "--config.data.backend=numpy", "--config.eval.sets=",
         f"--config.checkpoint_every_steps={FLAGS.steps // 2}"]
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode:
    sys.exit(proc.stderr[-3000:])
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child
  rows = [json.loads(l) for l in (Path(FLAGS.workdir) / "metrics.jsonl").read_text().splitlines()]
  steps_done = max(r["step"] for r in rows)
  read = [l for l in proc.stderr.splitlines() if "this host read" in l]
  result.update(train_wall_s=wall, train_steps=steps_done, peak_rss_bytes=peak,
                decoded_over_peak_rss=decoded / peak, patches_per_s_trained=FLAGS.batch * steps_done
                / wall, read_log=read[-1].split("] ")[-1] if read else "")
  print(f"trained {steps_done} steps in {wall:.1f} s (compile included), peak RSS "
        f"{peak / 1e9:.2f} GB: the set is {decoded / peak:.1f}x that")

  import ml_collections  # pylint: disable=g-import-not-at-top
  from jsr import data  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(seed=0, scale=2, total_steps=10**9, data=dict(
      train=f"records:{out}", tfds_data_dir="", patch_size=96, batch_size=16, augment=True,
      backend="numpy")))
  r = data.benchmark(config, 300)
  rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  result.update(pipeline_patches_per_s_96px=r["patches_per_s"], pipeline_process_peak_rss=rss_after)
  print(f"input pipeline alone: {r['patches_per_s']:.0f} patches/s (96 px, batch 16, numpy "
        f"backend); this process's peak RSS {rss_after / 1e9:.2f} GB")
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(result, indent=1))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
