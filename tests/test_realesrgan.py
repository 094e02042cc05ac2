"""Real-ESRNet / Real-ESRGAN at runlocal size, the `degradation` block on other methods, and the
degraded test sets (scripts/make_degraded_set.py)."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy import ndimage

from jsr import inference
from jsr import train
from jsr import writers
from jsr.methods import supervised
from jsr.ops import realworld

# The runlocal helpers the GAN tests use: config loading, a synthetic photo, a config on a folder.
from test_gan import _photo, load_config, make  # pylint: disable=g-bad-import-order

jax.config.update("jax_disable_most_optimizations", True)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("realesrgan")
  (root / "train").mkdir()
  (root / "eval").mkdir()
  for i in range(2):
    Image.fromarray(_photo(72, 76, i)).save(root / "train" / f"t{i}.png")
  Image.fromarray(_photo(40, 44, 9)).save(root / "eval" / "e.png")
  return root


def _usm_reference(img: np.ndarray) -> np.ndarray:
  """BasicSR's USMSharp(radius=50) written with OpenCV (see tests/test_realworld.py)."""
  g = cv2.getGaussianKernel(51, 0)
  k = (g @ g.T).astype(np.float32)
  blur = lambda a: cv2.filter2D(a, -1, k, borderType=cv2.BORDER_REFLECT_101)
  residual = img - blur(img)
  soft = blur((np.abs(residual) * 255 > 10).astype(np.float32))
  return soft * np.clip(img + 0.5 * residual, 0, 1) + (1 - soft) * img


def test_realesrnet_then_realesrgan_train_evaluate_and_predict(dirs):
  """configs/realesrnet.py:runlocal trains on pipeline-degraded crops and evaluates; Real-ESRGAN
  warm-starts from it (init_from), trains G and the U-Net SN D, and predicts from G."""
  net = make("realesrnet", dirs)
  assert net.degradation.pipeline == "realesrgan"
  state = train.train_and_evaluate(net, str(dirs / "net"))
  assert int(state.step) == net.total_steps
  rows = writers.read_metrics(str(dirs / "net"))
  assert any("eval/tiny_x4/psnr_y" in r for r in rows)
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)

  gan_config = make("realesrgan", dirs)
  gan_config.init_from = str(dirs / "net")
  assert gan_config.discriminator.kind == "unet_sn"
  assert gan_config.degradation.sharpen.targets == "pixel,perceptual"
  g_state = train.train_and_evaluate(gan_config, str(dirs / "gan"))
  assert int(g_state.step) == gan_config.total_steps
  rows = [r for r in writers.read_metrics(str(dirs / "gan")) if "train/loss" in r]
  for key in ("l_pix", "l_percep", "l_g_gan", "l_d"):
    assert all(np.isfinite(r[f"train/{key}"]) for r in rows), key
  sr_fn, _ = inference.load_sr_fn(str(dirs / "gan"), 4)
  sr = sr_fn(jnp.full((1, 10, 12, 3), 0.5))
  assert sr.shape == (1, 40, 48, 3) and np.all(np.isfinite(np.asarray(sr)))


def test_realesrnet_l1_is_against_the_sharpened_hr(dirs):
  """The logged L1 of a step equals mean |G(LR) - USM(HR)| with USM written here (OpenCV)."""
  config = make("realesrnet", dirs)
  hr = _photo(32, 32, 3)[None].repeat(2, axis=0)
  batch = {"image": jnp.asarray(hr)}
  state = supervised.init(config, jax.random.key(0), batch)
  rng = jax.random.key(5)
  _, metrics = jax.jit(lambda s, b, r: supervised.train_step(s, b, r, config))(state, batch, rng)
  hr_f = hr.astype(np.float32) / 255
  lr = supervised.synthesize_lr(jnp.asarray(hr_f), config, jax.random.fold_in(rng, 0))
  sr = np.asarray(state.apply_fn({"params": state.params}, lr, train=True))
  target = np.stack([_usm_reference(x) for x in hr_f])
  np.testing.assert_allclose(float(metrics["l1"]), np.mean(np.abs(sr - target)), rtol=1e-4)
  assert abs(np.mean(np.abs(sr - target)) - np.mean(np.abs(sr - hr_f))) > 1e-5  # USM matters


def test_degradation_block_switches_any_supervised_config_to_bsrgan(dirs):
  """EDSR (not a Real-ESRGAN config) trains a step on BSRGAN-degraded crops from the CLI keys."""
  config = make("edsr", dirs, "scale=4,runlocal")
  config.degradation.pipeline = "bsrgan"
  hr = jnp.asarray(_photo(32, 32, 4)[None].repeat(2, axis=0))
  lr = supervised.synthesize_lr(hr.astype(jnp.float32) / 255, config, jax.random.key(1))
  assert lr.shape == (2, 8, 8, 3)
  bicubic = supervised.synthesize_lr(hr.astype(jnp.float32) / 255,
                                     make("edsr", dirs, "scale=4,runlocal"))
  assert float(jnp.mean(jnp.abs(lr - bicubic))) > 1e-3
  config.degradation.pipeline = "jpeg"
  with pytest.raises(ValueError, match="degradation.pipeline"):
    supervised.init(config, jax.random.key(0), {"image": hr})


