"""evaluate.precompile: the programs an evaluation compiles one image shape after another are
compiled ahead, in threads, and the evaluation then compiles none of them and scores the same.

Compiles are observed through jax's own log (`jax_log_compiles`: "Finished XLA compilation of
jit(name)"); a control run without precompile shows that the log does catch them.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr import evaluate
from jsr import io as jio
from jsr import mesh as mesh_lib
from jsr import reporting

# Shapes no other test uses, so that the module-level programs (make_lr, _score) are compiled
# here for the first time whichever tests ran before in this process.
SHAPES = [(34, 38, 3), (34, 38, 3), (30, 26, 3), (26, 30, 1)]
CONTROL_SHAPES = [(38, 42, 3), (22, 46, 1)]


@pytest.fixture
def compiles():
  """Names of the jitted functions XLA compiles while the fixture is active."""
  names: list[str] = []

  class Catch(logging.Handler):
    def emit(self, record):
      msg = record.getMessage()
      if msg.startswith("Finished XLA compilation of jit("):
        names.append(msg[len("Finished XLA compilation of jit("):].split(")")[0])

  handler = Catch()
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  jax.config.update("jax_log_compiles", True)
  try:
    yield names
  finally:
    jax.config.update("jax_log_compiles", False)
    logger.removeHandler(handler)


def _write(tmp_path, shapes, seed):
  r = np.random.default_rng(seed)
  paths = []
  for i, shape in enumerate(shapes):
    path = tmp_path / f"im{seed}_{i}.png"
    jio.save_image(path, r.uniform(0, 1, shape).astype(np.float32))
    paths.append(str(path))
  return paths


def _sr_fn():
  """A model sr_fn as training builds it (reporting.make_sr_fn over a jitted predict)."""
  def predict(variables, lr):  # nearest x2 times a weight: cheap, and a program per shape
    up = jnp.repeat(jnp.repeat(lr, 2, axis=1), 2, axis=2)
    return up * variables["w"]

  mesh = mesh_lib.make_mesh()
  rep = mesh_lib.replicated(mesh)
  jitted = jax.jit(predict, in_shardings=(rep, rep), out_shardings=rep)
  return reporting.make_sr_fn(jitted, mesh, {"w": jnp.float32(0.9)})


def test_precompiled_evaluation_compiles_nothing_again_and_scores_the_same(tmp_path, compiles):
  paths = _write(tmp_path, SHAPES, seed=0)
  sr_fn, bicubic = _sr_fn(), evaluate.interpolation_fn("bicubic", 2)
  info = evaluate.precompile([sr_fn, bicubic], paths, 2)
  assert info["shapes"] == 3  # two images share a shape
  # Per shape: make_lr, the model, bicubic, the output's rounding, PSNR/SSIM.
  assert info["programs"] == 3 * 5
  for name in ("make_lr", "predict", "_as_saved", "_score"):
    assert name in compiles, (name, compiles)
  compiles.clear()
  ours = evaluate.evaluate_images(sr_fn, paths, 2, log=None)
  bic = evaluate.evaluate_images(bicubic, paths, 2, log=None)
  heavy = [n for n in compiles if n in ("make_lr", "predict", "_as_saved", "_score", "<lambda>")]
  assert not heavy, compiles

  assert ours["num_images"] == bic["num_images"] == 4
  # A fresh model function (compiled as the evaluation goes) scores the same, to the bit: the
  # precompiled path changes when things compile, nothing else.
  fresh = evaluate.evaluate_images(_sr_fn(), paths, 2, log=None)
  assert ours["per_image"] == fresh["per_image"]
  assert len({r["psnr_y"] for r in ours["per_image"]}) == 4  # real, distinct scores


def test_control_without_precompile_the_log_shows_the_compiles(tmp_path, compiles):
  paths = _write(tmp_path, CONTROL_SHAPES, seed=1)
  evaluate.evaluate_images(_sr_fn(), paths, 2, log=None)
  for name in ("make_lr", "predict", "_score"):
    assert compiles.count(name) == 2, (name, compiles)
