r"""CSRGAN ablation: does predicting the degradation parameters lower the image quality?

    python scripts/make_degraded_set.py --data=../shared/data/benchmarks/Set14 --out=/tmp/cs/Set14
    python scripts/csrgan_ablation.py --with_pred=/tmp/csrgan_l100 --without_pred=/tmp/csrgan_l0 \
        --sets=/tmp/cs/Set5,/tmp/cs/Set14 --output=docs/runs/csrgan_ablation_cpu.json \
        --figure=docs/compare_csrgan_cpu.png --figure_images=Set14/baboon,Set5/butterfly

For each paired test set (written once by make_degraded_set.py with the training sampler):
  * the degraded input itself (it is already bicubic-upsampled: the "bicubic-input" row), and
    each run's output, scored by jsr.evaluate.evaluate_images on the given LR at scale 1
    (Y-PSNR/SSIM with 1 px shaved, LPIPS-VGG on RGB) -- what `jsr.evaluate --lr --scale=1` prints;
  * the head's estimates (jsr.methods.csrgan.estimate) against the drawn parameters in
    params.json: mean absolute error per parameter, in its units and as a fraction of its range.
    Reference: guessing the middle of a uniform range has an expected error of range / 4.
The figure: crops of input | without prediction | with prediction | HR, labelled with PSNR/LPIPS
(and the drawn parameters under HR).
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
from jsr.methods import csrgan  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("with_pred", None, "Workdir of the run with lambda > 0.")
  flags.DEFINE_string("without_pred", None, "Workdir of the run with lambda = 0.")
  flags.DEFINE_list("sets", None, "Paired test folders (LR/, HR/, params.json).")
  flags.DEFINE_string("metrics", "psnr,ssim,lpips", "jsr.evaluate metric names.")
  flags.DEFINE_string("output", "", "JSON of the table.")
  flags.DEFINE_string("figure", "", "Comparison PNG.")
  flags.DEFINE_list("figure_images", [], "SET/name of the images in the figure (one row each).")
  flags.DEFINE_integer("crop", 128, "Crop side (centred) in the figure.")
  flags.DEFINE_integer("zoom", 2, "Nearest-neighbour enlargement in the figure.")


def head_errors(workdir: str, pairs, drawn: dict, config=None) -> dict:
  config, _, variables, _ = inference.load_variables(workdir)
  est_fn = lambda x: csrgan.estimate(variables, x, config)
  rows = []
  for lr_path, hr_path in pairs:
    x = jio.load_image(lr_path).image
    if x.shape[-1] == 1:
      x = np.repeat(x, 3, axis=-1)
    est = {k: float(v[0]) for k, v in est_fn(jnp.asarray(x)[None]).items()}
    rows.append((drawn[Path(hr_path).stem], est))
  out = {}
  for name, (lo, hi) in csrgan.param_ranges(config).items():
    err = float(np.mean([abs(e[name] - t[name]) for t, e in rows]))
    unit = 255.0 if name == "noise" else 1.0
    out[name] = {"mae": err * unit, "mae_over_range": err / (hi - lo),
                 "range": [lo * unit, hi * unit], "guess_middle_mae": (hi - lo) / 4 * unit}
  return out


def main(argv):
  del argv
  runs = {"without prediction (lambda=0)": FLAGS.without_pred,
          "with prediction (lambda>0)": FLAGS.with_pred}
  names = [s.strip() for s in FLAGS.metrics.split(",")]
  fns = {"degraded input": (evaluate.interpolation_fn("bicubic", 1), "the input as given")}
  for name, workdir in runs.items():
    fns[name] = inference.load_sr_fn(workdir, 1)
  table, outputs = {}, {}
  for folder in FLAGS.sets:
    set_name = Path(folder).name
    pairs = jio.match_pairs(jio.list_images(Path(folder) / "LR"),
                            jio.list_images(Path(folder) / "HR"))
    drawn = json.loads((Path(folder) / "params.json").read_text())["params"]
    table[set_name] = {}
    for name, (fn, _) in fns.items():
      r = evaluate.evaluate_images(fn, pairs, 1, log=None, keep_outputs=True, metric_names=names)
      table[set_name][name] = {"mean": r["mean"], "per_image": r["per_image"]}
      outputs[(set_name, name)] = (r["outputs"], r["per_image"], pairs, drawn)
      print(f"{set_name:6s} {name:32s} {evaluate.format_values(r['mean'])}", flush=True)
    for name, workdir in runs.items():
      table[set_name][name]["head"] = errs = head_errors(workdir, pairs, drawn)
      print(f"{set_name:6s} {name:32s} head MAE: " + ", ".join(
          f"{k} {v['mae']:.3f} ({100 * v['mae_over_range']:.1f}% of range; middle guess "
          f"{v['guess_middle_mae']:.3f})" for k, v in errs.items()), flush=True)
  result = {"runs": runs, "sets": FLAGS.sets, "table": table}
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(result, indent=1))
    print(f"wrote {FLAGS.output}")
  if FLAGS.figure:
    rows = []
    for spec in FLAGS.figure_images:
      set_name, image = spec.split("/")
      panels = []
      for name in fns:
        outs, per_image, pairs, drawn = outputs[(set_name, name)]
        i = [Path(h).stem for _, h in pairs].index(image)
        _, sr, hr = outs[i]
        h, w = hr.shape[:2]
        c = min(FLAGS.crop, h, w)
        y, x = (h - c) // 2, (w - c) // 2
        cut = lambda a: compare_crops.to_uint8(a)[y:y + c, x:x + c]
        values = {k: v for k, v in per_image[i].items() if k in evaluate.METRICS.values()}
        panels.append(compare_crops.labelled_panel(cut(sr), FLAGS.zoom,
                                                   [name, compare_crops.label_text(values)]))
      p = drawn[image]
      panels.append(compare_crops.labelled_panel(
          cut(hr), FLAGS.zoom, [f"HR ({set_name}/{image})", f"sigma {p['sigma']:.2f}, x{p['scale']:.2f}, "
                                f"noise {255 * p['noise']:.1f}"]))
      rows.append(panels)
    Path(FLAGS.figure).parent.mkdir(parents=True, exist_ok=True)
    compare_crops.compose(rows).save(FLAGS.figure)
    print(f"wrote {FLAGS.figure}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
