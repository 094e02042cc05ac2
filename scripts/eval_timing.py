r"""How the wall time of a benchmark evaluation splits: imports, compiles, compute.

  python scripts/eval_timing.py --data=../shared/data/benchmarks/Set14 --scale=4
  python scripts/eval_timing.py --data=../shared/data/benchmarks/Set5 --scale=2 \
      --model=edsr:baseline --output=docs/runs/eval_timing_cpu.json

Evaluates --data twice with the protocol of jsr.evaluate (MATLAB-bicubic LR, Y-PSNR/SSIM): once
from a cold start (every program compiled for every distinct image shape), then again (compute
only). `--model=NAME:VARIANT` evaluates that jsr model (random weights: the time does not depend
on them) through the training loop's sr_fn (jsr.reporting.make_sr_fn), together with the bicubic
baseline the loop scores at its first evaluation; without it, bicubic alone. Each setting runs
in its own process (compiles are cached per process):

  serial      the first evaluation compiles as it goes, one program after the other (jsr before
              2026-12-03);
  precompile  evaluate.precompile first compiles every program in threads, then the evaluation
              (what jsr.evaluate does now, and what training does in the background while its
              first eval_every_steps train).
"""
import json
import os
import subprocess
import sys
import time

T0 = time.perf_counter()
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/benchmarks/Set14", "HR folder.")
flags.DEFINE_integer("scale", 4, "Scale.")
flags.DEFINE_string("model", "", "jsr model as NAME:VARIANT (e.g. edsr:baseline); empty: bicubic.")
flags.DEFINE_enum("mode", "", ["", "serial", "precompile"], "One setting in this process; "
                  "empty: run both, each in a child process.")
flags.DEFINE_string("output", "", "JSON file for the results.")


def one(mode: str) -> dict:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from jsr import evaluate  # noqa: PLC0415
  from jsr import io as jio  # noqa: PLC0415
  from jsr import mesh as mesh_lib  # noqa: PLC0415
  from jsr import models  # noqa: PLC0415
  from jsr import reporting  # noqa: PLC0415
  t_import = time.perf_counter() - T0
  paths = jio.list_images(FLAGS.data)
  fns = [evaluate.interpolation_fn("bicubic", FLAGS.scale)]
  if FLAGS.model:
    name, _, variant = FLAGS.model.partition(":")
    model = models.get_model(name, variant=variant or None, scale=FLAGS.scale)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    mesh = mesh_lib.make_mesh()
    rep = mesh_lib.replicated(mesh)
    predict = jax.jit(lambda v, lr: model.apply(v, lr), in_shardings=(rep, rep),
                      out_shardings=rep)
    fns.append(reporting.make_sr_fn(predict, mesh, jax.device_put(variables, rep)))
  t = time.perf_counter()
  info = evaluate.precompile(fns, paths, FLAGS.scale) if mode == "precompile" else None
  t_pre = time.perf_counter() - t
  t = time.perf_counter()
  for fn in fns:
    evaluate.evaluate_images(fn, paths, FLAGS.scale, log=None)
  first = time.perf_counter() - t
  t = time.perf_counter()
  for fn in fns:
    evaluate.evaluate_images(fn, paths, FLAGS.scale, log=None)
  second = time.perf_counter() - t
  shapes = {jio.modcrop(jio.load_image(p).image, FLAGS.scale).shape for p in paths}
  return {"mode": mode, "images": len(paths), "shapes": len(shapes), "imports_s": t_import,
          "precompile_s": t_pre, "precompile": info, "first_eval_s": first,
          "first_eval_with_precompile_s": t_pre + first, "second_eval_s": second}


def main(argv):
  del argv
  if FLAGS.mode:
    print("RESULT " + json.dumps(one(FLAGS.mode)), flush=True)
    return
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from machine_info import machine  # noqa: PLC0415
  rows = []
  for mode in ("serial", "precompile"):
    out = subprocess.run([sys.executable, __file__, f"--mode={mode}", f"--data={FLAGS.data}",
                          f"--scale={FLAGS.scale}", f"--model={FLAGS.model}"],
                         check=True, capture_output=True, text=True).stdout
    row = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
    rows.append(row)
    print(f"{mode:10s} {row['images']} images, {row['shapes']} shapes: first evaluation "
          f"{row['first_eval_with_precompile_s']:6.2f} s (precompile {row['precompile_s']:.2f} s"
          f" + evaluation {row['first_eval_s']:.2f} s), second {row['second_eval_s']:6.2f} s",
          flush=True)
  result = {"command": " ".join(sys.argv), "machine": machine(), "data": FLAGS.data,
            "scale": FLAGS.scale, "model": FLAGS.model or "bicubic only", "rows": rows}
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
