"""CSRGAN (issue 13): the per-sample degradation sampler against scipy/numpy references, the
U-Net, and configs/csrgan.py:runlocal trained, evaluated on a written test set and predicted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy.ndimage import gaussian_filter1d

from jsr import errors
from jsr import io as jio
from jsr import train
from jsr import writers
from jsr.methods import csrgan
from jsr.models import common
from jsr.models import unet
from jsr.ops import random_degrade as rd
from jsr.ops.resize import output_size, resize_matrix

ROOT = Path(__file__).resolve().parents[1]


def load_config(arg: str):
  spec = importlib.util.spec_from_file_location("csrgan_config", ROOT / "configs/csrgan.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _make_degraded_set():
  spec = importlib.util.spec_from_file_location("make_degraded_set",
                                                ROOT / "scripts/make_degraded_set.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _photo(h, w, seed, channels=3):
  r = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  chans = [np.sin(2 * np.pi * (r.uniform(1, 4) * yy + r.uniform(1, 4) * xx) + r.uniform(0, 6))
           for _ in range(channels)]
  img = 0.5 + 0.35 * np.stack(chans, -1) + 0.1 * (xx > 0.5)[..., None]
  return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# The sampler.
# ------------------------------------------------------------------------------------------------


def test_drawn_parameters_fill_their_ranges_uniformly():
  config = load_config("runlocal")
  d = config.degradation
  n = 20000
  p = jax.jit(lambda k: rd.sample_params(k, n, d.sigma_max, d.scale_min, d.scale_max,
                                         d.noise_max))(jax.random.key(0))
  for name, (lo, hi) in csrgan.param_ranges(config).items():
    v = np.asarray(p[name])
    assert v.shape == (n,) and v.min() >= lo and v.max() <= hi, name
    counts, _ = np.histogram(v, bins=10, range=(lo, hi))
    # Uniform: each bin holds n/10 = 2000 draws; 5 sigma of a binomial is ~212.
    np.testing.assert_allclose(counts, n / 10, atol=220, err_msg=name)
  assert {"sigma", "scale", "noise"} == set(p)


@pytest.mark.parametrize("f", [1.0, 1.37, 2.0, 2.71, 3.0])
def test_resize_matrices_are_matlabs_for_a_traced_factor(f):
  n = 37
  m = output_size(n, 1 / f)
  down = np.asarray(rd.resize_matrices(n, n, jnp.array([n]), jnp.array([m]), jnp.array([1 / f])))[0]
  np.testing.assert_allclose(down[:m], resize_matrix(n, m, 1 / f), atol=1e-5)
  assert not down[m:].any()
  up = np.asarray(rd.resize_matrices(n, n, jnp.array([m]), jnp.array([n]), jnp.array([n / m])))[0]
  np.testing.assert_allclose(up[:, :m], resize_matrix(m, n, n / m), atol=1e-5)
  assert not up[:, m:].any()


def test_chain_equals_scipy_blur_and_matlab_resizes():
  """blur (scipy, mirror borders) -> MATLAB resize down -> up, per sample, against numpy."""
  rng = np.random.default_rng(0)
  hr = rng.random((3, 40, 44, 3)).astype(np.float32)
  params = {"sigma": jnp.array([0.0, 1.3, 4.2]), "scale": jnp.array([1.0, 2.5, 3.0]),
            "noise": jnp.zeros(3)}
  got = np.asarray(jax.jit(lambda x: rd.blur_down_noise_up(x, params, jax.random.key(0), 5.0,
                                                           quantize=False))(hr))
  for b in range(3):
    s, f = float(params["sigma"][b]), float(params["scale"][b])
    x = hr[b].astype(np.float64)
    if s > 0:
      for axis in (0, 1):
        x = gaussian_filter1d(x, s, axis=axis, mode="mirror", truncate=15 / s)
    h, w = x.shape[:2]
    mh, mw = output_size(h, 1 / f), output_size(w, 1 / f)
    lr = np.einsum("oh,hwc->owc", resize_matrix(h, mh, 1 / f), x)
    lr = np.einsum("pw,owc->opc", resize_matrix(w, mw, 1 / f), lr)
    up = np.einsum("oh,hwc->owc", resize_matrix(mh, h, h / mh), lr)
    up = np.einsum("pw,owc->opc", resize_matrix(mw, w, w / mw), up)
    np.testing.assert_allclose(got[b], up, atol=2e-5, err_msg=f"sample {b}")


def test_noise_has_the_drawn_level_and_the_step_stays_on_the_device():
  hr = jnp.full((4, 64, 64, 3), 0.5)
  params = {"sigma": jnp.zeros(4), "scale": jnp.ones(4),
            "noise": jnp.array([0.0, 0.01, 0.05, 0.09])}
  fn = jax.jit(lambda x, k: rd.blur_down_noise_up(x, params, k, 5.0, quantize=False))
  key = jax.device_put(jax.random.key(3))
  with jax.transfer_guard("disallow"):  # no host round trip inside
    out = fn(hr, key)
  std = np.asarray(out - 0.5).reshape(4, -1).std(axis=1)
  np.testing.assert_allclose(std, [0, 0.01, 0.05, 0.09], rtol=0.03, atol=1e-6)
  hlo = jax.jit(lambda x, k: csrgan.degrade(x, k, load_config("runlocal"))).lower(
      hr, key).as_text()
  assert "callback" not in hlo.lower()


# ------------------------------------------------------------------------------------------------
# The network and the method.
# ------------------------------------------------------------------------------------------------


def test_unet_any_size_image_in_unit_range_and_three_parameters():
  model = unet.Model(variant="tiny")
  variables = common.init_variables(model, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  x = jax.random.uniform(jax.random.key(1), (2, 37, 45, 3))
  image, params = model.apply(variables, x)
  chex.assert_shape(image, (2, 37, 45, 3))
  chex.assert_shape(params, (2, 3))
  assert float(image.min()) >= 0 and float(image.max()) <= 1
  assert float(params.min()) >= 0 and float(params.max()) <= 1
  with pytest.raises(ValueError, match="scale must be 1"):
    unet.Model(variant="tiny", scale=2)


def test_bad_settings_are_named(tmp_path):
  batch = {"image": np.zeros((2, 128, 128, 3), np.uint8)}
  config = load_config("runlocal")
  config.scale = 2
  with pytest.raises(errors.UserError, match="config.scale=2"):
    csrgan.init(config, jax.random.key(0), batch)
  config = load_config("runlocal")
  config.degradation.scale_max = 6.0
  with pytest.raises(errors.UserError, match="scale_max=6.0"):
    csrgan.init(config, jax.random.key(0), batch)
  with pytest.raises(ValueError, match="unknown arg 'lamda'"):
    load_config("lamda=0")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("csrgan")
  (root / "train").mkdir()
  (root / "hr").mkdir()
  for i in range(2):
    Image.fromarray(_photo(136, 140, i)).save(root / "train" / f"t{i}.png")
  Image.fromarray(_photo(48, 52, 8)).save(root / "hr" / "e.png")
  Image.fromarray(_photo(40, 44, 9, 1)[..., 0]).save(root / "hr" / "gray.png")
  config = load_config("runlocal")
  drawn = _make_degraded_set().make_set(jio.list_images(root / "hr"), root / "test", config, 0)
  return root, drawn


def test_degraded_set_is_reproducible_and_named(dirs):
  root, drawn = dirs
  meta = json.loads((root / "test" / "params.json").read_text())
  assert meta["params"] == drawn and set(drawn) == {"e", "gray"}
  lr = np.asarray(Image.open(root / "test" / "LR" / "e.png"))
  hr = np.asarray(Image.open(root / "test" / "HR" / "e.png"))
  assert lr.shape == hr.shape == (48, 52, 3) and not np.array_equal(lr, hr)
  assert np.asarray(Image.open(root / "test" / "LR" / "gray.png")).ndim == 2
  again = _make_degraded_set().make_set(jio.list_images(root / "hr"), root / "again",
                                        load_config("runlocal"), 0)
  assert again == drawn
  np.testing.assert_array_equal(np.asarray(Image.open(root / "again" / "LR" / "e.png")), lr)


@pytest.mark.parametrize("lam", [100.0, 0.0])
def test_runlocal_trains_evaluates_and_predicts(dirs, lam, tmp_path):
  root, _ = dirs
  config = load_config(f"runlocal,lambda={lam}")
  config.data.train = f"folder:{root / 'train'}"
  config.data.backend = "numpy"
  config.eval.sets = f"test=pairs:{root / 'test' / 'LR'},{root / 'test' / 'HR'}"
  workdir = tmp_path / "run"
  state = train.train_and_evaluate(config, str(workdir))
  assert int(state.step) == config.total_steps
  rows = writers.read_metrics(str(workdir))
  for r in (r for r in rows if "train/loss" in r):
    # The logged terms make up the logged objective: L_GAN + lambda L_pred + mu MSE.
    want = r["train/l_g_gan"] + lam * r["train/l_pred"] + 1000.0 * r["train/l_mse"]
    assert r["train/loss"] == pytest.approx(want, rel=1e-5)
    assert {"train/err_sigma", "train/err_noise", "train/err_scale", "train/d_real"} <= set(r)
  evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/test_x1/")}
  assert {"eval/test_x1/psnr_y", "eval/test_x1/lpips", "eval/test_x1/bicubic_psnr_y"} <= set(evals)

  out = tmp_path / "scores.json"
  proc = subprocess.run([sys.executable, "-m", "jsr.evaluate", f"--workdir={workdir}",
                         f"--data={root / 'test' / 'HR'}", f"--lr={root / 'test' / 'LR'}",
                         "--scale=1", f"--output={out}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads(out.read_text())["mean"]["psnr_y"] == pytest.approx(
      evals["eval/test_x1/psnr_y"], abs=1e-3)
  proc = subprocess.run([sys.executable, "-m", "jsr.predict", f"--workdir={workdir}",
                         f"--input={root / 'test' / 'LR'}", f"--output={tmp_path / 'pred'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert np.asarray(Image.open(tmp_path / "pred" / "e.png")).shape == (48, 52, 3)


def test_trains_on_given_equal_size_pairs(dirs, tmp_path):
  root, _ = dirs
  lr_dir = tmp_path / "lr"
  lr_dir.mkdir()
  for p in (root / "train").iterdir():  # "degraded" inputs equal to the photos
    np.save(lr_dir / f"{p.stem}_LR.npy", np.asarray(Image.open(p)))
  config = load_config("runlocal")
  config.data.train = f"pairs:{lr_dir},{root / 'train'}"
  config.data.backend = "numpy"
  config.eval.sets = ""
  state = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(state.step) == config.total_steps
  rows = [r for r in writers.read_metrics(str(tmp_path / "run")) if "train/loss" in r]
  assert rows and all("train/err_sigma" not in r for r in rows)  # no parameters to predict
  # The input is the given LR (here the HR itself: MSE 0, PSNR at its 1e-10 floor), not a
  # synthesised one.
  assert all(r["train/psnr_input"] == pytest.approx(100.0) for r in rows)
