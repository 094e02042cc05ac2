"""SRMD / SRMDNF (jsr/models/srmd.py, jsr/methods/srmd.py, configs/srmd.py): the PCA basis checked
with numpy, the model's shapes and parameter count, the step's degradation against scipy + the
independent MATLAB-bicubic reference, the maps predict builds, and configs/srmd.py:runlocal through
the engine's command line."""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from configs import srmd as srmd_config
from jsr import errors
from jsr import models
from jsr.methods import srmd
from tests import np_reference

jax.config.update("jax_disable_most_optimizations", True)  # Tiny models: compile time dominates.

ROOT = Path(__file__).resolve().parents[1]
PCA = ROOT / "jsr" / "assets" / "srmd_pca.npz"


def matlab_anisotropic_gaussian(ksize, theta, l1, l2):
  """cszn/SRMD anisotropic_Gaussian.m in numpy: Sigma = V D V^-1 (V the reflection built from
  R(theta) [1; 0]), the gmdistribution pdf at (x - c, y - c), c = ksize/2 + 0.5 (1-based), x along
  columns; normalised."""
  v = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) @ [1, 0]
  big_v = np.array([[v[0], v[1]], [v[1], -v[0]]])
  sigma = big_v @ np.diag([l1, l2]) @ np.linalg.inv(big_v)
  inv = np.linalg.inv(sigma)
  c = ksize / 2.0 + 0.5
  k = np.zeros((ksize, ksize))
  for y in range(1, ksize + 1):
    for x in range(1, ksize + 1):
      p = np.array([x - c, y - c])
      k[y - 1, x - 1] = math.exp(-0.5 * p @ inv @ p)
  return k / k.sum()


def held_out_kernels(n, seed):
  """Demo_Get_PCA_matrix.m's sampler (theta = pi U, l1 = 0.1 + 9.9 U, l2 = 0.1 + (l1 - 0.1) U)."""
  r = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    theta = math.pi * r.random()
    l1 = 0.1 + 9.9 * r.random()
    l2 = 0.1 + (l1 - 0.1) * r.random()
    out.append(matlab_anisotropic_gaussian(15, theta, l1, l2))
  return np.stack(out)


def get_config(arg="runlocal"):
  return srmd_config.get_config(arg)


