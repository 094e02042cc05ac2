"""Evaluation during training: benchmark folders scored with the papers' protocol (jsr.evaluate),
logged as eval/<set>_x<s>/{psnr_y, ssim_y, ...} (config.eval.metrics), and PNG grids (LR | bicubic | output | HR) for a person
to look at. Also used by the zero-shot engine.

A set of given LR/HR pairs (`name=pairs:LR_DIR,HR_DIR`) is scored on its own LR instead of
synthesised LR, and its bicubic baseline is bicubic upsampling of that LR: the same numbers as
`python -m jsr.evaluate --data=HR_DIR --lr=LR_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jsr import errors
from jsr import evaluate
from jsr import io as jio
from jsr import mesh as mesh_lib


# An eval set: HR paths (LR synthesised by the protocol) or (lr_path, hr_path) pairs of given
# images; jsr.evaluate.evaluate_images takes either, so every consumer passes them through.
EvalSet = list[str] | list[tuple[str, str]]


def parse_eval_sets(spec: str) -> dict[str, EvalSet]:
  """"set5=/data/Set5,set14=/data/Set14" or "samples:eval" -> {name: HR image paths};
  "realsr=pairs:/data/RealSR/LR,/data/RealSR/HR" -> {name: [(lr_path, hr_path)]}, matched by name
  as jsr.io.match_pairs does (the comma after pairs:LR_DIR introduces its HR folder, as in a
  data.train pairs source)."""
  sets = {}
  items = iter(s.strip() for s in spec.split(","))
  for item in filter(None, items):
    name, sep, path = item.partition("=")
    if not sep:
      path = item
    kind, colon, lr_dir = path.partition(":")
    try:
      if colon and kind == "pairs":
        hr_dir = next(items, "")
        if not lr_dir or not hr_dir:
          raise errors.UserError(f"config.eval.sets {spec!r}: a paired set is "
                                 "NAME=pairs:LR_DIR,HR_DIR")
        name = name if sep else Path(hr_dir).name.lower()
        sets[name] = jio.match_pairs(jio.list_images(lr_dir, arrays=True),
                                     jio.list_images(hr_dir, arrays=True), lr_dir, hr_dir)
      else:
        if not sep:
          name = "samples" if item.startswith("samples") else Path(item).name.lower()
        sets[name] = jio.list_images(path)
    except FileNotFoundError as e:
      raise errors.UserError(f"config.eval.sets {spec!r}: {e}") from e
  return sets


def _center_crop_box(h: int, w: int, scale: int, size: int = 192) -> tuple[int, int, int]:
  c = min(h, w, size)
  c -= c % scale
  return ((h - c) // 2) // scale * scale, ((w - c) // 2) // scale * scale, c


def save_grid(path: str, lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray,
              scale: int) -> None:
  """LR (nearest) | bicubic | output | HR, the same centre crop of each, side by side."""
  y, x, c = _center_crop_box(hr.shape[0], hr.shape[1], scale)
  crop = lambda a: np.clip(a[y:y + c, x:x + c], 0.0, 1.0)
  lr_c = lr[y // scale:(y + c) // scale, x // scale:(x + c) // scale]
  nearest = np.repeat(np.repeat(lr_c, scale, axis=0), scale, axis=1)
  gap = np.ones((c, 4, hr.shape[-1]), np.float32)
  panels = [np.clip(nearest, 0.0, 1.0), gap, crop(bicubic), gap, crop(sr), gap, crop(hr)]
  jio.save_image(path, np.concatenate(panels, axis=1))


def evaluate_sets(sr_fn: Callable, sets: dict[str, EvalSet], scale: int,
                  metric_names=evaluate.DEFAULT_METRICS, prefix: str = ""
                  ) -> tuple[dict[str, float], dict[str, list]]:
  """{"eval/<set>_x<s>/<prefix><metric>": ...} and the per-set (lr, sr, hr) images."""
  scalars, outputs = {}, {}
  for name, paths in sets.items():
    r = evaluate.evaluate_images(sr_fn, paths, scale, log=None, keep_outputs=True,
                                 metric_names=metric_names)
    for k, v in r["mean"].items():
      scalars[f"eval/{name}_x{scale}/{prefix}{k}"] = v
    outputs[name] = [(row["image"], out) for row, out in zip(r["per_image"], r["outputs"])]
  return scalars, outputs


def run_bicubic_baseline(sets: dict[str, EvalSet], scale: int, writer, step: int,
                         metric_names=evaluate.DEFAULT_METRICS) -> dict[str, Any]:
  """Bicubic scores (logged once per run start, as eval/<set>_x<s>/bicubic_<metric>) and images
  (for the grids)."""
  scalars, outputs = evaluate_sets(evaluate.interpolation_fn("bicubic", scale), sets, scale,
                                   metric_names, prefix="bicubic_")
  writer.write_scalars(step, scalars)
  return outputs


def run_eval(sr_fn: Callable, sets: dict[str, EvalSet], scale: int, writer, step: int,
             workdir: str, bicubic: dict[str, Any], metric_names=evaluate.DEFAULT_METRICS
             ) -> dict[str, float]:
  """Scores of the current model (logged) and a grid per image under workdir/images/step_N."""
  scalars, outputs = evaluate_sets(sr_fn, sets, scale, metric_names)
  writer.write_scalars(step, scalars)
  if jax.process_index() == 0:
    for name, items in outputs.items():
      for (image_name, (lr, sr, hr)), (_, (_, bic, _)) in zip(items, bicubic[name]):
        path = os.path.join(workdir, "images", f"step_{step}",
                            f"{name}_{Path(image_name).stem}.png")
        save_grid(path, lr, bic, sr, hr, scale)
  return scalars


def make_sr_fn(predict: Callable, mesh: jax.sharding.Mesh, variables: Any) -> Callable:
  """lr (1, h, w, C) -> sr (1, h*s, w*s, C) with the jitted `predict(variables, lr)`; gray
  images go through the RGB model as three equal channels and come back as their mean.
  `sr_fn.precompile(lr_struct)` compiles predict for one LR shape (evaluate.precompile); it reads
  only the variables' shapes, so it may run in a thread while training goes on."""

  def sr_fn(lr):
    gray = lr.shape[-1] == 1
    lr = jax.device_put(jnp.repeat(lr, 3, axis=-1) if gray else lr, mesh_lib.replicated(mesh))
    sr = predict(variables, lr)
    return jnp.mean(sr, axis=-1, keepdims=True) if gray else sr

  # Shapes only: precompile must not touch buffers a donating train step may have freed.
  # jit's cache tells committed arrays (placed by device_put) from uncommitted ones: describe
  # each as the call will see it, or the call compiles again.
  abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False),
                                     sharding=a.sharding if getattr(a, "committed", False)
                                     else None),
      variables)
  rep = mesh_lib.replicated(mesh)

  def precompile(lr: jax.ShapeDtypeStruct):
    """Compile `predict` for LR images of this shape (gray ones go through it as RGB)."""
    rgb = jax.ShapeDtypeStruct((*lr.shape[:-1], 3), lr.dtype, sharding=rep)
    return predict.lower(abstract, rgb).compile()

  sr_fn.precompile = precompile
  return sr_fn
