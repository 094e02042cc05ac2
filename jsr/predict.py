r"""Upscale your own images with a trained run.

  python -m jsr.predict --workdir=/tmp/selfsup_x2 --input=photos/ --output=/tmp/photos_x2
  python -m jsr.predict --workdir=/tmp/selfsup_x2 --input=big.png --output=/tmp/out \
      --tile=256 --tile_overlap=32 --self_ensemble

Any size, RGB or gray (gray stays 1 channel), with or without alpha (alpha is upscaled with MATLAB
bicubic and clipped), 8- or 16-bit (16-bit gray is written as a 16-bit PNG). Outputs are PNGs named
like the inputs, in the same sub-folders; files inside --output are never read as inputs. Bad files
stop the run with a message naming them; --skip_bad turns them into warnings.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from jsr import inference
from jsr import io as jio
from jsr.ops.resize import imresize

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("workdir", None, "A training run's workdir: its latest checkpoint is used.")
  flags.DEFINE_string("input", None, "An image, or a folder of images (searched recursively).")
  flags.DEFINE_string("output", None, "Folder for the upscaled PNGs (created).")
  flags.DEFINE_integer("scale", None, "Must equal the run's scale; default: the run's scale.")
  flags.DEFINE_bool("self_ensemble", False, "x8 geometric self-ensemble (8x the compute).")
  flags.DEFINE_integer("tile", 0, "Process the LR image in tiles of this size (0: whole image). "
                       "Bounds device memory; compiles once for all image sizes.")
  flags.DEFINE_integer("tile_overlap", 32, "LR pixels shared by neighbouring tiles; the output "
                       "equals the untiled one when this is >= 4x the receptive-field radius.")
  flags.DEFINE_integer("tile_batch", 4, "Tiles per model call.")
  flags.DEFINE_bool("skip_bad", False, "Warn about unreadable images instead of failing.")


def _fail(msg: str, code: int = 2) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(code)


def output_paths(paths: list[str], root: Path, output: Path) -> list[Path]:
  """output/<path relative to root with .png>; inputs that would collide keep their suffix."""
  rel = [Path(p).relative_to(root) if root.is_dir() else Path(Path(p).name) for p in paths]
  outs = [r.with_suffix(".png") for r in rel]
  counts = {}
  for o in outs:
    counts[o] = counts.get(o, 0) + 1
  return [output / (r.with_name(r.name + ".png") if counts[o] > 1 else o)
          for r, o in zip(rel, outs)]


def _progress(items):
  try:
    from tqdm import tqdm  # Comes with tensorflow-datasets (the tf extra) and most setups.
  except ImportError:
    return _counter(items)
  return tqdm(items, unit="image", file=sys.stderr, dynamic_ncols=True)


def _counter(items):
  for i, item in enumerate(items, 1):
    print(f"[{i}/{len(items)}] {item}", file=sys.stderr)
    yield item


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {argv[1:]}")
  for name in ("workdir", "input", "output"):
    if not getattr(FLAGS, name):
      _fail(f"--{name} is required")
  t0 = time.perf_counter()
  output = Path(FLAGS.output).resolve()
  try:
    paths = jio.list_images(FLAGS.input)
  except FileNotFoundError as e:
    _fail(str(e))
  # An output folder inside the input folder must not feed back into a second run.
  paths = [p for p in paths if output not in Path(p).resolve().parents]
  if not paths:
    _fail(f"no input images in {FLAGS.input} outside the output folder {output}")
  try:
    sr_fn, name = inference.load_sr_fn(FLAGS.workdir, FLAGS.scale, FLAGS.self_ensemble,
                                       tile=FLAGS.tile, tile_overlap=FLAGS.tile_overlap,
                                       tile_batch=FLAGS.tile_batch)
  except (FileNotFoundError, ValueError) as e:
    _fail(str(e))
  scale = sr_fn.scale
  upscale_alpha = jax.jit(functools.partial(imresize, scale=scale))
  root = Path(FLAGS.input)
  outs = output_paths(paths, root, output)
  print(f"{name}: x{scale}, {len(paths)} image(s) -> {output}", file=sys.stderr)
  done, skipped = 0, []
  for path, out in zip(_progress(paths), outs):
    try:
      img = jio.load_image(path)
    except jio.ImageError as e:
      if not FLAGS.skip_bad:
        _fail(f"{e} (use --skip_bad to leave such files out)")
      skipped.append(path)
      logging.warning("skipped %s", e)
      print(f"warning: skipped {e}", file=sys.stderr)
      continue
    sr = np.clip(np.asarray(sr_fn(img.image[None]))[0], 0.0, 1.0)
    alpha = None
    if img.alpha is not None:
      alpha = np.clip(np.asarray(upscale_alpha(jnp.asarray(img.alpha))), 0.0, 1.0)
    try:
      jio.save_image(out, sr, alpha, img.bit_depth)
    except OSError as e:
      _fail(f"cannot write {out}: {e}", code=1)
    done += 1
  if not done:
    _fail(f"no usable images among {len(paths)} file(s) in {FLAGS.input}")
  print(f"wrote {done} image(s) to {output} in {time.perf_counter() - t0:.1f} s"
        + (f"; skipped {len(skipped)} bad file(s)" if skipped else ""), file=sys.stderr)


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(main)


if __name__ == "__main__":
  run()
