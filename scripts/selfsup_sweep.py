r"""Sweep selfsup loss weights / variants quickly, in one process, Set5 Y-PSNR at chosen steps.

  python scripts/selfsup_sweep.py --train=../shared/data/train --set5=../shared/data/benchmarks/Set5 \
      --runs='[["both", "variant=small,loss=both", {}, 10000, [2500, 10000]],
               ["cons_b1", "variant=small,loss=consistency", {"loss.beta": 1.0}, 3000, [3000]]]'

Each run is [name, configs/selfsup.py arg, {dotted.key: value overrides}, steps, [eval steps]].
It uses the method's functions directly (no checkpoints, no TensorFlow: the numpy input backend),
so it also runs on the GPU machines that have JAX but no TensorFlow. For the reported table use
scripts/selfsup_table.py, which runs the real `python -m jsr.main`.
"""

import functools
import json
import os
import sys
import time

from absl import app, flags
import jax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # for configs/
from configs import selfsup as selfsup_config  # noqa: E402
from jsr import data, evaluate
from jsr import io as jio
from jsr.methods import selfsup

flags.DEFINE_string("runs", None, "JSON list of runs (see the docstring).", required=True)
flags.DEFINE_string("train", "../shared/data/train", "Folder of LR observations.")
flags.DEFINE_string("set5", "../shared/data/benchmarks/Set5", "Evaluation folder (HR).")
flags.DEFINE_string("output", None, "Optional JSON output.")
FLAGS = flags.FLAGS


def _override(config, key: str, value):
  node = config
  *path, last = key.split(".")
  for p in path:
    node = node[p]
  node[last] = value


def run_one(arg: str, overrides: dict, steps: int, eval_at: list[int], images, eval_paths):
  config = selfsup_config.get_config(arg)
  for k, v in overrides.items():
    _override(config, k, v)
  config.total_steps = steps
  config.data.backend = "numpy"
  first = next(data.get_train_iterator(config, 0, images))
  state = selfsup.init(config, jax.random.PRNGKey(config.seed), first)
  step_fn = jax.jit(functools.partial(selfsup.train_step, config=config), donate_argnums=0)
  predict = jax.jit(lambda s, lr: selfsup.predict({"params": s.params}, lr, config))
  out, train_s, t0 = [], 0.0, time.perf_counter()
  for i, batch in enumerate(data.get_train_iterator(config, 0, images), start=1):
    state, metrics = step_fn(state, batch, None)
    if i in eval_at:
      jax.block_until_ready(metrics)
      train_s += time.perf_counter() - t0
      r = evaluate.evaluate_images(lambda lr: predict(state, lr), eval_paths, config.scale,
                                   log=None)
      out.append({"step": i, "psnr_y": r["mean"]["psnr_y"], "ssim_y": r["mean"]["ssim_y"],
                  "train_seconds": train_s, "loss": float(metrics["loss"])})
      print(json.dumps(out[-1]), flush=True)
      t0 = time.perf_counter()
  return out


def main(argv):
  del argv
  images, _ = data.load_images(f"folder:{FLAGS.train}", 48)
  eval_paths = jio.list_images(FLAGS.set5)
  print(jax.devices(), flush=True)
  results = {}
  for name, arg, overrides, steps, eval_at in json.loads(FLAGS.runs):
    print(f"== {name}: {arg} {overrides} {steps} steps", flush=True)
    results[name] = run_one(arg, overrides, steps, eval_at, images, eval_paths)
  print(json.dumps(results))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
