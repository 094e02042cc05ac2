r"""Write a fixed-seed degraded test set as a paired folder (jsr.evaluate --lr, `pairs:` sets).

    python scripts/make_degraded_set.py --data=../shared/data/benchmarks/Set14 \
        --pipeline=realesrgan --scale=4 --out=/tmp/realesrgan_x4/Set14 --seed=0

Writes OUT/HR/<name>.png (the HR image, modcropped to the scale), OUT/LR/<name>.png (the degraded
image) and OUT/params.json ({name: the drawn parameters}, the pipeline and its settings).
Pipelines:
  realesrgan  Real-ESRGAN's two-order chain (jsr.ops.realworld, the training sampler itself, with
              the papers' parameters), made from the HR itself (not its unsharp-masked copy,
              which only training targets use); LR = HR / scale.
  bsrgan      BSRGAN's shuffled chain (jsr.ops.realworld); LR = HR / scale.
  kernel      DIV2KRK-style: one random anisotropic Gaussian per image with multiplicative noise
              (jsr.ops.realworld.div2krk_kernel), then direct s-fold subsampling; the kernel is
              saved as OUT/kernels/<name>.npy (the ground truth for blind methods). With
              --one_kernel, one kernel (drawn from default_rng([seed])) blurs every image, as one
              unknown camera would: a blind method may pool the images to estimate it. It is
              saved as OUT/kernel.npy; the same seed gives the same kernel for every folder, so
              a training set and its test sets can share it.
  csrgan      CSRGAN's blur -> downscale -> noise -> bicubic back to the HR size, with the ranges
              of --config's `degradation` block (jsr.methods.csrgan.degrade): the LR is the HR's
              size; score with --scale=1.
Image i draws from fold_in(key(seed), i) (numpy: default_rng([seed, i])), so a set is
reproducible image by image, and the same seed writes byte-identical files. Gray images are
degraded as gray.
"""

from __future__ import annotations

import functools
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
from jsr.ops import degrade as degrade_ops  # pylint: disable=g-import-not-at-top
from jsr.ops import realworld  # pylint: disable=g-import-not-at-top

PIPELINES = ("realesrgan", "bsrgan", "kernel", "csrgan")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defined on demand: tests import this module (for make_set) more than once."""
  flags.DEFINE_string("data", None, "HR images (folder or file).")
  flags.DEFINE_string("out", None, "Output folder (LR/, HR/, params.json).")
  flags.DEFINE_enum("pipeline", "realesrgan", list(PIPELINES), "Degradation pipeline.")
  flags.DEFINE_integer("scale", 4, "Downscaling factor (realesrgan, bsrgan, kernel).")
  flags.DEFINE_integer("seed", 0, "Seed: image i draws from fold_in(key(seed), i).")
  flags.DEFINE_bool("one_kernel", False, "kernel only: one kernel for the whole set (OUT/kernel.npy).")
  flags.DEFINE_string("config", "configs/csrgan.py",
                      "csrgan only: the config whose `degradation` block is used.")


def load_config(spec: str):
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("degraded_set_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _to_json(params: dict) -> dict:
  out = {}
  for k, v in params.items():
    v = np.asarray(v)
    out[k] = v[0].tolist() if v.ndim and v.shape[0] == 1 else v.tolist()
  return out


def _test_set_config(pipeline: str):
  deg = realworld.default_config(pipeline)
  if pipeline == "realesrgan":
    deg.sharpen_input = False  # a test set degrades the HR it is scored against
  return deg


@functools.lru_cache(maxsize=None)
def _degrade_fn(pipeline: str, scale: int):
  """One jitted pipeline per (pipeline, scale), reused across sets (it compiles per image size)."""
  deg = _test_set_config(pipeline)
  return jax.jit(lambda hr, key: realworld.degrade(hr, key, deg, scale)[::2])


def set_kernel(scale: int, seed: int = 0) -> tuple[np.ndarray, dict]:
  """The one kernel of a --one_kernel set (the same for every folder made with this seed)."""
  return realworld.div2krk_kernel(np.random.default_rng([seed]), scale)


def make_realworld_set(paths: list[str], out: str | Path, pipeline: str, scale: int,
                       seed: int = 0, one_kernel: bool = False) -> dict:
  """Degrade each HR image (modcropped to `scale`) once by `pipeline`; returns {name: params}.
  `one_kernel` (pipeline "kernel" only): every image is blurred by set_kernel(scale, seed)."""
  if one_kernel and pipeline != "kernel":
    raise ValueError(f"one_kernel applies to the kernel pipeline only, not {pipeline!r}")
  out = Path(out)
  per_image = pipeline == "kernel" and not one_kernel
  for sub in ("LR", "HR") + (("kernels",) if per_image else ()):
    (out / sub).mkdir(parents=True, exist_ok=True)
  if one_kernel:
    shared_kernel, shared_params = set_kernel(scale, seed)
    np.save(out / "kernel.npy", shared_kernel)
  deg = None
  if pipeline in realworld.PIPELINES:
    deg = _test_set_config(pipeline)
    fn = _degrade_fn(pipeline, scale)
  drawn = {}
  for i, path in enumerate(paths):
    img = jio.load_image(path).image
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    img = img[:h, :w]
    name = Path(path).stem
    if pipeline == "kernel":
      if one_kernel:
        kernel, params = shared_kernel, shared_params
      else:
        kernel, params = realworld.div2krk_kernel(np.random.default_rng([seed, i]), scale)
        np.save(out / "kernels" / f"{name}.npy", kernel)
      lr = degrade_ops.degrade(jnp.asarray(img)[None], scale, kernel=kernel, mode="direct")
      lr = np.clip(np.round(np.asarray(lr[0]) * 255.0), 0, 255) / 255.0
    else:
      lr, params = fn(jnp.asarray(img)[None], jax.random.fold_in(jax.random.key(seed), i))
      lr = np.asarray(lr[0])
      params = _to_json(params)
    jio.save_image(out / "HR" / f"{name}.png", img)
    jio.save_image(out / "LR" / f"{name}.png", lr)
    drawn[name] = params
  meta = {"pipeline": pipeline, "scale": scale, "seed": seed, "one_kernel": one_kernel,
          "source": [str(p) for p in paths],
          "degradation": deg.to_dict() if deg is not None else {
              "div2krk": {str(k): v for k, v in realworld.DIV2KRK.items()},
              "downsample": "direct", "noise_level": 0.25},
          "params": drawn}
  (out / "params.json").write_text(json.dumps(meta, indent=1))
  return drawn


def make_set(paths: list[str], out: str | Path, config, seed: int = 0) -> dict:
  """CSRGAN: degrade each HR image once; returns {name: parameters}."""
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
  paths = jio.list_images(FLAGS.data)
  if FLAGS.pipeline == "csrgan":
    drawn = make_set(paths, FLAGS.out, load_config(FLAGS.config), FLAGS.seed)
  else:
    drawn = make_realworld_set(paths, FLAGS.out, FLAGS.pipeline, FLAGS.scale, FLAGS.seed,
                               FLAGS.one_kernel)
  print(f"wrote {len(drawn)} pairs to {FLAGS.out} (LR/, HR/, params.json)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
