r"""Benchmark evaluation with the papers' protocol.

  python -m jsr.evaluate --method=bicubic --data=../shared/data/benchmarks/Set5 --scale=4
  python -m jsr.evaluate --workdir=/tmp/selfsup_x2 --data=../shared/data/benchmarks/Set5 --scale=2

  python -m jsr.evaluate --workdir=/tmp/esrgan --data=../shared/data/benchmarks/Set14 --scale=4 \
      --metrics=psnr,ssim,lpips,niqe --output=/tmp/esrgan_set14.json

Each HR image is cropped to a multiple of the scale, its LR input is made by MATLAB bicubic (uint8
path), the method upsamples it back (clipped and rounded to 8 bits, as a saved PNG), and the
metrics are computed with `scale` pixels shaved at each border:

  psnr, ssim   on the Y channel (jsr.metrics: the EDSR/RCAN MATLAB protocol) -> psnr_y, ssim_y
  lpips        LPIPS v0.1 with VGG16 (jsr.lpips; lower is better), on RGB -> lpips
  lpips_alex   the same with AlexNet -> lpips_alex
  niqe         no-reference NIQE of the output alone (jsr.niqe, MATLAB's; lower is better), on
               the rounded Y channel -> niqe

Given LR images (RealSR camera pairs, DIV2K's LR folders, .npy arrays) replace the synthesised ones
with --lr; the rest of the protocol is unchanged:

  python -m jsr.evaluate --method=bicubic --data=/data/RealSR/HR --lr=/data/RealSR/LR4 --scale=4

Files are matched by name, ignoring _LR/_HR/x4 suffixes (jsr.io.match_pairs: 0001x4.png <->
0001.png); an HR file without its LR (or the reverse) is an error naming it, since a silently
dropped image would change the mean. HR must be `scale` x the LR size, up to scale - 1 extra
pixels, and is cropped to it (bottom/right, as modcrop). An LR of the HR's own size
(pre-upsampled, as some datasets ship it) is accepted too: the methods map LR -> x scale, so such
an LR is first shrunk by MATLAB bicubic 1/scale (uint8 path, as the synthesised LR) after both are
cropped to a multiple of the scale; its blur and noise then reach the method at its input size.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from jsr import errors
from jsr import inference
from jsr import io as jio
from jsr import lpips as lpips_lib
from jsr import metrics
from jsr import niqe as niqe_lib
from jsr.ops.resize import imresize

INTERPOLATIONS = ("bicubic", "bilinear", "lanczos2", "lanczos3", "nearest")
METRICS = {"psnr": "psnr_y", "ssim": "ssim_y", "lpips": "lpips", "lpips_alex": "lpips_alex",
           "niqe": "niqe"}  # name -> the key of its value in results and logs
DEFAULT_METRICS = ("psnr", "ssim")


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
  """"psnr,ssim,lpips" (or a sequence) -> ("psnr", "ssim", "lpips"); unknown names are an error."""
  names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
  names = [n for n in names if n]
  unknown = [n for n in names if n not in METRICS]
  if unknown or not names:
    raise errors.UserError(f"metrics {spec!r}: unknown {unknown or 'empty list'}; choose from "
                           f"{', '.join(METRICS)}")
  return tuple(dict.fromkeys(names))


@functools.cache
def _lpips_fn(net: str) -> Callable:
  return lpips_lib.make_lpips(net)  # Weights read once per process.


@functools.partial(jax.jit, static_argnums=1)
def make_lr(hr, scale: int):
  """LR input of the benchmark protocol: MATLAB bicubic on the uint8 image."""
  return imresize(hr, 1.0 / scale, quantize=True)


@functools.partial(jax.jit, static_argnums=(2,))
def _score(sr, hr, scale: int):
  return (metrics.psnr(sr, hr, shave=scale)[0], metrics.ssim(sr, hr, shave=scale)[0])


@jax.jit
def _as_saved(sr):
  """The output as a saved 8-bit PNG holds it: clipped to [0, 1], rounded to the 8-bit grid."""
  return metrics.quantize(jnp.clip(sr, 0.0, 1.0))


def score(sr, hr, scale: int, names: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
  """{result key: value} of the metrics `names` for one output (1, H, W, C) against its HR."""
  sr = _as_saved(sr)
  out = {}
  if "psnr" in names or "ssim" in names:
    psnr, ssim = (float(v) for v in _score(sr, hr, scale))
    out.update({k: v for k, v in (("psnr_y", psnr), ("ssim_y", ssim)) if k[:4] in names})
  shave = (slice(None), slice(scale, -scale or None), slice(scale, -scale or None))
  for name, net in (("lpips", "vgg"), ("lpips_alex", "alex")):
    if name in names:
      x, y = sr[shave], hr[shave]
      if x.shape[-1] == 1:  # Gray benchmark images: LPIPS sees them as RGB.
        x, y = jnp.repeat(x, 3, axis=-1), jnp.repeat(y, 3, axis=-1)
      out[name] = float(_lpips_fn(net)(x, y)[0])
  if "niqe" in names:
    out["niqe"] = niqe_lib.niqe(np.asarray(sr[0]), crop_border=scale)
  return out


@functools.cache
def interpolation_fn(kernel: str, scale: int) -> Callable:
  """sr_fn for a classical interpolation (MATLAB's kernels), quantised like a saved PNG. One
  function per (kernel, scale), so what evaluate.precompile compiled for it is found again."""
  kernel = {"bicubic": "cubic", "nearest": "box"}.get(kernel, kernel)
  fn = jax.jit(lambda lr: imresize(lr, scale, kernel=kernel, quantize=True))
  fn_precompile = lambda lr: fn.lower(lr).compile()

  def sr_fn(lr):
    return fn(lr)

  sr_fn.precompile = fn_precompile
  return sr_fn


def _item_shapes(item, scale: int) -> tuple[tuple[int, ...], tuple[int, ...] | None] | None:
  """(HR shape after modcrop, given-LR shape or None) of an evaluation item, by decoding it as
  evaluate_images does; None for an item evaluate_images would refuse (it reports it then)."""
  try:
    if isinstance(item, (tuple, list)):
      lr, hr = load_pair(item[0], item[1], scale)
      return tuple(jio.modcrop(hr, scale).shape), tuple(lr.shape)
    hr = jio.load_image(item).image
    check_size(item, hr.shape, scale)
    return tuple(jio.modcrop(hr, scale).shape), None
  except (jio.ImageError, ValueError):
    return None


def precompile(sr_fns: Sequence[Callable], paths: Sequence[str | tuple[str, str]], scale: int,
               metric_names: Sequence[str] = DEFAULT_METRICS, max_workers: int | None = None
               ) -> dict[str, float]:
  """Compile, in parallel threads, every program that evaluate_images(sr_fn, paths, ...) would
  compile one after the other: per distinct image shape, the protocol's LR synthesis (make_lr),
  each sr_fn's model (through its `precompile(lr_struct)`, when it has one: jsr's sr_fns do) and
  the PSNR/SSIM program. jax keeps the executables, so the evaluation that follows compiles none
  of them again. Exact: nothing about the evaluation changes, only when its compiling happens.

  Returns {"shapes": distinct (HR, LR) shapes, "programs": programs compiled, "seconds": wall}.
  Items that cannot be read are skipped here (evaluate_images reports them).
  """
  t0 = time.perf_counter()
  shapes = {s for s in (_item_shapes(item, scale) for item in paths) if s is not None}
  f32 = lambda shape: jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  jobs = []
  for hr_shape, lr_shape in shapes:
    if lr_shape is None:
      jobs.append(lambda h=hr_shape: make_lr.lower(f32(h), scale).compile())
      h, w, c = hr_shape
      lr_shape = (-(-h // scale), -(-w // scale), c)
    for fn in sr_fns:
      if hasattr(fn, "precompile"):
        jobs.append(lambda fn=fn, l=lr_shape: fn.precompile(f32(l)))
    jobs.append(lambda h=hr_shape: _as_saved.lower(f32(h)).compile())
    if "psnr" in metric_names or "ssim" in metric_names:
      jobs.append(lambda h=hr_shape: _score.lower(f32(h), f32(h), scale).compile())
  workers = max_workers or min(len(jobs), os.cpu_count() or 1) or 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for future in [pool.submit(job) for job in jobs]:
      future.result()
  return {"shapes": len(shapes), "programs": len(jobs), "seconds": time.perf_counter() - t0}


def check_size(path: str, shape: Sequence[int], scale: int) -> None:
  h, w = shape[:2]
  # After modcrop and shaving `scale` pixels per border, SSIM needs an 11x11 window.
  need = max(11 + 2 * scale, 2 * scale)
  if h < scale or w < scale:
    raise jio.ImageError(f"{path}: image {h}x{w} is smaller than the scale {scale}")
  if h - h % scale < need or w - w % scale < need:
    raise jio.ImageError(f"{path}: image {h}x{w} is too small to evaluate at x{scale} "
                         f"(needs at least {need}x{need})")


def hr_path(item: str | tuple[str, str]) -> str:
  """The HR file of an evaluation item: an HR path, or an (lr_path, hr_path) pair."""
  return item[1] if isinstance(item, (tuple, list)) else item


def load_pair(lr_path: str, hr_path: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
  """A given (LR, HR) pair as (method input (h, w, C), HR (h*scale, w*scale, C)); ImageError
  naming the file(s) when a file is unreadable or the two do not fit together."""
  lr, hr = jio.load_image(lr_path).image, jio.load_image(hr_path).image
  if lr.shape[-1] != hr.shape[-1]:
    raise jio.ImageError(f"{lr_path} ({lr.shape[-1]} channel(s)) and {hr_path} "
                         f"({hr.shape[-1]}): LR and HR must both be RGB or both gray")
  ratio = jio.check_pair_size(lr_path, hr_path, lr.shape, hr.shape, scale)
  hr = hr[:ratio * lr.shape[0], :ratio * lr.shape[1]]
  if ratio == scale:
    return lr, hr
  # Equal size (pre-upsampled LR): the method still maps LR -> x scale, so it gets the given LR
  # shrunk as the protocol shrinks HR (see the module doc).
  check_size(hr_path, hr.shape, scale)
  hr, lr = jio.modcrop(hr, scale), jio.modcrop(lr, scale)
  return np.asarray(make_lr(jnp.asarray(lr)[None], scale)[0]), hr


def evaluate_images(sr_fn: Callable, paths: Sequence[str | tuple[str, str]], scale: int, *,
                    skip_bad: bool = False, log: Callable[[str], None] | None = print,
                    keep_outputs: bool = False,
                    metric_names: Sequence[str] = DEFAULT_METRICS) -> dict:
  """The metrics (default Y-PSNR/SSIM) of `sr_fn` over HR images; returns
  {"per_image": [...], "mean": {...}} keyed as METRICS says.

  Each item of `paths` is an HR path (its LR made by the protocol, make_lr) or an (lr_path,
  hr_path) pair of given images (load_pair). `sr_fn(lr)` takes (1, h, w, C) float32 and returns
  (1, h*s, w*s, C). Rows name the HR file ("image"). Unreadable, too-small or mismatched images
  raise jio.ImageError naming the file(s), or are reported and left out with `skip_bad`.
  """
  rows, skipped, outputs = [], [], []
  for item in paths:
    paired, path = isinstance(item, (tuple, list)), hr_path(item)
    try:
      if paired:
        lr, hr = load_pair(item[0], path, scale)
      else:
        hr = jio.load_image(path).image
      check_size(path, hr.shape, scale)
    except jio.ImageError as e:
      if not skip_bad:
        raise
      skipped.append({"image": path, **({"lr": item[0]} if paired else {}), "error": str(e)})
      if log:
        log(f"warning: skipped {e}")
      continue
    hr = jnp.asarray(jio.modcrop(hr, scale))[None]
    lr = jnp.asarray(lr)[None] if paired else make_lr(hr, scale)
    sr = sr_fn(lr)
    if sr.shape != hr.shape:
      raise ValueError(f"{path}: the method returned {sr.shape} for LR {lr.shape}; expected "
                       f"{hr.shape}")
    # Through the host (where the grids need it anyway): every method's output reaches the
    # metrics as the same kind of array (not placed on a mesh), so the metric programs that
    # precompile made are the ones used.
    sr_host = np.asarray(sr)
    sr = jnp.asarray(sr_host)
    values = score(sr, hr, scale, metric_names)
    rows.append({"image": Path(path).name, **({"lr": Path(item[0]).name} if paired else {}),
                 "height": int(hr.shape[1]), "width": int(hr.shape[2]), **values})
    if keep_outputs:
      outputs.append((np.asarray(lr[0]), sr_host[0], np.asarray(hr[0])))
    if log:
      log(f"  {Path(path).name:<28s} {hr.shape[1]:>5d}x{hr.shape[2]:<5d} {format_values(values)}")
  if not rows:
    raise jio.ImageError(f"no usable images among {len(paths)} file(s)")
  mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k in METRICS.values()}
  result = {"scale": scale, "num_images": len(rows), "mean": mean, "per_image": rows,
            "skipped": skipped}
  if keep_outputs:
    result["outputs"] = outputs
  return result


def format_values(values: dict[str, float]) -> str:
  """"33.673 dB  0.9299  lpips 0.1234" for a row of results."""
  parts = []
  for k, v in values.items():
    if k == "psnr_y":
      parts.append(f"{v:8.3f} dB")
    elif k == "ssim_y":
      parts.append(f"{v:.4f}")
    else:
      parts.append(f"{k} {v:.4f}")
  return "  ".join(parts)


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
  """CLI flags; defined on demand so importing this module (the engine does) defines none."""
  flags.DEFINE_string("method", "bicubic", f"Interpolation baseline, one of {INTERPOLATIONS}; "
                      "ignored when --workdir is given.")
  flags.DEFINE_string("workdir", None, "A training run's workdir: evaluate its latest checkpoint.")
  flags.DEFINE_string("data", None, "Folder of HR images, a single image, or 'samples' (the photos "
                      "bundled in scikit-image).")
  flags.DEFINE_string("lr", None, "Folder (or file) of given LR images or .npy arrays matching "
                      "--data by name: score on them instead of synthesising LR (module doc).")
  flags.DEFINE_integer("scale", None, "Upscaling factor.")
  flags.DEFINE_string("output", None, "Write per-image and mean results to this JSON file.")
  flags.DEFINE_bool("skip_bad", False, "Warn about unreadable or too-small images (and, with "
                    "--lr, pairs whose sizes do not fit) instead of failing.")
  flags.DEFINE_string("metrics", ",".join(DEFAULT_METRICS), "Comma-separated subset of "
                      f"{','.join(METRICS)} (see the module doc).")
  flags.DEFINE_bool("self_ensemble", False, "x8 geometric self-ensemble (trained models only).")
  flags.DEFINE_integer("tile", 0, "With --workdir: run the model on LR tiles of this size (0: whole "
                       "image); bounds device memory for large images.")
  flags.DEFINE_integer("tile_overlap", 32, "LR pixels shared by neighbouring tiles; scores equal "
                       "the untiled ones when this is >= 4x the receptive-field radius.")
  flags.DEFINE_integer("tile_batch", 4, "Tiles per model call.")


def _fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  del argv
  if FLAGS.data is None or FLAGS.scale is None:
    _fail("--data and --scale are required")
  if FLAGS.scale < 1:
    _fail(f"--scale must be >= 1, got {FLAGS.scale}")
  try:
    metric_names = parse_metrics(FLAGS.metrics)
  except errors.UserError as e:
    _fail(f"--{e}")
  t0 = time.perf_counter()
  try:
    if FLAGS.lr:  # Given LR: both sides may be .npy arrays; every HR needs its LR.
      paths = jio.match_pairs(jio.list_images(FLAGS.lr, arrays=True),
                              jio.list_images(FLAGS.data, arrays=True), FLAGS.lr, FLAGS.data)
    else:
      paths = jio.list_images(FLAGS.data)
  except FileNotFoundError as e:
    _fail(str(e))
  if FLAGS.workdir:
    try:
      sr_fn, name = inference.load_sr_fn(FLAGS.workdir, FLAGS.scale, FLAGS.self_ensemble,
                                         tile=FLAGS.tile, tile_overlap=FLAGS.tile_overlap,
                                         tile_batch=FLAGS.tile_batch)
    except (FileNotFoundError, ValueError) as e:
      _fail(str(e))
  else:
    if FLAGS.method not in INTERPOLATIONS:
      _fail(f"--method must be one of {INTERPOLATIONS}, got {FLAGS.method!r}")
    if FLAGS.self_ensemble or FLAGS.tile:
      _fail("--self_ensemble and --tile need a trained model (--workdir)")
    sr_fn, name = interpolation_fn(FLAGS.method, FLAGS.scale), FLAGS.method
  given = f" with the LR in {FLAGS.lr}" if FLAGS.lr else ""
  print(f"{name} x{FLAGS.scale} on {FLAGS.data}{given} ({len(paths)} images), Y channel, "
        f"shave {FLAGS.scale}:")
  info = precompile([sr_fn], paths, FLAGS.scale, metric_names)
  logging.info("compiled %d programs for %d image shapes in parallel in %.1f s",
               info["programs"], info["shapes"], info["seconds"])
  try:
    result = evaluate_images(sr_fn, paths, FLAGS.scale, skip_bad=FLAGS.skip_bad,
                             metric_names=metric_names)
  except jio.ImageError as e:
    _fail(f"{e}{'' if FLAGS.skip_bad else ' (use --skip_bad to leave such files out)'}")
  except ValueError as e:  # An image too small for a metric (LPIPS, NIQE): it says which.
    _fail(str(e))
  print(f"  {'mean':<28s} {'':11s} {format_values(result['mean'])}")
  elapsed = time.perf_counter() - t0
  print(f"done in {elapsed:.1f} s")
  result.update(method=name, data=str(FLAGS.data), **({"lr": FLAGS.lr} if FLAGS.lr else {}),
                seconds=elapsed)
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {FLAGS.output}")


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(main)


if __name__ == "__main__":
  run()
