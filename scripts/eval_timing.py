r"""How the wall time of a benchmark evaluation splits: imports, first pass (compiles), second pass.

  python scripts/eval_timing.py --data=../shared/data/benchmarks/Set14 --scale=4
"""
import time

T0 = time.perf_counter()
from absl import app, flags  # noqa: E402

from jsr import evaluate  # noqa: E402
from jsr import io as jio  # noqa: E402

flags.DEFINE_string("data", "../shared/data/benchmarks/Set14", "HR folder.")
flags.DEFINE_integer("scale", 4, "Scale.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  t_import = time.perf_counter() - T0
  paths = jio.list_images(FLAGS.data)
  sr_fn = evaluate.interpolation_fn("bicubic", FLAGS.scale)
  t = time.perf_counter()
  evaluate.evaluate_images(sr_fn, paths, FLAGS.scale, log=None)
  first = time.perf_counter() - t
  t = time.perf_counter()
  evaluate.evaluate_images(sr_fn, paths, FLAGS.scale, log=None)
  second = time.perf_counter() - t
  t = time.perf_counter()
  for p in paths:
    jio.load_image(p)
  decode = time.perf_counter() - t
  shapes = {jio.modcrop(jio.load_image(p).image, FLAGS.scale).shape for p in paths}
  print(f"{len(paths)} images, {len(shapes)} distinct shapes")
  print(f"imports (jax, PIL, jsr):          {t_import:6.2f} s")
  print(f"first pass (compile + compute):   {first:6.2f} s")
  print(f"second pass (compute only):       {second:6.2f} s  (of which PNG decoding {decode:.2f} s)")
  print(f"so compilation costs about        {first - second:6.2f} s")


if __name__ == "__main__":
  app.run(main)
