r"""Cut photos (or LR/HR pairs) into fixed-size sub-images in a prepared set (jsr.records).

  python -m jsr.prepare --data=/data/DIV2K_train_HR,/data/Flickr2K_HR --out=/data/df2k_sub
  python -m jsr.prepare --pairs=/data/RealSR/LR,/data/RealSR/HR --scale=4 --out=/data/realsr_sub
  python -m jsr.main --config=configs/edsr.py:scale=4 --workdir=/tmp/edsr \
      --config.data.train=records:/data/df2k_sub

Sub-images are `--crop` pixels (HR) every `--step` pixels with a last window flush with each
border, BasicSR's extract_subimages rule (its DIV2K defaults: crop 480, step 240). For pairs the
grid is cut on the LR image (crop/s every step/s, so both must divide by the scale) and the HR
sub-image is the window s times larger at s times the corner. Images smaller than the crop, and
unreadable files, are skipped with a warning naming them; pairs are matched and checked as the
`pairs:` training source does (jsr.io.match_pairs, check_pair_size).

Training reads a P-pixel crop of a random sub-image each sample, so `--crop` is the largest
data.patch_size the set serves. Peak memory here is a few decoded photos and one shard.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time

from absl import app, flags, logging
import numpy as np

from jsr import data as data_lib
from jsr import errors
from jsr import io as jio
from jsr import records

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list("data", None, "Folders (or files) of photos to cut; jsr.io.list_images.")
  flags.DEFINE_string("pairs", None, "LR_DIR,HR_DIR: given pairs to cut, aligned.")
  flags.DEFINE_integer("scale", None, "The pairs' scale (with --pairs).")
  flags.DEFINE_string("out", None, "Output folder (new, or empty).")
  flags.DEFINE_integer("crop", 480, "Sub-image size in HR pixels.")
  flags.DEFINE_integer("step", 240, "Distance between sub-image corners in HR pixels.")
  flags.DEFINE_integer("shard_mb", 256, "Approximate size of one shard file (HR side), in MB; "
                       "preparing holds one shard in memory.")
  flags.DEFINE_integer("threads", 8, "Decoding threads.")


def _chunks(items: list, n: int):
  for i in range(0, len(items), n):
    yield items[i:i + n]


def prepare_photos(paths: list[str], out: str, crop: int, step: int, shard_records: int,
                   threads: int = 8, log=print) -> dict:
  """Cut every photo of `paths`; returns the written index."""
  writer = records.Writer(out, crop, None, shard_records,
                          {"sources": paths, "step": step, "kind": "photos"})
  skipped = 0
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    # Decode a few images ahead, not all: memory stays at a handful of photos.
    for chunk_start, chunk in zip(range(0, len(paths), 2 * threads), _chunks(paths, 2 * threads)):
      for j, image in enumerate(pool.map(data_lib._load_file, chunk)):  # pylint: disable=protected-access
        k = chunk_start + j
        if isinstance(image, str):
          logging.warning("Skipping %s", image)
          skipped += 1
          continue
        ys, xs = (records.positions(n, crop, step) for n in image.shape[:2])
        if not ys or not xs:
          logging.warning("Skipping %s: %dx%d is smaller than the %d-pixel crop", paths[k],
                          image.shape[0], image.shape[1], crop)
          skipped += 1
          continue
        for y in ys:
          for x in xs:
            writer.add(image[y:y + crop, x:x + crop], None, (k, y, x))
      if log:
        log(f"  {min(chunk_start + len(chunk), len(paths))}/{len(paths)} images, "
            f"{len(writer.all_pos) + len(writer.pos)} sub-images")
  writer.meta["skipped"] = skipped
  return writer.close()


def prepare_pairs(lr_dir: str, hr_dir: str, scale: int, out: str, crop: int, step: int,
                  shard_records: int, threads: int = 8, log=print) -> dict:
  """Cut aligned LR/HR sub-images of the pairs of two folders; returns the written index."""
  lr_paths = jio.list_images(lr_dir, arrays=True)
  hr_paths = jio.list_images(hr_dir, arrays=True)
  matched = jio.match_pairs(lr_paths, hr_paths, lr_dir, hr_dir)
  writer, ratio = None, None
  skipped = 0
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for chunk_start, chunk in zip(range(0, len(matched), 2 * threads),
                                  _chunks(matched, 2 * threads)):
      loaded = pool.map(lambda lh: data_lib._load_pair(*lh, scale), chunk)  # pylint: disable=protected-access
      for j, item in enumerate(loaded):
        k = chunk_start + j
        if isinstance(item, str):
          logging.warning("Skipping pair %s", item)
          skipped += 1
          continue
        lr, hr, r = item
        if ratio is None:
          ratio = r
          if crop % r or step % r:
            raise errors.UserError(f"--crop={crop} and --step={step} must be divisible by the "
                                   f"pairs' scale {r}")
          writer = records.Writer(out, crop, crop // r, shard_records,
                                  {"sources": [h for _, h in matched],
                                   "lr_sources": [l for l, _ in matched], "step": step,
                                   "kind": "pairs", "scale": scale})
        elif r != ratio:
          raise errors.UserError(f"{chunk[j][0]} -> {chunk[j][1]}: x{r} among x{ratio} pairs; "
                                 "use one kind per set")
        c, st = crop // r, step // r
        ys, xs = (records.positions(n, c, st) for n in lr.shape[:2])
        if not ys or not xs:
          logging.warning("Skipping pair %s -> %s: LR %dx%d is smaller than the %d-pixel LR crop",
                          *chunk[j], lr.shape[0], lr.shape[1], c)
          skipped += 1
          continue
        for y in ys:
          for x in xs:
            writer.add(hr[r * y:r * y + crop, r * x:r * x + crop], lr[y:y + c, x:x + c],
                       (k, r * y, r * x))
      if log and writer is not None:
        log(f"  {min(chunk_start + len(chunk), len(matched))}/{len(matched)} pairs, "
            f"{len(writer.all_pos) + len(writer.pos)} sub-images")
  if writer is None:
    raise errors.UserError(f"--pairs={lr_dir},{hr_dir}: no usable pairs (see warnings above)")
  writer.meta["skipped"] = skipped
  return writer.close()


def _fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  del argv
  if not FLAGS.out or bool(FLAGS.data) == bool(FLAGS.pairs):
    _fail("give --out and one of --data=DIR[,DIR...] or --pairs=LR_DIR,HR_DIR")
  if FLAGS.crop < 1 or FLAGS.step < 1:
    _fail(f"--crop and --step must be positive, got {FLAGS.crop} and {FLAGS.step}")
  shard_records = max(1, FLAGS.shard_mb * 2**20 // (FLAGS.crop * FLAGS.crop * 3))
  t0 = time.perf_counter()
  try:
    if FLAGS.data:
      paths = [p for folder in FLAGS.data for p in jio.list_images(folder)]
      index = prepare_photos(paths, FLAGS.out, FLAGS.crop, FLAGS.step, shard_records,
                             FLAGS.threads)
    else:
      lr_dir, sep, hr_dir = FLAGS.pairs.partition(",")
      if not sep or not FLAGS.scale:
        _fail("--pairs=LR_DIR,HR_DIR needs --scale")
      index = prepare_pairs(lr_dir, hr_dir, FLAGS.scale, FLAGS.out, FLAGS.crop, FLAGS.step,
                            shard_records, FLAGS.threads)
  except (FileNotFoundError, errors.UserError, records.RecordsError) as e:
    _fail(str(e))
  gb = index["count"] * FLAGS.crop ** 2 * 3 / 1e9
  print(f"wrote {index['count']} sub-images ({gb:.2f} GB decoded) in {len(index['shards'])} "
        f"shard(s) to {FLAGS.out} in {time.perf_counter() - t0:.1f} s; train with "
        f"--config.data.train=records:{FLAGS.out}")


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(main)


if __name__ == "__main__":
  run()
