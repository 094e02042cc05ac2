r"""Labelled comparison crops: bicubic | each run | HR, the same HR region of each, side by side.

  python scripts/compare_crops.py --image=../shared/data/benchmarks/Set14/baboon.png --scale=4 \
      --runs=SRResNet=/tmp/srresnet,SRGAN=/tmp/srgan --crop=200,220,128 --zoom=2 \
      --out=docs/compare_srgan_baboon.png
  python scripts/compare_crops.py --image=../shared/data/benchmarks/Set14/baboon.png \
      --image=../shared/data/benchmarks/Set5/butterfly.png --scale=4 --runs=... --out=...

Each --image is one row. Its LR input is made by the benchmark protocol (jsr.evaluate: HR cropped
to a multiple of the scale, MATLAB bicubic on the uint8 image), upscaled by MATLAB bicubic and by
each run (jsr.inference.load_sr_fn, latest checkpoint), and every output is scored on the whole
image (jsr.evaluate.evaluate_images: Y-PSNR with `scale` pixels shaved, LPIPS VGG on RGB, ...).
The crop --crop=y,x,size (HR pixels of the top-left corner and the side; one value for all
images, or one per --image; default: a centred 128-px square, smaller if the image is) is cut
from each output and from HR, enlarged --zoom times by nearest neighbour, and labelled beneath
with its name and the whole-image metrics ("PSNR 23.1 dB / LPIPS 0.345"; HR is labelled "HR").
The metrics table is printed.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

from absl import app, flags, logging
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FLAGS = flags.FLAGS

GAP = 4            # White pixels between panels and between rows.
LABEL_H = 40       # Label strip beneath each panel: two lines of text.
FONT_SIZE = 14     # Largest label font; shrunk until the text fits the panel.
DEFAULT_CROP = 128
FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf")


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
  """The command-line flags, defined on demand (so importing this module defines none)."""
  flags.DEFINE_multi_string("image", None, "HR image; repeat for more rows.", flag_values=fv)
  flags.DEFINE_integer("scale", 4, "Upscaling factor (the runs' config.scale).", flag_values=fv)
  flags.DEFINE_string("runs", None, "name=workdir,... of the runs to compare, in panel order.",
                      flag_values=fv)
  flags.DEFINE_multi_string("crop", None, "y,x,size of the HR crop (default: centred "
                            f"{DEFAULT_CROP}); once for all images or once per --image.",
                            flag_values=fv)
  flags.DEFINE_integer("zoom", 2, "Nearest-neighbour enlargement of the crops.", flag_values=fv)
  flags.DEFINE_string("metrics", "psnr,lpips", "Whole-image metrics in the labels "
                      "(jsr.evaluate names).", flag_values=fv)
  flags.DEFINE_string("out", None, "Output PNG.", flag_values=fv)


# ---------------------------------------------------------------------------------------------
# Parsing.
# ---------------------------------------------------------------------------------------------


def parse_runs(spec: str) -> dict[str, str]:
  """"SRResNet=/a,SRGAN=/b" -> {"SRResNet": "/a", "SRGAN": "/b"} (panel order kept)."""
  runs = {}
  for item in filter(None, (s.strip() for s in (spec or "").split(","))):
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--runs item {item!r}: expected name=workdir")
    if name in runs or name in ("Bicubic", "HR"):
      raise ValueError(f"--runs: the name {name!r} is taken")
    runs[name] = path
  if not runs:
    raise ValueError("--runs is empty")
  return runs


def parse_crop(spec: str | None, shape) -> tuple[int, int, int]:
  """(y, x, size) inside an HR image of `shape`; None -> a centred square of DEFAULT_CROP px."""
  h, w = shape[:2]
  if spec is None:
    size = min(DEFAULT_CROP, h, w)
    return (h - size) // 2, (w - size) // 2, size
  try:
    y, x, size = (int(v) for v in spec.split(","))
  except ValueError:
    raise ValueError(f"--crop {spec!r}: expected y,x,size (integers)") from None
  if size < 1 or y < 0 or x < 0 or y + size > h or x + size > w:
    raise ValueError(f"--crop {spec!r} does not fit in the {h}x{w} image (after cropping it to a "
                     "multiple of the scale)")
  return y, x, size


# ---------------------------------------------------------------------------------------------
# Panels.
# ---------------------------------------------------------------------------------------------


def to_uint8(img: np.ndarray) -> np.ndarray:
  """(H, W, C) float [0, 1], C = 1 or 3 -> (H, W, 3) uint8, rounded as a saved PNG."""
  img = np.round(np.clip(np.asarray(img, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
  return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def label_text(values: dict[str, float]) -> str:
  """"PSNR 23.1 dB / LPIPS 0.345" from evaluate's result keys."""
  fmt = {"psnr_y": "PSNR {:.2f} dB", "ssim_y": "SSIM {:.3f}", "lpips": "LPIPS {:.3f}",
         "lpips_alex": "LPIPS-Alex {:.3f}", "niqe": "NIQE {:.2f}"}
  return " / ".join(fmt[k].format(v) for k, v in values.items() if k in fmt)


def _font(size: int):
  for f in FONT_FILES:
    try:
      return ImageFont.truetype(f, size)
    except OSError:
      continue
  try:
    return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType.
  except TypeError:
    return ImageFont.load_default()


