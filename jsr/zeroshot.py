"""The engine for zero-shot methods: one training per test image, no training set.

  python -m jsr.main --config=configs/zssr.py:scale=2 --workdir=/tmp/zssr_x2 \
      --config.eval.sets=set5=/data/Set5

jsr.main hands a config with `engine = "zeroshot"` here. The method module `jsr.methods.<name>`
provides one function,

    super_resolve(lr, config, seed) -> (sr, log)   # (H, W, C) in [0, 1] -> (sH, sW, C); a dict

and the engine runs it on
  * every HR image of config.eval.sets (LR made by the benchmark protocol, MATLAB bicubic on the
    8-bit image, or the given LR of a `name=pairs:LR_DIR,HR_DIR` set), scored with Y-PSNR/SSIM as
    in jsr.evaluate, next to bicubic; and
  * every image of config.data.inputs (the user's own LR images; no score).
Each image's SR goes to workdir/images/<set>/<name>.png (with an LR | bicubic | SR | HR grid in
workdir/images/<set>/grids/ for scored images) and its scores and log to workdir/results.jsonl,
written as soon as the image is done. While a method trains on an image, methods whose
`super_resolve` takes `progress` (jsr/progress.py) report through it: a log line at most every
10 s with the iteration, learning rate and reconstruction error, images done / left and the run's
ETA, and the image's curves in TensorBoard as zeroshot/<set>/<image>/<name> against the
iteration. A rerun of the same workdir skips the images already in
results.jsonl, so an interrupted run resumes at the image it was on. When all are done, per-set
means go to TensorBoard and workdir/metrics.jsonl as eval/<set>_x<s>/{psnr_y, ssim_y,
bicubic_psnr_y, bicubic_ssim_y, seconds, iterations} (and the other config.eval.metrics).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import time
from typing import Any

from absl import logging
import jax.numpy as jnp
import ml_collections
import numpy as np

from jsr import errors
from jsr import evaluate
from jsr import io as jio
from jsr import methods
from jsr import progress as progress_lib
from jsr import reporting
from jsr import workdir as workdir_lib
from jsr import writers
from jsr.ops.resize import imresize


def read_results(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "results.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _append_result(workdir: str, row: dict[str, Any]) -> None:
  with open(os.path.join(workdir, "results.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def _image_seed(config: ml_collections.ConfigDict, index: int) -> int:
  return config.seed * 100_003 + index


def _log_fields(log: dict[str, Any], workdir: str, set_name: str, stem: str) -> dict[str, Any]:
  """The method's log for results.jsonl; arrays in it (e.g. an estimated kernel) are saved as
  workdir/<key>s/<set>/<image>.npy instead."""
  row = {}
  for k, v in log.items():
    if isinstance(v, np.ndarray):
      path = os.path.join(workdir, f"{k}s", set_name, f"{stem}.npy")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      np.save(path, v)
    elif k != "rec_mse":
      row[k] = v
  row["rec_mse"] = log.get("rec_mse")
  return row


def _score_one(method, config, path: str | tuple[str, str], seed: int, workdir: str,
               set_name: str, extra: dict[str, Any]) -> dict[str, Any]:
  """Run the method on one benchmark image (an HR path or a given (lr, hr) pair); save its SR and
  grid; return its results row."""
  log: dict[str, Any] = {}

  def sr_fn(lr):
    sr, info = method.super_resolve(np.asarray(lr[0]), config, seed, **extra)
    log.update(info)
    return jnp.asarray(sr)[None]

  s = config.scale
  names = evaluate.parse_metrics(config.eval.metrics)
  ours = evaluate.evaluate_images(sr_fn, [path], s, log=None, keep_outputs=True,
                                  metric_names=names)
  bic = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", s), [path], s, log=None,
                                 keep_outputs=True, metric_names=names)
  (lr, sr, hr), (_, bicubic, _) = ours["outputs"][0], bic["outputs"][0]
  stem = Path(evaluate.hr_path(path)).stem
  jio.save_image(os.path.join(workdir, "images", set_name, f"{stem}.png"), sr)
  reporting.save_grid(os.path.join(workdir, "images", set_name, "grids", f"{stem}.png"),
                  lr, bicubic, sr, hr, s)
  row, bic_row = ours["per_image"][0], bic["per_image"][0]
  keys = [evaluate.METRICS[n] for n in names]
  return {"set": set_name, "image": row["image"], **{k: row[k] for k in keys},
          **{f"bicubic_{k}": bic_row[k] for k in keys}, "seed": seed,
          **_log_fields(log, workdir, set_name, stem)}


def _upscale_one(method, config, path: str, seed: int, workdir: str, set_name: str,
                 extra: dict[str, Any]) -> dict[str, Any]:
  """Run the method on one of the user's LR images (no ground truth); save the PNG."""
  img = jio.load_image(path)
  sr, log = method.super_resolve(img.image, config, seed, **extra)
  alpha = None
  if img.alpha is not None:  # Alpha is not the method's business: MATLAB bicubic, clipped.
    alpha = np.clip(np.asarray(imresize(jnp.asarray(img.alpha), config.scale)), 0.0, 1.0)
  jio.save_image(os.path.join(workdir, "images", set_name, f"{Path(path).stem}.png"), sr, alpha)
  return {"set": set_name, "image": Path(path).name, "seed": seed,
          **_log_fields(log, workdir, set_name, Path(path).stem)}


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """Run config.method on every image (resuming), log per-set means; return all result rows."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  method = methods.load(config.method, interface=("super_resolve",))
  jobs = [(name, paths, True) for name, paths in reporting.parse_eval_sets(config.eval.sets).items()]
  if config.data.inputs:
    try:
      jobs.append(("inputs", jio.list_images(config.data.inputs), False))
    except FileNotFoundError as e:
      raise errors.UserError(f"config.data.inputs {config.data.inputs!r}: {e}") from e
  if not any(paths for _, paths, _ in jobs):
    raise ValueError("nothing to do: config.eval.sets and config.data.inputs name no images")
  # Results of two configs must not mix in one results.jsonl.
  workdir_lib.check_unchanged(config, workdir, what="holds results of")
  workdir_lib.save_config(config, workdir)

  done = {(r["set"], r["image"]) for r in read_results(workdir)}
  todo = [(set_name, index, path, scored) for set_name, paths, scored in jobs
          for index, path in enumerate(paths)
          if (set_name, Path(evaluate.hr_path(path)).name) not in done]
  if done:
    logging.info("%d images already done in %s/results.jsonl; %d to go", len(done), workdir,
                 len(todo))
  curves = writers.make_writer(workdir, console=False)
  # Per-image progress (log lines with an ETA, TensorBoard curves) for methods that report it.
  reporter = progress_lib.Reporter(curves, len(todo))
  extra = ({"progress": reporter} if progress_lib.accepts_progress(method.super_resolve) else {})
  for count, (set_name, index, path, scored) in enumerate(todo, 1):
    t0 = time.perf_counter()
    one = _score_one if scored else _upscale_one
    reporter.begin_image(count, set_name, Path(evaluate.hr_path(path)).name)
    try:
      row = one(method, config, path, _image_seed(config, index), workdir, set_name, extra)
    except FloatingPointError as e:
      raise FloatingPointError(f"{evaluate.hr_path(path)}: {e}. Results of the images before "
                               f"it are kept in {workdir}/results.jsonl.") from e
    reporter.end_image()
    _append_result(workdir, row)
    curves.flush()
    metric_keys = [k for k in row if f"bicubic_{k}" in row]
    score = (", ".join(f"{k} {row[k]:.4f} (bicubic {row['bicubic_' + k]:.4f})"
                       for k in metric_keys) if scored else "saved")
    logging.info("[%d/%d] %s/%s: %s, %s iterations, %.1f s", count, len(todo), set_name,
                 row["image"], score, row.get("iterations", "-"), time.perf_counter() - t0)

  curves.close()
  rows = read_results(workdir)
  writer = writers.make_writer(workdir)
  scalars = {}
  for set_name, _, scored in jobs:
    mine = [r for r in rows if r["set"] == set_name]
    keys = ([k for k in mine[0] if k.startswith("bicubic_") or f"bicubic_{k}" in mine[0]]
            if scored and mine else [])
    keys += [k for k in ("seconds", "iterations") if all(k in r for r in mine)]
    for k in keys:
      scalars[f"eval/{set_name}_x{config.scale}/{k}"] = float(np.mean([r[k] for r in mine]))
  writer.write_scalars(0, scalars)
  writer.close()
  for k, v in sorted(scalars.items()):
    logging.info("%s = %.4f", k, v)
  return rows
