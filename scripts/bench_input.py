r"""Input-pipeline throughput against what the EDSR-baseline steps consume, with host memory.

    python scripts/bench_input.py --output=docs/runs/bench_input_cpu.json

Sources, each with both backends (numpy threads, tf.data), at the HR crops EDSR-baseline trains on
(LR 48 px: 96 px at x2, 192 px at x4, batch 16):
  folder   the photos of --photos decoded into memory (the default source);
  pairs    the same photos as given pairs, LR written once as uint8 .npy (PIL bicubic: only the
           reading is timed here), x2 and x4;
  records  a prepared set of --photos (python -m jsr.prepare, --crop 192 / --step 96, made once
           into --prepared), read by pread.
Consumers: the jsr EDSR-baseline x2 and x4 train steps on this machine (scripts/bench_train.py
--sides=jsr), patches/s = batch / step time. The goal is input >= 2x consumption.

Every measurement runs in its own process: `peak_rss` is that process's max RSS (decoded images,
prefetch queue, TensorFlow when imported), so the sources' memory can be compared.
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
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine_info import machine  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("photos", "../shared/data/train", "Training photos.")
flags.DEFINE_string("prepared", "/tmp/jsr_bench_prepared", "Prepared set (made when missing).")
flags.DEFINE_string("pairs_dir", "/tmp/jsr_bench_pairs", "Pairs folders (made when missing).")
flags.DEFINE_list("sources", ["folder", "pairs", "records"], "Which sources.")
flags.DEFINE_list("backends", ["numpy", "tf"], "data.backend values.")
flags.DEFINE_list("scales", ["2", "4"], "EDSR-baseline scales (HR crop = 48 x scale).")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_integer("num_batches", 200, "Batches timed after warm-up.")
flags.DEFINE_bool("consumers", True, "Also time the EDSR-baseline train steps.")
flags.DEFINE_string("output", "", "JSON file.")
flags.DEFINE_string("worker", "", "Internal: SOURCE,BACKEND,SCALE measured in this process.")

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(photos: str, out: Path) -> None:
  """LR (uint8 .npy, PIL bicubic) / HR (PNG, modcropped) folders for x2 and x4."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jsr import io as jio  # pylint: disable=g-import-not-at-top
  if (out / "done").exists():
    return
  for s in (2, 4):
    (out / f"x{s}" / "LR").mkdir(parents=True, exist_ok=True)
    (out / f"x{s}" / "HR").mkdir(parents=True, exist_ok=True)
  for i, path in enumerate(jio.list_images(photos)):
    im = Image.open(path).convert("RGB")
    for s in (2, 4):
      w, h = im.width - im.width % s, im.height - im.height % s
      hr = im.crop((0, 0, w, h))
      hr.save(out / f"x{s}" / "HR" / f"{i:04d}.png")
      lr = np.asarray(hr.resize((w // s, h // s), Image.BICUBIC))
      np.save(out / f"x{s}" / "LR" / f"{i:04d}x{s}.npy", lr)
  (out / "done").write_text("")


def source_spec(source: str, scale: int) -> str:
  if source == "folder":
    return f"folder:{FLAGS.photos}"
  if source == "pairs":
    d = Path(FLAGS.pairs_dir) / f"x{scale}"
    return f"pairs:{d / 'LR'},{d / 'HR'}"
  return f"records:{FLAGS.prepared}"


def worker() -> dict:
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jsr import data  # pylint: disable=g-import-not-at-top
  source, backend, scale = FLAGS.worker.split(",")
  scale = int(scale)
  config = ml_collections.ConfigDict(dict(
      seed=0, scale=scale, total_steps=10**9,
      data=dict(train=source_spec(source, scale), tfds_data_dir="", patch_size=48 * scale,
                batch_size=FLAGS.batch_size, augment=True, backend=backend)))
  r = data.benchmark(config, FLAGS.num_batches)
  return {"source": source, "backend": backend, "scale": scale, "crop": 48 * scale, **r,
          "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def spawn(argv: list[str]) -> dict | None:
  p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
  lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
  if p.returncode or not lines:
    sys.stderr.write(p.stderr[-3000:])
    return None
  return json.loads(lines[-1])


def consumers() -> dict[int, dict]:
  out = {}
  for s in FLAGS.scales:
    tmp = Path("/tmp") / f"bench_input_edsr_x{s}.json"
    subprocess.run([sys.executable, "scripts/bench_train.py", f"--models=edsr_baseline_x{s}",
                    "--sides=jsr", "--data=", "--steps=10", "--warmup=2", "--batch=16",
                    "--patch=48", f"--output={tmp}"], cwd=ROOT, capture_output=True, check=True)
    r = json.loads(tmp.read_text())["results"][0]["train"]
    out[int(s)] = {"step_s": r["step_s"], "patches_per_s": 16 / r["step_s"]}
    print(f"EDSR-baseline x{s} train step: {r['step_s'] * 1e3:.0f} ms -> "
          f"{16 / r['step_s']:.1f} patches/s consumed", flush=True)
  return out


def main(argv):
  del argv
  if FLAGS.worker:
    print(json.dumps(worker()))
    return
  t0 = time.perf_counter()
  if "pairs" in FLAGS.sources:
    make_pairs(FLAGS.photos, Path(FLAGS.pairs_dir))
  if "records" in FLAGS.sources and not (Path(FLAGS.prepared) / "index.json").exists():
    subprocess.run([sys.executable, "-m", "jsr.prepare", f"--data={FLAGS.photos}",
                    f"--out={FLAGS.prepared}", "--crop=192", "--step=96"], cwd=ROOT, check=True)
  eat = consumers() if FLAGS.consumers else {}
  rows = []
  for source in FLAGS.sources:
    for s in FLAGS.scales:
      for backend in FLAGS.backends:
        r = spawn([sys.executable, os.path.abspath(__file__), f"--worker={source},{backend},{s}",
                   f"--photos={FLAGS.photos}", f"--prepared={FLAGS.prepared}",
                   f"--pairs_dir={FLAGS.pairs_dir}", f"--batch_size={FLAGS.batch_size}",
                   f"--num_batches={FLAGS.num_batches}"])
        if r is None:
          continue
        if int(s) in eat:
          r["over_consumption"] = r["patches_per_s"] / eat[int(s)]["patches_per_s"]
        rows.append(r)
        print(f"[{backend:5s}] {source:7s} x{s} ({r['crop']} px): {r['patches_per_s']:7.0f} "
              f"patches/s" + (f" = {r['over_consumption']:.1f}x EDSR" if int(s) in eat else "")
              + f", load {r['load_s']:.1f} s, peak RSS {r['peak_rss'] / 1e9:.2f} GB", flush=True)
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(
        {"machine": machine(), "batch_size": FLAGS.batch_size,
         "num_batches": FLAGS.num_batches, "consumers": eat, "results": rows,
         "wall_s": time.perf_counter() - t0}, indent=1))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
