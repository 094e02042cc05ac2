r"""Real-world SR table: bicubic, a bicubic-trained model and the Real-ESRGAN family on degraded sets.

    for p in bsrgan realesrgan; do for s in Set5 Set14; do
      python scripts/make_degraded_set.py --data=../shared/data/benchmarks/$s --pipeline=$p \
          --scale=4 --seed=0 --out=/tmp/rw/$p/$s; done; done
    python scripts/realworld_table.py --sets=/tmp/rw/bsrgan/Set5,/tmp/rw/bsrgan/Set14,... \
        --runs="EDSR (bicubic-trained)=/tmp/edsr,Real-ESRNet=/tmp/realesrnet,Real-ESRGAN=/tmp/realesrgan" \
        --niqe_data=samples:eval --output=docs/runs/realworld_cpu.json \
        --figure=docs/compare_realworld_cpu.png --figure_images=realesrgan/Set14/baboon

For each paired test set (LR/, HR/ written once by make_degraded_set.py): MATLAB bicubic and each
run's output on the given LR at x4, scored as `jsr.evaluate --lr` scores them (Y-PSNR/SSIM with
4 px shaved, LPIPS-VGG on RGB). Then NIQE (no reference) of every method's x4 output of real
photos that have no HR (`--niqe_data`, the LR as they are: camera noise and JPEG included).
The figure: crops of bicubic | runs | HR per chosen image, labelled with PSNR/LPIPS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys

from absl import app, flags
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_crops  # pylint: disable=g-import-not-at-top
from jsr import evaluate  # pylint: disable=g-import-not-at-top
from jsr import inference  # pylint: disable=g-import-not-at-top
from jsr import io as jio  # pylint: disable=g-import-not-at-top
from jsr import niqe as niqe_lib  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("runs", "", "NAME=WORKDIR,... of the trained runs to compare.")
  flags.DEFINE_list("sets", [], "Paired test folders (LR/, HR/); named by their last two parts.")
  flags.DEFINE_integer("scale", 4, "Scale.")
  flags.DEFINE_string("metrics", "psnr,ssim,lpips", "jsr.evaluate metric names.")
  flags.DEFINE_string("niqe_data", "samples:eval", "LR-only photos for NIQE ('' = skip).")
  flags.DEFINE_integer("tile", 0, "Tile size for the runs' inference (0 = whole images).")
  flags.DEFINE_list("raw_weights", [], "Runs (by NAME) scored with their raw weights instead of "
                    "the EMA that predict reads (a run trained before the EMA warm-up).")
  flags.DEFINE_string("output", "", "JSON of the table.")
  flags.DEFINE_string("figure", "", "Comparison PNG.")
  flags.DEFINE_list("figure_images", [], "PIPELINE/SET/name of the images in the figure.")
  flags.DEFINE_integer("crop", 96, "Crop side in HR pixels (centred) in the figure.")
  flags.DEFINE_integer("zoom", 2, "Nearest-neighbour enlargement in the figure.")


def set_name(folder: str) -> str:
  p = Path(folder)
  return f"{p.parent.name}/{p.name}"


def main(argv):
  del argv
  s = FLAGS.scale
  names = [m.strip() for m in FLAGS.metrics.split(",")]
  runs = compare_crops.parse_runs(FLAGS.runs) if FLAGS.runs else {}
  fns = {"bicubic": evaluate.interpolation_fn("bicubic", s)}
  for name, workdir in runs.items():
    if name in FLAGS.raw_weights:
      config, method, state, _ = inference.load_state(workdir)
      predict = lambda v, lr, m=method, c=config: m.predict(v, lr, c)
      fns[name] = inference.make_sr_fn(predict, {"params": state.params}, s, tile=FLAGS.tile)
    else:
      fns[name] = inference.load_sr_fn(workdir, s, tile=FLAGS.tile)[0]
  table, outputs = {}, {}
  for folder in FLAGS.sets:
    key = set_name(folder)
    pairs = jio.match_pairs(jio.list_images(Path(folder) / "LR"),
                            jio.list_images(Path(folder) / "HR"))
    table[key] = {}
    for name, fn in fns.items():
      r = evaluate.evaluate_images(fn, pairs, s, log=None, keep_outputs=True, metric_names=names)
      table[key][name] = {"mean": r["mean"], "per_image": r["per_image"]}
      outputs[(key, name)] = (r["outputs"], r["per_image"], pairs)
      print(f"{key:18s} {name:26s} {evaluate.format_values(r['mean'])}", flush=True)
  niqe = {}
  if FLAGS.niqe_data:
    photos = jio.list_images(FLAGS.niqe_data)
    for name, fn in fns.items():
      per = {}
      for path in photos:
        lr = jio.load_image(path).image
        lr = jio.modcrop(lr, 1)
        sr = np.clip(np.asarray(fn(jnp.asarray(lr)[None])[0]), 0.0, 1.0)  # as a saved PNG
        per[Path(path).name] = niqe_lib.niqe(sr, crop_border=s)
      niqe[name] = {"mean": float(np.mean(list(per.values()))), "per_image": per}
      print(f"NIQE {FLAGS.niqe_data} {name:26s} {niqe[name]['mean']:.3f}", flush=True)
  result = {"runs": runs, "sets": FLAGS.sets, "scale": s, "table": table,
            "niqe_data": FLAGS.niqe_data, "niqe": niqe}
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(result, indent=1))
    print(f"wrote {FLAGS.output}")
  if FLAGS.figure:
    rows = []
    for spec in FLAGS.figure_images:
      pipeline, sname, image = spec.split("/")
      key = f"{pipeline}/{sname}"
      panels = []
      for name in fns:
        outs, per_image, pairs = outputs[(key, name)]
        i = [Path(h).stem for _, h in pairs].index(image)
        _, sr, hr = outs[i]
        h, w = hr.shape[:2]
        c = min(FLAGS.crop, h, w)
        y, x = (h - c) // 2, (w - c) // 2
        cut = lambda a: compare_crops.to_uint8(a)[y:y + c, x:x + c]
        values = {k: v for k, v in per_image[i].items() if k in evaluate.METRICS.values()}
        panels.append(compare_crops.labelled_panel(cut(sr), FLAGS.zoom,
                                                   [name, compare_crops.label_text(values)]))
      panels.append(compare_crops.labelled_panel(cut(hr), FLAGS.zoom,
                                                 [f"HR ({key}/{image})", f"x{s}, {pipeline} LR"]))
      rows.append(panels)
    Path(FLAGS.figure).parent.mkdir(parents=True, exist_ok=True)
    compare_crops.compose(rows).save(FLAGS.figure)
    print(f"wrote {FLAGS.figure}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
