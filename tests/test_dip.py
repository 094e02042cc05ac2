"""Deep Image Prior: the reference's Downsampler against a numpy transcription of its formula, the
skip hourglass's pieces (bilinear x2, BatchNorm, crops, shapes, parameter count), and a tiny run
through super_resolve and the zero-shot engine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jsr import progress as progress_lib
from jsr import zeroshot
from jsr.methods import dip
from jsr.models import dip_net
from jsr.ops import downsampler
from tests.test_zssr import photo

jax.config.update("jax_disable_most_optimizations", True)  # Tiny nets: compile time dominates.

ROOT = Path(__file__).resolve().parents[1]


def load_config(arg: str = "runlocal"):
  spec = importlib.util.spec_from_file_location("dip_config", ROOT / "configs/dip.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


# --- The Downsampler, against the reference's formula (models/downsampler.py). ---


def reference_kernel(factor: int, support: int) -> np.ndarray:
  """get_kernel(factor, "lanczos", phase=0.5, kernel_width=2*support*factor + 1, support): the
  reference's double loop over a (width - 1)^2 grid, 1-based i, j."""
  width = 2 * support * factor + 1
  center = (width + 1) / 2.0
  k = np.zeros((width - 1, width - 1))
  for i in range(1, width):
    for j in range(1, width):
      val = 1.0
      for d in (abs(i + 0.5 - center) / factor, abs(j + 0.5 - center) / factor):
        if d != 0:
          val *= support * np.sin(np.pi * d) * np.sin(np.pi * d / support) / (np.pi ** 2 * d * d)
      k[i - 1, j - 1] = val
  return k / k.sum()


def reference_downsample(x: np.ndarray, factor: int, support: int = 2) -> np.ndarray:
  """ReplicationPad2d((K - factor) / 2), then a stride-`factor` correlation with the 2-D kernel,
  each channel alone (the reference's conv weight is diagonal over channels). x: (H, W, C)."""
  k = reference_kernel(factor, support)
  n = k.shape[0]
  pad = (n - factor) // 2
  xp = np.pad(x.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  oh, ow = (xp.shape[0] - n) // factor + 1, (xp.shape[1] - n) // factor + 1
  out = np.zeros((oh, ow, x.shape[2]))
  for a in range(oh):
    for b in range(ow):
      win = xp[a * factor:a * factor + n, b * factor:b * factor + n]
      out[a, b] = np.einsum("ij,ijc->c", k, win)
  return out


@pytest.mark.parametrize("factor,kernel_type,support", [(2, "lanczos2", 2), (4, "lanczos2", 2),
                                                        (4, "lanczos3", 3)])
def test_downsampler_matches_the_reference_formula(factor, kernel_type, support):
  x = np.random.default_rng(factor).random((6 * factor, 5 * factor, 3)).astype(np.float32)
  got = np.asarray(downsampler.downsample(jnp.asarray(x[None]), factor, kernel_type))[0]
  chex.assert_shape(got, (6, 5, 3))
  np.testing.assert_allclose(got, reference_downsample(x, factor, support), atol=2e-6)
  # The reference's 2-D kernel is separable: our taps are its marginal.
  np.testing.assert_allclose(downsampler.kernel_1d(factor, kernel_type),
                             reference_kernel(factor, support).sum(axis=1), atol=1e-12)


def test_downsampler_keeps_constants_and_rejects_odd_factors():
  x = jnp.full((1, 16, 12, 1), 0.3)
  np.testing.assert_allclose(downsampler.downsample(x, 4), 0.3, atol=1e-6)
  assert len(downsampler.kernel_1d(4)) == 16  # kernel_width 4 * factor + 1, minus one at phase 1/2
  with pytest.raises(ValueError, match="even"):
    downsampler.downsample(jnp.zeros((1, 9, 9, 1)), 3)


# --- The network's pieces. ---


def reference_bilinear2x(x: np.ndarray) -> np.ndarray:
  """PyTorch's bilinear x2 with align_corners=False, per output pixel: source coordinate
  (o + 0.5) / 2 - 0.5, clamped at 0, linear between floor and floor + 1 (clamped at n - 1)."""
  def axis_weights(n):
    m = np.zeros((2 * n, n))
    for o in range(2 * n):
      src = max((o + 0.5) / 2 - 0.5, 0.0)
      i0 = int(np.floor(src))
      i1, t = min(i0 + 1, n - 1), src - i0
      m[o, i0] += 1 - t
      m[o, i1] += t
    return m
  mh, mw = axis_weights(x.shape[1]), axis_weights(x.shape[2])
  return np.einsum("Hh,nhwc,Ww->nHWc", mh, x, mw)


def test_bilinear_upsampling_is_pytorchs():
  x = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
  got = dip_net.upsample_bilinear2x(jnp.asarray(x))
  chex.assert_shape(got, (2, 10, 14, 3))
  np.testing.assert_allclose(got, reference_bilinear2x(x), atol=1e-6)


def test_batch_norm_uses_the_batch_statistics():
  x = jnp.asarray(np.random.default_rng(1).normal(3.0, 2.0, (2, 6, 5, 4)), jnp.float32)
  bn = dip_net.BatchStatNorm()
  params = bn.init(jax.random.key(0), x)
  y = np.asarray(bn.apply(params, x), np.float64)
  xn = np.asarray(x, np.float64)
  want = (xn - xn.mean((0, 1, 2))) / np.sqrt(xn.var((0, 1, 2)) + 1e-5)  # biased variance
  np.testing.assert_allclose(y, want, atol=1e-5)


def test_concat_crop_takes_the_references_window():
  x = jnp.arange(7 * 6, dtype=jnp.float32).reshape(1, 7, 6, 1)
  np.testing.assert_array_equal(dip_net.crop_to(x, 5, 5)[0, :, :, 0], np.asarray(x)[0, 1:6, 0:5, 0])


def test_tiny_net_keeps_the_input_size_and_outputs_in_0_1():
  net = dip_net.Model(variant="tiny", out_channels=3)
  z = jax.random.uniform(jax.random.key(0), (2, 23, 17, 32)) * 0.1  # Odd sides: crops at work.
  params = jax.jit(net.init)(jax.random.key(1), z)
  out = jax.jit(net.apply)(params, z)
  chex.assert_shape(out, (2, 23, 17, 3))
  assert float(out.min()) > 0.0 and float(out.max()) < 1.0  # Sigmoid output.


def reference_param_count(c_in: int, down: int, up: int, skip: int, scales: int, c_out: int) -> int:
  """skip.py's layers, counted by hand: per scale a 1x1 skip conv, two 3x3 down convs, a BN on
  the concatenation, a 3x3 and a 1x1 up conv (each conv with bias and a 2-parameter-per-channel
  BN); then the output 1x1 conv."""
  def level(d):
    return ((d * skip + skip) + 2 * skip + (9 * d * down + down) + 2 * down
            + (9 * down * down + down) + 2 * down + 2 * (skip + up)
            + (9 * (skip + up) * up + up) + 2 * up + (up * up + up) + 2 * up)
  return level(c_in) + (scales - 1) * level(down) + up * c_out + c_out


def test_paper_variant_is_the_references_2_2m_parameter_net():
  net = dip_net.Model(variant="paper", out_channels=3)
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 64, 64, 32))))
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
  assert count == reference_param_count(32, 128, 128, 4, 5, 3) == 2_217_831


