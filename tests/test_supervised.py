"""The supervised method (jsr/methods/supervised.py) and the per-model configs (configs/<model>.py)."""

from __future__ import annotations

import functools
import importlib
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from jsr import methods
from jsr import train
from jsr import writers
from jsr.methods import supervised
from jsr.ops.resize import imresize

jax.config.update("jax_disable_most_optimizations", True)  # Tiny models: compile time dominates.

MODELS = ["srcnn", "fsrcnn", "espcn", "vdsr", "postup", "edsr", "rcan", "srresnet", "lapsrn",
          "lapres"]


def get_config(name: str, arg: str = "runlocal"):
  return importlib.import_module(f"configs.{name}").get_config(arg)


def hr_batch(config, seed=0, batch=None):
  """Smooth random HR crops (uint8), so the models have something learnable."""
  p, b = config.data.patch_size, batch or config.data.batch_size
  rng = np.random.default_rng(seed)
  small = rng.uniform(0, 255, (b, p // 4 + 1, p // 4 + 1, 3))
  big = np.kron(small, np.ones((1, 4, 4, 1)))[:, :p, :p]
  return {"image": np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)}


def jit_step(config):
  return jax.jit(functools.partial(supervised.train_step, config=config))


# ------------------------------------------------------------------------------------------------
# Every config: builds, inits, trains 2 steps, predicts.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_runlocal_config_trains_two_steps(name):
  config = get_config(name)
  # The engine's required keys all exist (a locked config fails on a missing one).
  for key in ("method", "scale", "seed", "distributed", "total_steps", "log_every_steps",
              "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints", "data.train",
              "data.tfds_data_dir", "data.patch_size", "data.batch_size", "data.augment",
              "data.backend", "eval.sets", "optim.name", "optim.lr", "optim.b1", "optim.b2",
              "optim.eps", "optim.weight_decay", "optim.schedule", "optim.warmup_steps",
              "optim.decay_steps", "optim.decay_factor", "optim.grad_clip_norm"):
    node = config
    for part in key.split("."):
      node = node[part]
  assert config.method == "supervised" and config.model.name == name
  assert config.data.patch_size % config.scale == 0 and config.data.patch_size <= 48
  # The full (non-runlocal) config builds too and keeps an HR crop divisible by the scale.
  full = get_config(name, "")
  assert full.data.patch_size % full.scale == 0 and full.model.variant != "tiny"

  batch = hr_batch(config)
  state = supervised.init(config, jax.random.PRNGKey(0), batch)
  step = jit_step(config)
  losses = []
  for i in range(2):
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)), losses
  assert int(state.step) == 2
  assert np.isfinite(float(metrics["grad_norm"])) and np.isfinite(float(metrics["psnr"]))
  lr = jnp.zeros((1, 5, 7, 3))
  sr = supervised.predict(methods.inference_variables(supervised, config, state), lr, config)
  chex.assert_shape(sr, (1, 5 * config.scale, 7 * config.scale, 3))
  chex.assert_type(sr, jnp.float32)
  if name == "srresnet":  # BatchNorm: running statistics live in the state and were updated.
    assert state.batch_stats is not None
    assert any(np.any(np.asarray(v) != 0) for k, v in
               jax.tree_util.tree_flatten_with_path(state.batch_stats)[0]
               if "mean" in jax.tree_util.keystr(k))
  else:
    assert state.batch_stats is None


def test_common_parse_arg():
  from configs import common
  a = common.parse_arg("scale=4,variant=x,runlocal", name="t", scale=2, variant="v",
                       runlocal=False)
  assert a == {"scale": 4, "variant": "x", "runlocal": True}
  with pytest.raises(ValueError, match="unknown arg 'scael'"):
    common.parse_arg("scael=4", name="t", scale=2)
  with pytest.raises(ValueError, match="invalid literal"):
    common.parse_arg("scale=four", name="t", scale=2)


# ------------------------------------------------------------------------------------------------
# LR synthesis and the loss.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_is_matlab_bicubic_rounded_to_8_bits(scale):
  config = get_config("espcn", f"scale={scale},runlocal")
  hr = jnp.asarray(hr_batch(config)["image"], jnp.float32) / 255.0
  lr = supervised.synthesize_lr(hr, config)
  expected = imresize(hr, 1.0 / scale, quantize=True)
  chex.assert_shape(lr, (hr.shape[0], hr.shape[1] // scale, hr.shape[2] // scale, 3))
  np.testing.assert_array_equal(np.asarray(lr), np.asarray(expected))
  # 8-bit values, as a saved LR image.
  np.testing.assert_allclose(np.asarray(lr) * 255, np.round(np.asarray(lr) * 255), atol=1e-4)


def test_gaussian_direct_degradation_and_noise():
  config = get_config("espcn", "scale=2,runlocal")
  config.degradation.kernel = "gaussian"
  config.degradation.quantize = False
  hr = jnp.asarray(hr_batch(config)["image"], jnp.float32) / 255.0
  lr = supervised.synthesize_lr(hr, config)
  # Independent: a Gaussian built in numpy, reflect-padded depthwise convolution, every 2nd pixel.
  k = config.degradation.kernel_size
  ax = np.arange(k) - (k - 1) / 2
  g = np.exp(-ax**2 / (2 * config.degradation.sigma**2))
  k2 = np.outer(g, g) / np.outer(g, g).sum()
  x = np.pad(np.asarray(hr, np.float64), ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)),
             mode="reflect")
  p = hr.shape[1]
  blurred = sum(k2[i, j] * x[:, i:i + p, j:j + p] for i in range(k) for j in range(k))
  np.testing.assert_allclose(lr, blurred[:, ::2, ::2], atol=1e-5)
  config.degradation.noise_sigma = 0.05
  noisy = supervised.synthesize_lr(hr, config, jax.random.PRNGKey(3))
  assert 0.04 < float(jnp.std(noisy - lr)) < 0.06