def smooth_hr(batch, size, seed=0):
  r = np.random.default_rng(seed)
  small = r.uniform(0, 1, (batch, size // 4 + 2, size // 4 + 2, 3))
  return ndimage.zoom(small, (1, 4, 4, 1), order=1)[:, :size, :size].astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The PCA basis.
# ------------------------------------------------------------------------------------------------


def test_basis_is_orthonormal_and_holds_its_settings():
  with np.load(PCA) as f:
    basis = f["basis"].astype(np.float64)
    settings = {k: f[k].item() for k in ("num_samples", "kernel_size", "dim", "seed", "l_min",
                                         "l_max", "theta_max", "order")}
  assert basis.shape == (15, 225)
  np.testing.assert_allclose(basis @ basis.T, np.eye(15), atol=1e-6)
  assert settings == dict(num_samples=10_000, kernel_size=15, dim=15, seed=0, l_min=0.1,
                          l_max=10.0, theta_max=math.pi, order="F")


def test_held_out_kernels_are_reconstructed_from_their_15_codes():
  """500 kernels the basis never saw, drawn by a numpy transcription of the MATLAB sampler: the
  projection P^T P k keeps them within 6% relative L2 error over the set (measured 4.7% on 2,000)
  and within 5% for the median kernel (3.4%); the worst are the near-delta kernels (l ~ 0.1)."""
  basis = np.load(PCA)["basis"].astype(np.float64)
  k = held_out_kernels(500, seed=12345)
  x = k.transpose(0, 2, 1).reshape(len(k), -1)  # column-major, MATLAB's k(:)
  rec = x @ basis.T @ basis
  per_kernel = np.linalg.norm(x - rec, axis=1) / np.linalg.norm(x, axis=1)
  assert np.linalg.norm(x - rec) / np.linalg.norm(x) < 0.06
  assert np.median(per_kernel) < 0.05
  # The codes jsr computes are the projection: basis @ k(:).
  np.testing.assert_allclose(np.asarray(srmd.kernel_code(jnp.asarray(k[:4]), basis)),
                             x[:4] @ basis.T, atol=1e-6)


def test_jsr_kernels_are_the_matlab_ones():
  """The step's kernel builder (KAIR's formula in jnp) against the MATLAB transcription above."""
  for theta, l1, l2 in [(0.3, 6.0, 1.5), (2.5, 0.1, 0.1), (1.0, 10.0, 9.0)]:
    got = np.asarray(srmd.kernel_ops.kair_anisotropic_gaussian(15, theta, l1, l2))
    np.testing.assert_allclose(got, matlab_anisotropic_gaussian(15, theta, l1, l2), atol=1e-6)


@pytest.mark.parametrize("content", [None, b"not an npz", "no_basis"])
def test_missing_or_corrupt_basis_is_a_clear_error(tmp_path, content):
  path = tmp_path / "pca.npz"
  if content == "no_basis":
    np.savez(path, other=np.zeros(3))
  elif content is not None:
    path.write_bytes(content)
  with pytest.raises(errors.UserError, match=str(path)):
    srmd.load_pca(path)


# ------------------------------------------------------------------------------------------------
# The model.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("noise_channel", [True, False])
def test_model_shapes(scale, noise_channel):
  model = models.get_model("srmd", variant="tiny", scale=scale, noise_channel=noise_channel)
  t = 16 if noise_channel else 15
  lr = jnp.zeros((2, 7, 9, 3))
  deg = jnp.ones((2, t))
  variables = model.init(jax.random.key(0), lr, deg)
  sr = model.apply(variables, lr, deg)
  chex.assert_shape(sr, (2, 7 * scale, 9 * scale, 3))
  assert sr.dtype == jnp.float32
  # Stretched vectors and the same constant maps given as maps are one input.
  maps = jnp.broadcast_to(deg[:, None, None, :], (2, 7, 9, t))
  np.testing.assert_allclose(model.apply(variables, lr + 0.3, maps),
                             model.apply(variables, lr + 0.3, deg), atol=1e-6)
  with pytest.raises(ValueError, match="degradation channels"):
    model.apply(variables, lr, jnp.ones((2, t + 1)))


@pytest.mark.parametrize("variant,channels", [("srmd", 19), ("srmdnf", 18)])
def test_paper_variants_count_their_parameters(variant, channels):
  """12 layers: 3x3 conv C->128 + ReLU, 10 x (3x3 conv 128->128 + BN + ReLU), 3x3 conv 128->3*4."""
  model = models.get_model("srmd", variant=variant, scale=2)
  lr = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
  deg = jax.ShapeDtypeStruct((1, channels - 3), jnp.float32)
  variables = jax.eval_shape(lambda a, b: model.init(jax.random.key(0), a, b), lr, deg)
  want = (9 * channels * 128 + 128) + 10 * (9 * 128 * 128 + 128 + 2 * 128) + (9 * 128 * 12 + 12)
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == want
  assert sum(x.size for x in jax.tree.leaves(variables["batch_stats"])) == 10 * 2 * 128
  convs = [k for k in variables["params"] if k.startswith("Conv")]
  assert len(convs) == 12


# ------------------------------------------------------------------------------------------------
# The step's degradation.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
def test_degradation_is_blur_then_matlab_bicubic(scale):
  """Known kernels, no noise, no rounding: per sample, scipy's correlation with replicated borders
  (MATLAB imfilter 'replicate') then the numpy MATLAB-imresize reference; rounding before the
  noise is then the 8-bit rounding of that."""
  config = get_config(f"runlocal,scale={scale}")
  config.srmd.quantize = "none"
  size = 8 * scale
  hr = smooth_hr(2, size)
  ks = np.stack([matlab_anisotropic_gaussian(15, 0.4, 5.0, 1.2),
                 matlab_anisotropic_gaussian(15, 2.0, 0.3, 0.2)]).astype(np.float32)
  fn = jax.jit(lambda x, k, s: srmd.degrade(x, k, s, jax.random.key(0), config))
  got = np.asarray(fn(hr, ks, jnp.zeros(2)))
  want = []
  for b in range(2):
    blurred = np.stack([ndimage.correlate(hr[b, ..., c].astype(np.float64), ks[b].astype(np.float64),
                                          mode="nearest") for c in range(3)], -1)
    want.append(np_reference.imresize(blurred, size // scale, size // scale, 1 / scale, 1 / scale))
  np.testing.assert_allclose(got, np.stack(want), atol=2e-5)

  config.srmd.quantize = "before_noise"
  got_q = np.asarray(jax.jit(lambda x, k, s: srmd.degrade(x, k, s, jax.random.key(0), config))(
      hr, ks, jnp.zeros(2)))
  np.testing.assert_allclose(got_q, np.round(np.clip(np.stack(want), 0, 1) * 255) / 255, atol=1e-6)


def test_direct_downsampling_keeps_every_s_th_blurred_pixel():
  """downsample="direct" (the hidden-kernel sets' model): scipy's correlation with replicated
  borders, then pixels 0, s, 2s, ... of each axis; an unknown mode is refused at init."""
  scale = 3
  config = get_config(f"runlocal,scale={scale}")
  config.srmd.quantize = "none"
  config.srmd.downsample = "direct"
  size = 8 * scale
  hr = smooth_hr(2, size, seed=3)
  ks = np.stack([matlab_anisotropic_gaussian(15, 1.1, 3.0, 0.7),
                 matlab_anisotropic_gaussian(15, 0.0, 1.0, 1.0)]).astype(np.float32)
  got = np.asarray(jax.jit(lambda x, k: srmd.degrade(x, k, jnp.zeros(2), jax.random.key(0),
                                                     config))(hr, ks))
  want = np.stack([np.stack([ndimage.correlate(hr[b, ..., c].astype(np.float64),
                                               ks[b].astype(np.float64), mode="nearest")
                             for c in range(3)], -1)[::scale, ::scale] for b in range(2)])
  chex.assert_shape(got, (2, size // scale, size // scale, 3))
  np.testing.assert_allclose(got, want, atol=2e-6)

  config.srmd.downsample = "nearest"
  with pytest.raises(ValueError, match="config.srmd.downsample"):
    srmd.init(config, jax.random.key(0), {"image": np.zeros((2, size, size, 3), np.uint8)})


def test_noise_has_each_samples_level():
  config = get_config()
  config.srmd.quantize = "before_noise"
  hr = np.full((3, 64, 64, 3), 0.5, np.float32)
  delta = np.zeros((3, 15, 15), np.float32)
  delta[:, 7, 7] = 1.0
  sigma = jnp.array([0.0, 10 / 255, 50 / 255])
  lr = np.asarray(jax.jit(lambda x: srmd.degrade(x, delta, sigma, jax.random.key(1), config))(hr))
  std = (lr - 0.5).reshape(3, -1).std(axis=1)
  np.testing.assert_allclose(std, np.asarray(sigma), rtol=0.05, atol=1e-6)


def test_random_kernels_are_centred_normalised_gaussians():
  config = get_config()
  ks = np.asarray(jax.jit(lambda r: srmd.random_kernels(r, 64, config))(jax.random.key(2)))
  np.testing.assert_allclose(ks.sum(axis=(1, 2)), 1.0, atol=1e-5)
  np.testing.assert_allclose(ks, ks[:, ::-1, ::-1], atol=1e-7)  # centrally symmetric
  assert (ks.argmax(axis=-1).reshape(64, -1)[:, 7] == 7).all()  # peak on the centre row's middle
  # The centre holds 1 / (2 pi sqrt(l1 l2)) of the mass (up to the 15x15 truncation): l in
  # [0.1, 10] keeps it between ~0.016 and 1.
  assert ks[:, 7, 7].min() > 0.01 and ks[:, 7, 7].max() <= 1.0


# ------------------------------------------------------------------------------------------------
# The step and predict.
# ------------------------------------------------------------------------------------------------


def _one_step(config, batch=2):
  hr = (smooth_hr(batch, config.data.patch_size, seed=3) * 255).round().astype(np.uint8)
  state = srmd.init(config, jax.random.key(0), {"image": hr})
  step = jax.jit(functools.partial(srmd.train_step, config=config))
  return state, step(state, {"image": hr}, jax.random.key(1))


def test_srmdnf_step_is_noise_free_and_updates_batch_norm():
  config = get_config("runlocal,variant=srmdnf")
  config.model.variant = "srmdnf"  # the paper network (runlocal picked tiny), on 2 small crops
  state, (new, metrics) = _one_step(config)
  assert float(metrics["noise_sigma"]) == 0.0 and np.isfinite(float(metrics["loss"]))
  assert int(new.step) == 1
  before, after = jax.tree.leaves(state.batch_stats), jax.tree.leaves(new.batch_stats)
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  config.srmd.noise_max = 0.1
  with pytest.raises(ValueError, match="no noise channel"):
    _one_step(config)


def test_srmd_step_draws_noise_in_range():
  config = get_config()
  _, (_, metrics) = _one_step(config, batch=4)
  assert 0.0 < float(metrics["noise_sigma"]) <= 75 / 255


@pytest.mark.parametrize("kind", ["bicubic", "gaussian", "file"])
def test_predict_maps(kind, tmp_path):
  config = get_config()
  config.srmd.noise_sigma = 15 / 255
  basis = np.load(PCA)["basis"].astype(np.float64)
  if kind == "bicubic":
    kernel = np.zeros((15, 15))
    kernel[7, 7] = 1.0  # fspecial('gaussian', 15, 0.01) is a delta in floating point
  elif kind == "gaussian":
    config.srmd.kernel, config.srmd.sigma, config.srmd.sigma2, config.srmd.theta = (
        "gaussian", 1.5, 0.8, 0.6)
    ax = np.arange(15) - 7.0
    c, s = math.cos(0.6), math.sin(0.6)
    u = c * ax[None, :] + s * ax[:, None]  # x along columns, y along rows
    v = -s * ax[None, :] + c * ax[:, None]
    kernel = np.exp(-0.5 * ((u / 1.5) ** 2 + (v / 0.8) ** 2))
    kernel /= kernel.sum()
  else:
    small = matlab_anisotropic_gaussian(13, 1.0, 3.0, 1.0)  # e.g. KernelGAN's 13x13 estimate
    np.save(tmp_path / "k.npy", small)
    config.srmd.kernel, config.srmd.kernel_file = "file", str(tmp_path / "k.npy")
    kernel = np.pad(small, 1)
  deg = np.asarray(srmd.predict_degradation(config, 2, noise_channel=True))
  want = np.append(basis @ kernel.flatten("F"), 15 / 255)
  np.testing.assert_allclose(deg, np.stack([want, want]), atol=1e-5)
  assert srmd.predict_degradation(config, 1, noise_channel=False).shape == (1, 15)


def test_predict_upscales():
  config = get_config()
  model = srmd.create_model(config)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 3)), jnp.zeros((1, 16)))
  sr = jax.jit(lambda v, x: srmd.predict(v, x, config))(variables, jnp.full((2, 5, 7, 3), 0.5))
  chex.assert_shape(sr, (2, 10, 14, 3))


# ------------------------------------------------------------------------------------------------
# configs/srmd.py:runlocal, end to end.
# ------------------------------------------------------------------------------------------------


def test_runlocal_config_trains_and_evaluates_through_the_engine(tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "jsr.main", "--config=configs/srmd.py:runlocal=True",
       f"--workdir={workdir}", "--config.data.backend=numpy"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  config = get_config("runlocal")
  assert max(r["step"] for r in rows) == config.total_steps
  assert any("train/loss" in r and np.isfinite(r["train/loss"]) for r in rows)
  assert any("eval/samples_x2/psnr_y" in r for r in rows)