# --- The method and the engine. ---


class Recorder(progress_lib.Progress):

  def __init__(self):
    self.total, self.updates = None, []

  def start(self, total_iterations):
    self.total = total_iterations

  def update(self, iteration, **scalars):
    self.updates.append((iteration, scalars))


def test_super_resolve_fits_the_lr_image_and_keeps_snapshots():
  config = load_config()
  config.dip.snapshot_iters = [10, 20]
  lr = photo(8, 10)  # The engine test's HR size: compiled once for both.
  rec = Recorder()
  sr, log = dip.super_resolve(lr, config, seed=0, progress=rec)
  chex.assert_shape(sr, (32, 40, 3))
  assert 0.0 <= sr.min() and sr.max() <= 1.0
  n, every = config.dip.iterations, config.dip.report_every
  assert log["iterations"] == n and rec.total == n
  assert [i for i, _ in log["rec_mse"]] == list(range(every, n + 1, every))
  assert [i for i, _ in rec.updates] == list(range(every, n + 1, every))
  assert rec.updates[-1][1]["rec_mse"] == pytest.approx(log["loss"])
  mses = [m for _, m in log["rec_mse"]]
  assert mses[-1] < mses[0]  # The fit to the LR image improves.
  assert log["snapshot_iters"] == [10, 20]
  chex.assert_shape(log["snapshot"], (2, 32, 40, 3))
  # The same seed, the same result.
  sr2, _ = dip.super_resolve(lr, config, seed=0)
  np.testing.assert_allclose(sr, sr2, atol=1e-5)
  config.dip.snapshot_iters = [50]
  with pytest.raises(ValueError, match="snapshot_iters"):
    dip.super_resolve(lr, config, seed=0)


def test_config_rejects_odd_scales_and_small_images():
  with pytest.raises(ValueError, match="scale"):
    load_config("scale=3")
  with pytest.raises(ValueError, match="too small"):
    dip.super_resolve(np.zeros((1, 1, 3), np.float32), load_config(), seed=0)
  config = load_config()
  config.dip.kernel_type = "gauss"
  with pytest.raises(ValueError, match="kernel_type"):
    dip.super_resolve(photo(9, 11), config, seed=0)


def test_zeroshot_run_scores_gray_and_color_images(tmp_path):
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  Image.fromarray(np.round(photo(32, 40) * 255).astype(np.uint8)).save(hr_dir / "cat.png")
  Image.fromarray(np.round(photo(36, 32, 1)[..., 0] * 255).astype(np.uint8)).save(hr_dir / "g.png")
  config = load_config()
  config.eval.sets = f"tiny={hr_dir}"
  workdir = tmp_path / "w"
  rows = zeroshot.run(config, str(workdir))
  assert [(r["set"], r["image"]) for r in rows] == [("tiny", "cat.png"), ("tiny", "g.png")]
  for r in rows:
    assert 10 < r["psnr_y"] < 60 and 10 < r["bicubic_psnr_y"] < 60
    assert r["iterations"] == config.dip.iterations
  chex.assert_shape(np.asarray(Image.open(workdir / "images/tiny/cat.png")), (32, 40, 3))
  chex.assert_shape(np.asarray(Image.open(workdir / "images/tiny/g.png")), (36, 32))
  metrics = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert metrics[-1]["eval/tiny_x4/psnr_y"] == pytest.approx(np.mean([r["psnr_y"] for r in rows]))
  # The engine's progress reporter wrote the per-image curves.
  key = "zeroshot/tiny/cat.png/rec_mse"
  assert [m["step"] for m in metrics if key in m] == [10, 20, 30]