def _np_charbonnier(a, b, eps=1e-3):
  return np.mean(np.sqrt((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2 + eps**2))


def test_multilevel_loss_uses_each_levels_bicubic_target():
  config = get_config("lapsrn", "scale=8,runlocal")  # Three levels: x2, x4, x8.
  config.data.patch_size = 32
  batch = hr_batch(config, batch=2)
  state = supervised.init(config, jax.random.PRNGKey(0), batch)
  hr = np.asarray(batch["image"], np.float32) / 255.0
  lr = supervised.synthesize_lr(jnp.asarray(hr), config)
  levels = state.apply_fn({"params": state.params}, lr)
  assert [o.shape[1] for o in levels] == [8, 16, 32]
  total, terms = supervised.compute_loss(levels, jnp.asarray(hr),
                                         supervised.losses.parse_loss(config.loss), 8)
  # Independent: each level's target made directly from HR (x2 level = HR / 4, x4 = HR / 2).
  targets = [imresize(hr, 0.25, quantize=True), imresize(hr, 0.5, quantize=True), hr]
  expected = [_np_charbonnier(o, t) for o, t in zip(levels, targets)]
  for tag, e in zip(["x2", "x4", "x8"], expected):
    np.testing.assert_allclose(float(terms[f"charbonnier_{tag}"]), e, rtol=1e-5)
  np.testing.assert_allclose(float(total), sum(expected), rtol=1e-5)

  # The train step optimises exactly that sum.
  step = jit_step(config)
  _, metrics = step(state, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(metrics["loss"]), sum(expected), rtol=1e-4)


@pytest.mark.parametrize("spec,expected", [
    ("1*L1+0.001*TV", 1.0), ("0.5*mse+2*L1", 2.5), ("1e+1*L1+L2", 11.0), ("Charbonnier", 1.0)])
def test_parse_loss_weighted_sums(spec, expected):
  # pred - target = 1 everywhere: L1 = L2 = 1, TV = 0, Charbonnier = sqrt(1 + 1e-6).
  total, _ = supervised.losses.parse_loss(spec)(jnp.ones((1, 4, 4, 3)), jnp.zeros((1, 4, 4, 3)))
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_weighted_loss_string_terms():
  config = get_config("postup", "runlocal")
  assert config.loss == "1*L1+0.001*TV"
  batch = hr_batch(config)
  state = supervised.init(config, jax.random.PRNGKey(0), batch)
  _, m = jit_step(config)(state, batch, jax.random.PRNGKey(0))
  np.testing.assert_allclose(float(m["loss"]), float(m["l1"]) + 0.001 * float(m["tv"]),
                             rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# EMA, mixed precision, checkpoints.
# ------------------------------------------------------------------------------------------------


def test_ema_follows_the_formula_and_is_used_by_predict():
  config = get_config("espcn", "scale=2,runlocal")
  config.ema_decay = 0.9
  config.optim.lr = 1e-2
  batch = hr_batch(config)
  state = supervised.init(config, jax.random.PRNGKey(0), batch)
  flat = lambda t: [np.asarray(x, np.float64) for x in jax.tree.leaves(t)]
  ema = flat(state.params)
  for a, b in zip(ema, flat(state.ema_params)):
    np.testing.assert_array_equal(a, b)
  step = jit_step(config)
  for i in range(3):
    state, _ = step(state, batch, jax.random.PRNGKey(i))
    d = min(0.9, (1 + i) / (10 + i))  # TF's EMA warm-up at step i
    ema = [d * e + (1 - d) * p for e, p in zip(ema, flat(state.params))]
  for a, b in zip(ema, flat(state.ema_params)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  assert max(np.max(np.abs(a - b)) for a, b in zip(ema, flat(state.params))) > 1e-4
  lr = jnp.asarray(np.random.default_rng(0).random((1, 6, 6, 3)), jnp.float32)
  # predict reads what inference_fields names: the EMA weights.
  variables = methods.inference_variables(supervised, config, state)
  assert variables.keys() == {"params"}
  with_ema = supervised.predict(variables, lr, config)
  np.testing.assert_allclose(
      with_ema, state.apply_fn({"params": state.ema_params}, lr), atol=1e-6)
  assert float(jnp.max(jnp.abs(with_ema - state.apply_fn({"params": state.params}, lr)))) > 1e-6


def test_bfloat16_step_close_to_float32():
  c32 = get_config("edsr", "scale=2,runlocal")
  c16 = get_config("edsr", "scale=2,runlocal")
  c16.model.dtype = "bfloat16"
  batch = hr_batch(c32)
  s32 = supervised.init(c32, jax.random.PRNGKey(0), batch)
  s16 = supervised.init(c16, jax.random.PRNGKey(0), batch)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s16.params))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s16.opt_state)
             if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating))
  n32, m32 = jit_step(c32)(s32, batch, jax.random.PRNGKey(0))
  n16, m16 = jit_step(c16)(s16, batch, jax.random.PRNGKey(0))
  assert abs(float(m16["loss"]) - float(m32["loss"])) < 0.03 * float(m32["loss"])
  np.testing.assert_allclose(float(m16["grad_norm"]), float(m32["grad_norm"]), rtol=0.05)
  # Adam's first step moves every weight by about lr * sign(grad), so "close" means: the same
  # direction for nearly all weights (bf16 may flip the sign of a few near-zero gradients).
  u32 = np.concatenate([np.ravel(n - o) for n, o in
                        zip(jax.tree.leaves(n32.params), jax.tree.leaves(s32.params))])
  u16 = np.concatenate([np.ravel(n - o) for n, o in
                        zip(jax.tree.leaves(n16.params), jax.tree.leaves(s16.params))])
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(n16.params))
  assert np.max(np.abs(u16 - u32)) <= 2.5 * c32.optim.lr
  assert np.mean(np.sign(u16) == np.sign(u32)) > 0.9