def test_mixed_pipeline_runs_one_chain_per_batch(dirs):
  """'bsrgan+realesrgan': each batch's LR is exactly one chain's LR (that chain run alone on the
  same key), not a blend; over a few batches both chains occur. Bad mixtures are refused."""
  config = make("edsr", dirs, "scale=4,runlocal")
  config.degradation.pipeline = "bsrgan+realesrgan"
  deg = config.degradation
  hr = jnp.asarray(_photo(32, 32, 4)[None].repeat(2, axis=0)).astype(jnp.float32) / 255
  mixed = jax.jit(lambda key: supervised.synthesize_lr(hr, config, key))
  alone = {n: jax.jit(lambda key, n=n: realworld.degrade(hr, key, deg[n], 4, deg.sharpen)[0])
           for n in ("bsrgan", "realesrgan")}
  seen = []
  for seed in range(6):
    key = jax.random.key(seed)
    lr = np.asarray(mixed(key))
    assert lr.shape == (2, 8, 8, 3)
    # The mixture spends the first half of a split on its choice and passes the second on.
    refs = {n: np.asarray(f(jax.random.split(key)[1])) for n, f in alone.items()}
    match = [n for n, r in refs.items() if np.allclose(lr, r, atol=1e-6)]
    assert len(match) == 1, (seed, {n: float(np.abs(lr - r).max()) for n, r in refs.items()})
    seen.append(match[0])
  assert set(seen) == {"bsrgan", "realesrgan"}, seen
  for bad in ("bsrgan+bsrgan", "bsrgan+jpeg", "classical+bsrgan"):
    config.degradation.pipeline = bad
    with pytest.raises(ValueError, match="joined by"):
      supervised.init(config, jax.random.key(0), {"image": hr})


# ------------------------------------------------------------------------------------------------
# Degraded test sets.
# ------------------------------------------------------------------------------------------------


def _script():
  sys.path.insert(0, str(ROOT / "scripts"))
  spec = importlib.util.spec_from_file_location("make_degraded_set",
                                                ROOT / "scripts/make_degraded_set.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("hr")
  # One size after the x4 modcrop (32x40): the jitted pipeline compiles once per size.
  Image.fromarray(_photo(34, 41, 0)).save(root / "a.png")
  Image.fromarray(_photo(32, 43, 1)).save(root / "b.png")
  return root


# (BSRGAN's determinism per key is tested in test_realworld.py; its program compiles slowly.)
@pytest.mark.parametrize("pipeline", ["realesrgan", "kernel"])
def test_degraded_sets_are_byte_identical_for_one_seed(pipeline, hr_dir, tmp_path):
  mod = _script()
  paths = sorted(str(p) for p in hr_dir.glob("*.png"))
  for name, seed in (("one", 0), ("two", 0), ("other", 1)):
    mod.make_realworld_set(paths, tmp_path / name, pipeline, 4, seed)
  files = ["params.json"] + [f"{d}/{n}.png" for d in ("LR", "HR") for n in ("a", "b")]
  _, mismatch, errors = filecmp.cmpfiles(tmp_path / "one", tmp_path / "two", files, shallow=False)
  assert not mismatch and not errors
  lr = np.asarray(Image.open(tmp_path / "one" / "LR" / "a.png"))
  assert lr.shape == (34 // 4, 40 // 4, 3)  # HR modcropped to 32x40
  other = np.asarray(Image.open(tmp_path / "other" / "LR" / "a.png"))
  assert np.abs(lr.astype(int) - other).mean() > 0.5


def test_kernel_set_is_blur_then_direct_subsampling(hr_dir, tmp_path):
  """LR = round((HR * k)[::4, ::4]) with the saved kernel, scipy's mirror-padded convolution."""
  _script().make_realworld_set([str(hr_dir / "b.png")], tmp_path, "kernel", 4, 3)
  k = np.load(tmp_path / "kernels" / "b.npy")
  assert abs(k.sum() - 1) < 1e-5 and k.shape == (21, 21)
  hr = np.asarray(Image.open(tmp_path / "HR" / "b.png")).astype(np.float64) / 255
  blurred = np.stack([ndimage.convolve(hr[..., c], k, mode="mirror") for c in range(3)], -1)
  ref = np.clip(np.round(blurred[::4, ::4] * 255), 0, 255)
  lr = np.asarray(Image.open(tmp_path / "LR" / "b.png")).astype(np.float64)
  assert np.abs(lr - ref).max() <= 1  # float32 vs float64 at the rounding boundary


def test_one_kernel_set_blurs_every_image_with_the_seeds_kernel(hr_dir, tmp_path):
  """--one_kernel: one kernel per set, the same for any folder made with the seed (a training set
  and its test sets share the hidden blur); each LR is the scipy blur + subsampling with it."""
  paths = sorted(str(p) for p in hr_dir.glob("*.png"))
  mod = _script()
  mod.make_realworld_set(paths, tmp_path / "train", "kernel", 4, 5, one_kernel=True)
  mod.make_realworld_set(paths[:1], tmp_path / "test", "kernel", 4, 5, one_kernel=True)
  k = np.load(tmp_path / "train" / "kernel.npy")
  np.testing.assert_array_equal(k, np.load(tmp_path / "test" / "kernel.npy"))
  assert not (tmp_path / "train" / "kernels").exists()
  for name in ("a", "b"):
    hr = np.asarray(Image.open(tmp_path / "train" / "HR" / f"{name}.png")).astype(np.float64) / 255
    blurred = np.stack([ndimage.convolve(hr[..., c], k, mode="mirror") for c in range(3)], -1)
    ref = np.clip(np.round(blurred[::4, ::4] * 255), 0, 255)
    lr = np.asarray(Image.open(tmp_path / "train" / "LR" / f"{name}.png")).astype(np.float64)
    assert np.abs(lr - ref).max() <= 1
  with pytest.raises(ValueError, match="kernel pipeline only"):
    mod.make_realworld_set(paths, tmp_path / "x", "realesrgan", 4, 5, one_kernel=True)
