r"""Deep Image Prior's Y-PSNR against its iteration count, next to bicubic, on Set5 / Set14.

  python scripts/dip_iterations.py --scale=4 --iterations=250,500,1000,1500,2000,3000 \
      --output=docs/runs/dip_iterations_x4.json --plot=docs/dip_iterations_x4.png

DIP has no stopping rule but its iteration budget (the reference stops at 2000 at x4): this
script runs it once per image up to the largest count and scores the snapshots f(z) taken at the
listed counts. The protocol is jsr's (jsr.evaluate): HR cropped to a multiple of the scale, LR by
MATLAB bicubic on the 8-bit HR, Y-PSNR/SSIM of the 8-bit output with `scale` pixels shaved.
`--crop=N` first takes the N x N centre of each HR image (a CPU-sized run; the paper net costs
~0.6 MFLOP per HR pixel forward), `--max_images=K` the first K images of each set. The JSON is
rewritten after each image, and a rerun with the same --output skips the images already in it,
so a long run can be done in pieces (`--plot_only` redraws the plot from the JSON).
`--time_sides=64,128,256,512` only times training steps at those HR sides.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import sys
import time

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

flags.DEFINE_list("sets", ["set5=../shared/data/benchmarks/Set5",
                            "set14=../shared/data/benchmarks/Set14"], "name=HR folder, ...")
flags.DEFINE_integer("scale", 4, "Scale factor (2 or 4).")
flags.DEFINE_string("variant", "paper", "dip_net variant.")
flags.DEFINE_list("iterations", ["250", "500", "1000", "1500", "2000", "3000"],
                  "Iteration counts to score (the run goes to the largest).")
flags.DEFINE_string("kernel_type", "lanczos2", "The loss's downsampling (config.dip.kernel_type).")
flags.DEFINE_integer("crop", 0, "Side of the HR centre crop (0: the whole image).")
flags.DEFINE_integer("max_images", 0, "Images per set (0: all).")
flags.DEFINE_integer("max_new", 0, "Stop after this many new images (0: no limit): runs in pieces.")
flags.DEFINE_integer("seed", 0, "Seed of the net's init, code and perturbations.")
flags.DEFINE_string("output", "docs/runs/dip_iterations_x4.json", "JSON results (resumed).")
flags.DEFINE_string("plot", "docs/dip_iterations_x4.png", "PNG plot ('' for none).")
flags.DEFINE_bool("plot_only", False, "Only redraw --plot from --output.")
flags.DEFINE_list("time_sides", [], "Only time training steps of the net on random square HR "
                  "images of these sides (e.g. 64,128,256,512) and print seconds per step.")
FLAGS = flags.FLAGS


class _Print:
  """A jsr.progress.Progress that prints each report."""

  def __init__(self, name: str):
    self.name, self.t0, self.total = name, time.perf_counter(), 0

  def start(self, total_iterations):
    self.total, self.t0 = total_iterations, time.perf_counter()

  def update(self, iteration, **scalars):
    if iteration % 250 == 0:
      print(f"  {self.name} {iteration}/{self.total}  MSE {scalars.get('rec_mse', 0):.3g}  "
            f"{time.perf_counter() - self.t0:.0f} s", flush=True)


def _centre_crop(hr, side: int):
  h, w = hr.shape[:2]
  if not side or (h <= side and w <= side):
    return hr
  top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
  return hr[top:top + side, left:left + side]


def _machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  flags_ = set()
  try:
    for word in Path("/proc/cpuinfo").read_text().split():
      if word in ("avx2", "avx512f"):
        flags_.add(word)
  except OSError:
    pass
  return {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
          "cpu_flags": sorted(flags_), "device": jax.devices()[0].device_kind,
          "jax": jax.__version__}


def plot(results: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  sets = [s for s in results["sets"] if results["sets"][s]]
  fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
  for ax, name in zip(axes[0], sets):
    rows = results["sets"][name]
    its = sorted({int(i) for r in rows for i in r["dip_psnr_y"]})
    for r in rows:
      ax.plot(its, [r["dip_psnr_y"][str(i)] for i in its], color="0.75", lw=0.8)
    mean = [sum(r["dip_psnr_y"][str(i)] for r in rows) / len(rows) for i in its]
    bic = sum(r["bicubic_psnr_y"] for r in rows) / len(rows)
    ax.plot(its, mean, "o-", color="C0", label=f"DIP (mean of {len(rows)})")
    ax.axhline(bic, color="C1", ls="--", label=f"bicubic {bic:.2f} dB")
    crop = results["crop"]
    ax.set_title(f"{name} x{results['scale']}"
                 + (f", {crop}x{crop} HR centre crops" if crop else ", whole images"))
    ax.set_xlabel("iterations")
    ax.set_ylabel("Y-PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  print("wrote", path)


def time_steps(sides, scale: int, variant: str, steps: int = 3) -> None:
  """Seconds per jitted training step at each HR side (after one compiling step)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import dip as dip_config  # pylint: disable=g-import-not-at-top
  from jsr.methods import dip  # pylint: disable=g-import-not-at-top

  config = dip_config.get_config(f"scale={scale},variant={variant}")
  step, _, _ = dip._compiled(dip._compile_key(config), 3)  # pylint: disable=protected-access
  for side in sides:
    state = dip.init_state(config, jax.random.key(0), 3)
    z = dip.make_code(jax.random.key(1), side, side, config)
    lr = jnp.asarray(np.random.default_rng(0).random((1, side // scale, side // scale, 3),
                                                     np.float32))
    t0 = time.perf_counter()
    state, loss = step(state, z, lr, jax.random.key(2))
    float(loss)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
      state, loss = step(state, z, lr, jax.random.key(2))
    float(loss)
    print(f"HR {side}x{side}: first step (compile) {compile_s:.1f} s, "
          f"{(time.perf_counter() - t0) / steps:.2f} s/iteration", flush=True)


def main(argv):
  del argv
  out_path = Path(FLAGS.output)
  if FLAGS.time_sides:
    time_steps([int(v) for v in FLAGS.time_sides], FLAGS.scale, FLAGS.variant)
    return
  if FLAGS.plot_only:
    plot(json.loads(out_path.read_text()), FLAGS.plot)
    return

  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import dip as dip_config  # pylint: disable=g-import-not-at-top
  from jsr import evaluate, io  # pylint: disable=g-import-not-at-top
  from jsr.methods import dip  # pylint: disable=g-import-not-at-top

  s = FLAGS.scale
  iters = sorted({int(i) for i in FLAGS.iterations})
  config = dip_config.get_config(f"scale={s},variant={FLAGS.variant}")
  config.dip.iterations = iters[-1]
  config.dip.kernel_type = FLAGS.kernel_type
  config.dip.snapshot_iters = iters
  settings = {"scale": s, "variant": FLAGS.variant, "crop": FLAGS.crop, "iterations": iters,
              "seed": FLAGS.seed, "config": json.loads(config.to_json())}
  results = {**settings, "machine": _machine(), "command": " ".join(sys.argv), "sets": {}}
  if out_path.exists():
    old = json.loads(out_path.read_text())
    if {k: old.get(k) for k in settings} != settings:
      raise SystemExit(f"{out_path} holds a run with other settings; pick another --output")
    results["sets"] = old["sets"]
  bicubic_fn = evaluate.interpolation_fn("bicubic", s)
  new = 0

  for item in FLAGS.sets:
    name, _, folder = item.partition("=")
    rows = results["sets"].setdefault(name, [])
    paths = io.list_images(folder)[:FLAGS.max_images or None]
    for path in paths:
      if any(r["image"] == Path(path).name for r in rows):
        continue
      if FLAGS.max_new and new >= FLAGS.max_new:
        break
      new += 1
      hr = io.modcrop(_centre_crop(io.load_image(path).image, FLAGS.crop), s)
      hr = jnp.asarray(hr)[None]
      lr = evaluate.make_lr(hr, s)
      bic = evaluate.score(bicubic_fn(lr), hr, s, ("psnr", "ssim"))
      t0 = time.perf_counter()
      sr, log = dip.super_resolve(np.asarray(lr[0]), config, FLAGS.seed,
                                  progress=_Print(Path(path).name))
      seconds = time.perf_counter() - t0
      scores = {str(i): evaluate.score(jnp.asarray(snap)[None], hr, s, ("psnr", "ssim"))
                for i, snap in zip(log["snapshot_iters"], log["snapshot"])}
      final = evaluate.score(jnp.asarray(sr)[None], hr, s, ("psnr", "ssim"))
      row = {"image": Path(path).name, "height": int(hr.shape[1]), "width": int(hr.shape[2]),
             "bicubic_psnr_y": bic["psnr_y"], "bicubic_ssim_y": bic["ssim_y"],
             "dip_psnr_y": {i: v["psnr_y"] for i, v in scores.items()},
             "dip_ssim_y": {i: v["ssim_y"] for i, v in scores.items()},
             "final_psnr_y": final["psnr_y"], "final_lr_mse": log["loss"],
             "seconds": seconds, "seconds_per_iteration": seconds / iters[-1]}  # compile included
      rows.append(row)
      out_path.parent.mkdir(parents=True, exist_ok=True)
      out_path.write_text(json.dumps(results, indent=1) + "\n")
      print(f"{name}/{row['image']} {row['height']}x{row['width']}: bicubic "
            f"{row['bicubic_psnr_y']:.2f}, DIP "
            + ", ".join(f"{i}: {v:.2f}" for i, v in row["dip_psnr_y"].items())
            + f"  ({seconds:.0f} s, {row['seconds_per_iteration']:.3f} s/it)", flush=True)
    if rows:
      print(f"{name} mean of {len(rows)}: bicubic "
            f"{np.mean([r['bicubic_psnr_y'] for r in rows]):.2f}, DIP "
            + ", ".join(f"{i}: {np.mean([r['dip_psnr_y'][str(i)] for r in rows]):.2f}"
                        for i in iters))
  if FLAGS.plot:
    plot(results, FLAGS.plot)


if __name__ == "__main__":
  app.run(main)
