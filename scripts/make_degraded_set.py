r"""Write a fixed-seed degraded test set as a paired folder (jsr.evaluate --lr, `pairs:` sets).

    python scripts/make_degraded_set.py --data=../shared/data/benchmarks/Set14 \
        --pipeline=csrgan --out=/tmp/csrgan_test/Set14 --seed=0 [--config=configs/csrgan.py]

Writes OUT/HR/<name>.png (the HR image, as read), OUT/LR/<name>.png (the degraded image) and
OUT/params.json ({name: the drawn parameters}, the pipeline and its settings). Pipelines:
  csrgan   CSRGAN's blur -> downscale -> noise -> bicubic back to the HR size, with the ranges of
           the config's `degradation` block (jsr.methods.csrgan.degrade, the training sampler
           itself): the LR is the HR's size; score with --scale=1.
Image i draws from fold_in(key(seed), i), so a set is reproducible image by image. Gray images
are degraded as gray.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jsr import io as jio  # pylint: disable=g-import-not-at-top
from jsr.methods import csrgan  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined on demand: tests import this module (for make_set) more than once."""
  flags.DEFINE_string("data", None, "HR images (folder or file).")
  flags.DEFINE_string("out", None, "Output folder (LR/, HR/, params.json).")
  flags.DEFINE_enum("pipeline", "csrgan", ["csrgan"], "Degradation pipeline.")
  flags.DEFINE_integer("seed", 0, "Seed: image i draws from fold_in(key(seed), i).")
  flags.DEFINE_string("config", "configs/csrgan.py", "Config whose `degradation` block is used.")


def load_config(spec: str):
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("degraded_set_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def make_set(paths: list[str], out: str | Path, config, seed: int = 0) -> dict:
  """Degrade each HR image once; returns {name: parameters}."""
  out = Path(out)
  (out / "LR").mkdir(parents=True, exist_ok=True)
  (out / "HR").mkdir(parents=True, exist_ok=True)
  fn = jax.jit(lambda hr, key: csrgan.degrade(hr, key, config))
  drawn = {}
  for i, path in enumerate(paths):
    img = jio.load_image(path).image
    x, params = fn(jnp.asarray(img)[None], jax.random.fold_in(jax.random.key(seed), i))
    name = Path(path).stem
    jio.save_image(out / "HR" / f"{name}.png", img)
    jio.save_image(out / "LR" / f"{name}.png", np.asarray(x[0]))
    drawn[name] = {k: float(v[0]) for k, v in params.items()}
  meta = {"pipeline": "csrgan", "seed": seed, "source": [str(p) for p in paths],
          "degradation": config.degradation.to_dict(), "params": drawn,
          "units": {"sigma": "HR pixels", "noise": "std on [0, 1]", "scale": "downscale factor"}}
  (out / "params.json").write_text(json.dumps(meta, indent=1))
  return drawn


def main(argv):
  del argv
  if not FLAGS.data or not FLAGS.out:
    sys.exit("error: --data and --out are required")
  config = load_config(FLAGS.config)
  drawn = make_set(jio.list_images(FLAGS.data), FLAGS.out, config, FLAGS.seed)
  print(f"wrote {len(drawn)} pairs to {FLAGS.out} (LR/, HR/, params.json)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