def test_state_with_ema_and_batch_stats_saves_and_restores(tmp_path):
  config = get_config("srresnet", "runlocal")
  config.ema_decay = 0.99
  batch = hr_batch(config)
  state = supervised.init(config, jax.random.PRNGKey(0), batch)
  state, _ = jit_step(config)(state, batch, jax.random.PRNGKey(0))
  with ocp.CheckpointManager(tmp_path / "ckpt", item_handlers=ocp.StandardCheckpointHandler()
                             ) as mngr:
    mngr.save(1, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    fresh = supervised.init(config, jax.random.PRNGKey(1), batch)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, fresh)
    restored = mngr.restore(1, args=ocp.args.StandardRestore(abstract))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(restored.step) == 1 and restored.ema_params is not None


# ------------------------------------------------------------------------------------------------
# Errors.
# ------------------------------------------------------------------------------------------------


def test_bad_patch_size_is_reported():
  config = get_config("edsr", "scale=3,runlocal")
  with pytest.raises(ValueError, match=r"patch_size=25 .*divisible by config.scale=3"):
    supervised.init(config, jax.random.PRNGKey(0), {"image": np.zeros((2, 25, 25, 3), np.uint8)})


def test_unknown_loss_term_is_named():
  config = get_config("edsr", "runlocal")
  config.loss = "1*L1+0.1*Perceptual"
  with pytest.raises(ValueError, match="Perceptual"):
    supervised.init(config, jax.random.PRNGKey(0), hr_batch(config))


def test_dssim_on_too_small_levels_is_reported():
  config = get_config("lapres", "scale=8,runlocal")
  config.data.patch_size = 32  # LR 4 px: the x2 level is 8 px, below SSIM's 11x11 window.
  with pytest.raises(ValueError, match="DSSIM"):
    supervised.init(config, jax.random.PRNGKey(0), hr_batch(config))


# ------------------------------------------------------------------------------------------------
# End to end through the engine.
# ------------------------------------------------------------------------------------------------


def _photo(h, w, seed):
  rng = np.random.default_rng(seed)
  small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3))
  big = np.kron(small, np.ones((8, 8, 1)))[:h, :w]
  return np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)


def test_train_and_evaluate_espcn_runlocal(tmp_path):
  train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
  train_dir.mkdir()
  eval_dir.mkdir()
  for i in range(3):
    Image.fromarray(_photo(40, 48, i)).save(train_dir / f"t{i}.png")
  Image.fromarray(_photo(30, 36, 9)).save(eval_dir / "e.png")
  config = get_config("espcn", "runlocal")
  config.data.train = f"folder:{train_dir}"
  config.data.backend = "numpy"
  config.eval.sets = f"tiny={eval_dir}"
  workdir = tmp_path / "work"
  state = train.train_and_evaluate(config, str(workdir))
  assert int(jax.device_get(state.step)) == config.total_steps
  rows = writers.read_metrics(str(workdir))
  s = config.scale
  evals = [r for r in rows if f"eval/tiny_x{s}/psnr_y" in r]
  assert evals and np.isfinite(evals[-1][f"eval/tiny_x{s}/psnr_y"])
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
  assert json.loads((workdir / "config.json").read_text())["method"] == "supervised"
  # Resuming a finished run restores the state and does nothing more.
  again = train.train_and_evaluate(config, str(workdir))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
