r"""Tiled inference: memory and time on a large image, and tiled == untiled where both fit.

  nice -n 19 .venv/bin/python scripts/bench_tiling.py --output=docs/bench_tiling.json

EDSR-baseline x4 (random init, or --workdir for a trained run) on a --size x --size RGB image
made here. Each measurement runs in its own child process, so its peak RSS
(resource.getrusage(RUSAGE_SELF).ru_maxrss) is its own:

  check  tiled vs untiled on a --check_size image, for several overlaps (max |difference|); the
         largest overlap is >= 4x the receptive-field radius, where the two must agree to 1e-4.
  tiled  --tile tiles with --overlap on the large image: compile time, total wall time, peak RSS
         (and peak device memory on a GPU).
  untiled  (--only=untiled; where memory allows, e.g. a GPU) the large image in one call, and
         its max |difference| from the tiled output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

# EDSR-baseline: head (1) + 16 blocks x 2 convs (32) + body conv (1) at LR, then a conv at LR
# (1), one at 2x (1/2 LR pixel) and the tail at 4x (1/4): a radius of 36 LR pixels.
EDSR_RF_RADIUS = 36


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes.


def _peak_device_mb():
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  return round(stats["peak_bytes_in_use"] / 2**20, 1) if "peak_bytes_in_use" in stats else None


def _model(args):
  import jax
  import jax.numpy as jnp
  if args.workdir:
    from jsr import inference
    config, method, variables, _ = inference.load_variables(args.workdir)
    return (lambda v, lr: method.predict(v, lr, config)), variables, config.scale
  from jsr.models import common, get_model
  model = get_model("edsr", variant="baseline", scale=args.scale)
  params = common.init_variables(model, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
  return (lambda p, lr: model.apply({"params": p}, lr)), params, args.scale


def _image(size: int, seed: int = 0):
  import numpy as np
  # A smooth random field plus noise: photo-like statistics, no file needed.
  rng = np.random.default_rng(seed)
  coarse = rng.random((size // 16 + 2, size // 16 + 2, 3))
  y = np.linspace(0, coarse.shape[0] - 1.001, size)
  x = np.linspace(0, coarse.shape[1] - 1.001, size)
  yi, xi = y.astype(int), x.astype(int)
  fy, fx = (y - yi)[:, None, None], (x - xi)[None, :, None]
  img = (coarse[yi][:, xi] * (1 - fy) * (1 - fx) + coarse[yi + 1][:, xi] * fy * (1 - fx)
         + coarse[yi][:, xi + 1] * (1 - fy) * fx + coarse[yi + 1][:, xi + 1] * fy * fx)
  img += rng.normal(0, 0.02, img.shape)
  return np.clip(img, 0, 1).astype(np.float32)[None]


def child_check(args) -> dict:
  import numpy as np
  from jsr import inference
  predict, params, scale = _model(args)
  lr = _image(args.check_size, seed=1)
  ref = np.asarray(inference.make_sr_fn(predict, params, scale)(lr))
  rows = []
  for overlap in args.check_overlaps:
    tile = max(args.check_tile, overlap + 16)
    sr_fn = inference.make_sr_fn(predict, params, scale, tile=tile, tile_overlap=overlap,
                                 tile_batch=args.tile_batch)
    out = sr_fn(lr)
    rows.append({"tile": tile, "overlap": overlap, "tiles": sr_fn.info["tiles"],
                 "output_std": float(np.std(ref)),
                 "max_abs_diff": float(np.max(np.abs(out - ref))),
                 "max_abs_diff_8bit": int(np.max(np.abs(np.round(np.clip(out, 0, 1) * 255)
                                                        - np.round(np.clip(ref, 0, 1) * 255))))})
    print(json.dumps(rows[-1]), file=sys.stderr)
  return {"check_size": args.check_size, "rows": rows, "peak_rss_mb": _peak_rss_mb()}


def child_tiled(args) -> dict:
  import jax
  import numpy as np
  from jsr import inference
  predict, params, scale = _model(args)
  lr = _image(args.size)
  sr_fn = inference.make_sr_fn(predict, params, scale, tile=args.tile,
                               tile_overlap=args.overlap, tile_batch=args.tile_batch)
  # Compile on one tile-sized image first, so the large run's time is compute only.
  t0 = time.perf_counter()
  sr_fn(lr[:, :args.tile, :args.tile])
  compile_s = time.perf_counter() - t0
  rss_before = _peak_rss_mb()
  t0 = time.perf_counter()
  out = sr_fn(lr)
  seconds = time.perf_counter() - t0
  assert out.shape == (1, args.size * scale, args.size * scale, 3), out.shape
  assert np.all(np.isfinite(out))
  return {"size": args.size, "scale": scale, "tile": args.tile, "overlap": args.overlap,
          "tile_batch": args.tile_batch, "tiles": sr_fn.info["tiles"],
          "first_call_s": round(compile_s, 2), "seconds": round(seconds, 2),
          "seconds_per_tile": round(seconds / sr_fn.info["tiles"], 3),
          "peak_rss_mb_after_compile": round(rss_before, 1),
          "peak_rss_mb": round(_peak_rss_mb(), 1), "peak_device_mb": _peak_device_mb(),
          "output_mb": round(out.nbytes / 2**20, 1), "backend": jax.default_backend()}


def child_untiled(args) -> dict:
  import jax
  import numpy as np
  from jsr import inference
  predict, params, scale = _model(args)
  lr = _image(args.size)
  full = inference.make_sr_fn(predict, params, scale)
  t0 = time.perf_counter()
  out = np.asarray(full(lr))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = np.asarray(full(lr))
  seconds = time.perf_counter() - t0
  tiled = inference.make_sr_fn(predict, params, scale, tile=args.tile,
                               tile_overlap=args.overlap, tile_batch=args.tile_batch)(lr)
  return {"size": args.size, "scale": scale, "first_call_s": round(first, 2),
          "seconds": round(seconds, 2), "peak_rss_mb": round(_peak_rss_mb(), 1),
          "peak_device_mb": _peak_device_mb(), "tile": args.tile, "overlap": args.overlap,
          "max_abs_diff_vs_tiled": float(np.max(np.abs(tiled - out))),
          "backend": jax.default_backend()}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--workdir", default="", help="trained run instead of random EDSR-baseline")
  p.add_argument("--scale", type=int, default=4)
  p.add_argument("--size", type=int, default=2000)
  p.add_argument("--tile", type=int, default=256)
  p.add_argument("--overlap", type=int, default=32)
  p.add_argument("--tile_batch", type=int, default=1)
  p.add_argument("--check_size", type=int, default=200)
  p.add_argument("--check_tile", type=int, default=96)
  p.add_argument("--check_overlaps", type=int, nargs="+",
                 default=[16, 32, 64, 4 * EDSR_RF_RADIUS])
  p.add_argument("--only", default=None, help="comma-separated parts: check,tiled,untiled")
  p.add_argument("--output", default="")
  p.add_argument("--child", choices=["check", "tiled", "untiled"], default=None,
                 help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    children = {"check": child_check, "tiled": child_tiled, "untiled": child_untiled}
    result = children[args.child](args)
    print("RESULT " + json.dumps(result))
    return
  results = {"machine": f"{platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} CPU cores, {platform.system()}",
             "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
  for part in (["check", "tiled"] if args.only is None else args.only.split(",")):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, f"--child={part}"] + sys.argv[1:],
                          capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
      sys.exit(f"{part} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    results[part] = json.loads(lines[-1][len("RESULT "):])
    results[part]["process_wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"{part}: {json.dumps(results[part])}", flush=True)
  if args.output:
    with open(args.output, "w") as f:
      json.dump(results, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