def _fitting_font(draw: ImageDraw.ImageDraw, lines, width: int):
  """The largest font up to FONT_SIZE (down to 7) in which every line fits `width` pixels."""
  for size in range(FONT_SIZE, 6, -1):
    font = _font(size)
    if all(draw.textlength(s, font=font) <= width - 4 for s in lines):
      return font
  return font


def labelled_panel(crop: np.ndarray, zoom: int, lines) -> Image.Image:
  """The crop (H, W, 3) uint8 enlarged by nearest neighbour, with `lines` centred beneath."""
  big = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
  h, w = big.shape[:2]
  panel = Image.new("RGB", (w, h + LABEL_H), "white")
  panel.paste(Image.fromarray(big), (0, 0))
  draw = ImageDraw.Draw(panel)
  font = _fitting_font(draw, lines, w)
  line_h = LABEL_H // 2
  for i, text in enumerate(lines):
    y = h + line_h * i + line_h / 2 + 1
    if draw.textlength(text, font=font) <= w:
      draw.text((w / 2, y), text, fill="black", font=font, anchor="mm")
    else:  # Too long even in the smallest font: keep its start readable.
      draw.text((2, y), text, fill="black", font=font, anchor="lm")
  return panel


def compose(rows) -> Image.Image:
  """Rows of equal-height panels, GAP pixels apart, on white."""
  width = max(sum(p.width for p in r) + GAP * (len(r) - 1) for r in rows)
  height = sum(r[0].height for r in rows) + GAP * (len(rows) - 1)
  canvas = Image.new("RGB", (width, height), "white")
  y = 0
  for r in rows:
    x = 0
    for p in r:
      canvas.paste(p, (x, y))
      x += p.width + GAP
    y += r[0].height + GAP
  return canvas


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------


def compare(images, scale: int, runs: dict[str, str], crops, zoom: int, metric_names,
            out: str) -> dict:
  """Writes the figure; returns {"table": [{image, method, metrics...}], "crops": [...],
  "size": (width, height)}."""
  from jsr import evaluate, inference  # pylint: disable=import-outside-toplevel
  if zoom < 1:
    raise ValueError(f"--zoom must be >= 1, got {zoom}")
  if crops and len(crops) not in (1, len(images)):
    raise ValueError(f"give --crop once or once per --image ({len(images)}), not {len(crops)} "
                     "times")
  methods = {"Bicubic": (evaluate.interpolation_fn("bicubic", scale), "MATLAB bicubic")}
  for name, workdir in runs.items():
    methods[name] = inference.load_sr_fn(workdir, scale)
  results = {}
  for name, (sr_fn, desc) in methods.items():
    print(f"{name}: {desc}")
    results[name] = evaluate.evaluate_images(sr_fn, images, scale, log=None, keep_outputs=True,
                                             metric_names=metric_names)
  table, rows, used = [], [], []
  for i, path in enumerate(images):
    hr = results["Bicubic"]["outputs"][i][2]
    spec = (crops[0] if len(crops) == 1 else crops[i]) if crops else None
    try:
      y, x, size = parse_crop(spec, hr.shape)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from None
    used.append({"image": path, "y": y, "x": x, "size": size})
    cut = lambda img: to_uint8(img)[y:y + size, x:x + size]
    panels = []
    for name in methods:
      r = results[name]
      values = {k: v for k, v in r["per_image"][i].items() if k in evaluate.METRICS.values()}
      table.append({"image": Path(path).name, "method": name, **values})
      panels.append(labelled_panel(cut(r["outputs"][i][1]), zoom, [name, label_text(values)]))
    panels.append(labelled_panel(cut(hr), zoom, ["HR", f"{Path(path).name} ({y},{x}) {size}px"]))
    rows.append(panels)
  canvas = compose(rows)
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  canvas.save(out)
  return {"table": table, "crops": used, "size": canvas.size}


def print_table(table, scale: int) -> None:
  keys = [k for k in ("psnr_y", "ssim_y", "lpips", "lpips_alex", "niqe") if k in table[0]]
  print(f"whole-image metrics, x{scale}, shave {scale} px (PSNR/SSIM on Y):")
  print(f"{'image':<20s} {'method':<16s} " + " ".join(f"{k:>10s}" for k in keys))
  for r in table:
    print(f"{r['image']:<20s} {r['method']:<16s} " + " ".join(f"{r[k]:10.4f}" for k in keys))


def _fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def main(argv, fv: flags.FlagValues = FLAGS) -> dict:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {argv[1:]}")
  if not fv.image or not fv.runs or not fv.out:
    _fail("--image, --runs and --out are required")
  from jsr import errors, evaluate  # pylint: disable=import-outside-toplevel
  from jsr import io as jio  # pylint: disable=import-outside-toplevel
  try:
    runs = parse_runs(fv.runs)
    metric_names = evaluate.parse_metrics(fv.metrics)
    result = compare([os.fspath(p) for p in fv.image], fv.scale, runs, fv.crop, fv.zoom,
                     metric_names, fv.out)
  except (errors.UserError, FileNotFoundError, jio.ImageError, ValueError) as e:
    _fail(str(e))
  print_table(result["table"], fv.scale)
  print(f"wrote {fv.out} ({result['size'][0]}x{result['size'][1]} px)")
  return result


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(lambda argv: main(argv) and None)  # app.run exits with main's return value.


if __name__ == "__main__":
  run()
