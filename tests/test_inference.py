"""Inference tools on a real (tiny, 6-step) training workdir: jsr.inference, jsr.predict,
jsr.interpolate and jsr.evaluate --workdir.

References are independent of the code under test: the untiled model call, a loop over the eight
transforms written with numpy, numpy means of two parameter sets, PIL's view of the written files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from configs import selfsup as selfsup_config
from jsr import inference
from jsr import interpolate
from jsr import train
from jsr.methods import selfsup
from jsr.ops.resize import imresize

jax.config.update("jax_disable_most_optimizations", True)  # Tiny models: compile time dominates.

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
# The tiny selfsup net: 5 stacked 3x3 convs at LR (radius 5) beside a bicubic skip (radius 2).
RF_RADIUS = 5


def _photo(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
  rng = np.random.default_rng(seed)
  small = rng.uniform(0, 255, (h // 6 + 1, w // 6 + 1, channels))
  big = np.kron(small, np.ones((6, 6, 1)))[:h, :w]
  return np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(workdir, config) of one real runlocal training run on images written here."""
  root = tmp_path_factory.mktemp("inference")
  train_dir = root / "train"
  train_dir.mkdir()
  for i in range(3):
    Image.fromarray(_photo(40, 48, i)).save(train_dir / f"t{i}.png")
  config = selfsup_config.get_config("runlocal")
  config.data.train = f"folder:{train_dir}"
  config.data.backend = "numpy"
  config.eval.sets = ""
  workdir = root / "work"
  train.train_and_evaluate(config, str(workdir))
  return workdir, config


def _lr(h, w, c=3, seed=0):
  return np.random.default_rng(seed).random((1, h, w, c)).astype(np.float32)


def _fresh_state(config):
  dummy = {"image": np.zeros((1, config.data.patch_size, config.data.patch_size, 3), np.uint8)}
  return selfsup.init(config, jax.random.key(0), dummy)


def _perturbed(config, seed=1):
  """A state whose net is far from bicubic and not equivariant: random tail, larger weights."""
  state = _fresh_state(config)
  leaves, treedef = jax.tree.flatten(state.params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return state.replace(params=jax.tree.unflatten(treedef, noisy))


def _predict(config):
  """predict on a whole selfsup state (the tests perturb states; predict reads its params)."""
  return lambda state, lr: selfsup.predict({"params": state.params}, lr, config)


def _run_cli(*args, timeout=240):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=ENV)


# ------------------------------------------------------------------------------------------------
# jsr.inference
# ------------------------------------------------------------------------------------------------


def test_load_sr_fn_shapes_gray_and_scale_check(run):
  workdir, config = run
  sr_fn, name = inference.load_sr_fn(str(workdir), config.scale)
  assert f"step {config.total_steps}" in name and "selfsup" in name
  chex.assert_shape(sr_fn(_lr(13, 17)), (1, 26, 34, 3))
  gray = _lr(13, 17, 1)
  sr_gray = sr_fn(gray)
  chex.assert_shape(sr_gray, (1, 26, 34, 1))
  # Gray = the RGB model on three equal channels, averaged.
  sr_rgb = sr_fn(np.repeat(gray, 3, axis=-1))
  np.testing.assert_allclose(sr_gray[..., 0], np.mean(sr_rgb, axis=-1), atol=1e-6)
  # The loaded checkpoint is the trained one, not a fresh init (which is exactly bicubic).
  assert float(jnp.max(jnp.abs(sr_rgb - imresize(np.repeat(gray, 3, -1), 2)))) > 1e-5
  with pytest.raises(ValueError, match=f"{workdir}.*x2 model; asked for x3"):
    inference.load_sr_fn(str(workdir), 3)


def test_load_errors_name_the_workdir(run, tmp_path):
  workdir, _ = run
  with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'} does not exist"):
    inference.load_variables(str(tmp_path / "nope"))
  bare = tmp_path / "bare"
  bare.mkdir()
  (bare / "config.json").write_text((workdir / "config.json").read_text())
  with pytest.raises(FileNotFoundError, match=f"{bare} holds no checkpoint"):
    inference.load_variables(str(bare))
  assert not (bare / "checkpoints").exists()  # Loading never creates anything.
  # A checkpoint of another variant than config.json says.
  other = tmp_path / "other"
  other.mkdir()
  cfg = json.loads((workdir / "config.json").read_text())
  cfg["model"]["variant"] = "small"
  (other / "config.json").write_text(json.dumps(cfg))
  os.symlink(workdir / "checkpoints", other / "checkpoints")
  with pytest.raises(inference.CheckpointMismatchError,
                     match=rf"{other} \(step \d+\) does not fit[\s\S]*kernel: checkpoint"):
    inference.load_variables(str(other))


def test_tiled_equals_untiled_on_odd_image(run):
  workdir, config = run
  lr = _lr(37, 45, seed=3)
  overlap = 4 * RF_RADIUS + 4
  # The trained workdir's model, through load_sr_fn.
  plain, _ = inference.load_sr_fn(str(workdir), 2)
  tiled, _ = inference.load_sr_fn(str(workdir), 2, tile=32, tile_overlap=overlap, tile_batch=4)
  ref, out = np.asarray(plain(lr)), tiled(lr)
  assert tiled.info["tiles"] > 1 and tiled.info["tile_shape"] == (32, 32)
  chex.assert_shape(out, (1, 74, 90, 3))
  np.testing.assert_allclose(out, ref, atol=1e-4)
  # A net far from bicubic makes the check sharp: tiles of a batch padded to a fixed shape, one
  # compilation, and gray input.
  state, predict = _perturbed(config), _predict(config)
  plain = inference.make_sr_fn(predict, state, 2)
  for lr_i in (lr, lr[..., :1]):
    ref = np.asarray(plain(lr_i))
    tiled = inference.make_sr_fn(predict, state, 2, tile=30, tile_overlap=overlap, tile_batch=5)
    out = tiled(lr_i)
    assert tiled.info["tiles"] == 12  # 3 x 4 tiles, in batches of 5, the last one padded.
    np.testing.assert_allclose(out, ref, atol=1e-4)
  # Any image of at least one tile in each direction reuses the one compiled tile call.
  tiled(_lr(61, 33, 1, seed=5))  # (Gray, as the last call: channels are part of the shape.)
  assert tiled.tile_compilations() == 1
  # The same tiling with too little overlap differs: the check above can fail.
  narrow = inference.make_sr_fn(predict, state, 2, tile=30, tile_overlap=8)(lr)
  assert np.max(np.abs(narrow - np.asarray(plain(lr)))) > 1e-3


def test_tile_geometry():
  assert inference.tile_starts(37, 24, 20) == [0, 4, 8, 12, 13]
  assert inference.tile_starts(20, 24, 8) == [0]
  # Overlap 16 at x2: zero within 4 LR pixels (8 output pixels) of an inner edge, a ramp over
  # the next 8 LR pixels, one in the middle; symmetric.
  w = inference.tile_weights(8, 40, 100, 16, 2)
  assert np.all(w[:8] == 0) and np.all(w[-8:] == 0) and np.all(w[24:56] == 1)
  assert np.all(np.diff(w[:24]) >= 0) and 0 < w[8] < w[23] < 1
  np.testing.assert_allclose(w, w[::-1])
  # Two neighbours overlapping by exactly `overlap` sum to one across the overlap.
  a, b = inference.tile_weights(0, 40, 100, 16, 2), inference.tile_weights(24, 40, 100, 16, 2)
  np.testing.assert_allclose(a[48:] + b[:32], 1.0, atol=1e-6)
  assert np.all(inference.tile_weights(0, 24, 24, 16, 2) == 1)  # Touches both borders.


def _ensemble_reference(f, x):
  """The mean of g^-1(f(g(x))) over the 8 dihedral maps, one image at a time with numpy."""
  x = np.asarray(x)[0]
  outs = []
  for k in range(4):
    for flip in (False, True):
      g = np.rot90(x, k)
      g = g[:, ::-1] if flip else g
      y = np.asarray(f(np.ascontiguousarray(g)[None]))[0]
      y = y[:, ::-1] if flip else y
      outs.append(np.rot90(y, -k))
  return np.mean(outs, axis=0)[None]


def test_self_ensemble(run):
  _, config = run
  predict = _predict(config)
  # The untrained net is exactly MATLAB bicubic, which commutes with flips and transposes: the
  # ensemble changes nothing (non-square: two calls of 4; square: one call of 8).
  fresh = _fresh_state(config)
  plain = inference.make_sr_fn(predict, fresh, 2)
  ens = inference.make_sr_fn(predict, fresh, 2, self_ensemble=True)
  for lr in (_lr(11, 16), _lr(12, 12)):
    np.testing.assert_allclose(ens(lr), plain(lr), atol=1e-5)
    np.testing.assert_allclose(ens(lr), imresize(lr, 2), atol=1e-5)
  # A net that is not equivariant: the ensemble differs from one pass and equals the loop.
  state = _perturbed(config)
  plain = inference.make_sr_fn(predict, state, 2)
  ens = inference.make_sr_fn(predict, state, 2, self_ensemble=True)
  for lr in (_lr(11, 16, seed=1), _lr(12, 12, seed=2)):
    out = np.asarray(ens(lr))
    assert np.max(np.abs(out - np.asarray(plain(lr)))) > 1e-2
    np.testing.assert_allclose(out, _ensemble_reference(plain, lr), atol=1e-5)
  # Ensemble and tiling compose: each tile is ensembled.
  lr = _lr(30, 27, seed=4)
  tiled = inference.make_sr_fn(predict, state, 2, self_ensemble=True, tile=24,
                               tile_overlap=4 * RF_RADIUS + 2)
  np.testing.assert_allclose(tiled(lr), ens(lr), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# jsr.interpolate
# ------------------------------------------------------------------------------------------------


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def _save_workdir(path: Path, config_json: str, state) -> None:
  path.mkdir()
  (path / "config.json").write_text(config_json)
  with ocp.CheckpointManager(path / "checkpoints", item_handlers=ocp.PyTreeCheckpointHandler(),
                             options=ocp.CheckpointManagerOptions(create=True)) as m:
    m.save(int(state.step), args=ocp.args.PyTreeSave(state))
    m.wait_until_finished()


@pytest.fixture(scope="module")
def run_b(run, tmp_path_factory):
  """A second run of the same model: A's checkpoint with other weights."""
  workdir, _ = run
  _, _, state, _ = inference.load_state(str(workdir))
  leaves, treedef = jax.tree.flatten(state.params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  other = jax.tree.unflatten(treedef, [p + 0.01 * jax.random.normal(k, p.shape)
                                       for p, k in zip(leaves, keys)])
  path = tmp_path_factory.mktemp("b") / "b"
  _save_workdir(path, (workdir / "config.json").read_text(), state.replace(params=other))
  return path


def test_interpolation_endpoints_and_midpoint(run, run_b, tmp_path):
  a, _ = run
  _, _, sa, _ = inference.load_state(str(a))
  _, _, sb, _ = inference.load_state(str(run_b))
  pa, pb = _flat(sa.params), _flat(sb.params)
  assert any(np.any(pa[k] != pb[k]) for k in pa)
  for alpha, expect in ((0.0, pa), (1.0, pb), (0.5, {k: (pa[k] + pb[k]) / 2 for k in pa})):
    out = tmp_path / f"mix_{alpha}"
    interpolate.interpolate(str(a), str(run_b), alpha, str(out))
    _, _, s, _ = inference.load_state(str(out))  # What predict/evaluate will load.
    got = _flat(s.params)
    for k in pa:
      if alpha in (0.0, 1.0):
        np.testing.assert_array_equal(got[k], expect[k], err_msg=k)  # Exactly the input.
      else:
        np.testing.assert_allclose(got[k], expect[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # Optimizer state and step come from A.
    for k, v in _flat(sa.opt_state).items():
      np.testing.assert_array_equal(_flat(s.opt_state)[k], v)
    assert int(s.step) == int(sa.step)
    assert json.loads((out / "interpolation.json").read_text())["alpha"] == alpha
  with pytest.raises(FileExistsError, match="not empty"):
    interpolate.interpolate(str(a), str(run_b), 0.5, str(tmp_path / "mix_0.5"))


def test_interpolating_different_models_is_an_error(run, tmp_path):
  a, config = run
  # Another variant: the configs differ.
  small = config.copy_and_resolve_references()
  small.model.variant = "small"
  _save_workdir(tmp_path / "small", small.to_json_best_effort(), _fresh_state(small))
  proc = _run_cli("jsr.interpolate", f"--a={a}", f"--b={tmp_path / 'small'}",
                  f"--output={tmp_path / 'out'}")
  assert proc.returncode == 2, proc.stderr
  assert "different models: config.model" in proc.stderr and str(a) in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "out").exists()
  # Same config, different parameter trees (caught even if a config hides the difference).
  _, _, sa, _ = inference.load_state(str(a))
  with pytest.raises(ValueError, match="different params trees"):
    interpolate.check_compatible("A", config, "B", config, {"params": sa.params},
                                 {"params": _fresh_state(small).params})


def test_supervised_run_with_ema_and_batch_norm(tmp_path):
  """Another method through the same tools: SRResNet (BatchNorm) with EMA weights, x4."""
  from configs import srresnet as srresnet_config
  train_dir = tmp_path / "train"
  train_dir.mkdir()
  for i in range(2):
    Image.fromarray(_photo(40, 44, i)).save(train_dir / f"t{i}.png")
  config = srresnet_config.get_config("runlocal")
  config.data.train, config.data.backend, config.eval.sets = f"folder:{train_dir}", "numpy", ""
  config.ema_decay = 0.5
  a = tmp_path / "a"
  train.train_and_evaluate(config, str(a))
  sr_fn, name = inference.load_sr_fn(str(a), 4, self_ensemble=True, tile=8, tile_overlap=4)
  chex.assert_shape(sr_fn(_lr(9, 13)), (1, 36, 52, 3))
  assert sr_fn.info["tiles"] > 1 and "supervised" in name
  _, _, sa, _ = inference.load_state(str(a))
  assert sa.ema_params is not None and sa.batch_stats is not None
  perturb = lambda t, seed: jax.tree.map(lambda x: x + 0.01 * (seed + 1), t)
  b = tmp_path / "b"
  _save_workdir(b, (a / "config.json").read_text(),
                sa.replace(params=perturb(sa.params, 0), ema_params=perturb(sa.ema_params, 1),
                           batch_stats=perturb(sa.batch_stats, 2)))
  _, _, sb, _ = inference.load_state(str(b))
  interpolate.interpolate(str(a), str(b), 0.5, str(tmp_path / "mix"))
  _, _, s, _ = inference.load_state(str(tmp_path / "mix"))
  for field in ("params", "ema_params", "batch_stats"):
    fa, fb, got = (_flat(getattr(x, field)) for x in (sa, sb, s))
    for k in fa:
      np.testing.assert_allclose(got[k], (fa[k] + fb[k]) / 2, rtol=1e-6, atol=1e-7,
                                 err_msg=f"{field}{k}")


# ------------------------------------------------------------------------------------------------
# Command lines: jsr.predict, jsr.evaluate --workdir.
# ------------------------------------------------------------------------------------------------


def test_predict_cli_keeps_channels_alpha_and_bit_depth(run, tmp_path):
  workdir, _ = run
  inp, out = tmp_path / "in", tmp_path / "out"
  (inp / "sub").mkdir(parents=True)
  rgb = _photo(15, 21, 1)
  Image.fromarray(rgb).save(inp / "rgb.png")
  Image.fromarray(_photo(13, 17, 2, 1)[..., 0]).save(inp / "sub" / "gray.png")
  rgba = np.concatenate([_photo(11, 9, 3), _photo(11, 9, 4, 1)], axis=-1)
  Image.fromarray(rgba).save(inp / "rgba.png")
  g16 = (np.random.default_rng(5).random((9, 14)) * 65535).astype(np.uint16)
  Image.fromarray(g16).save(inp / "gray16.png")
  proc = _run_cli("jsr.predict", f"--workdir={workdir}", f"--input={inp}", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  assert "wrote 4 image(s)" in proc.stderr
  with Image.open(out / "rgb.png") as im:
    assert im.mode == "RGB" and im.size == (42, 30)
    got = np.asarray(im)
  with Image.open(out / "sub" / "gray.png") as im:
    assert im.mode == "L" and im.size == (34, 26)
  with Image.open(out / "rgba.png") as im:
    assert im.mode == "RGBA" and im.size == (18, 22)
    alpha = np.asarray(im)[..., 3] / 255.0
  with Image.open(out / "gray16.png") as im:
    assert im.mode.startswith("I") and im.size == (28, 18)
    assert len(np.unique(np.asarray(im))) > 256  # Really 16-bit, not 8-bit scaled up.
  # Pixels: the loaded model's output, and MATLAB bicubic of the alpha channel.
  sr_fn, _ = inference.load_sr_fn(str(workdir))
  want = np.round(np.clip(np.asarray(sr_fn(rgb[None] / np.float32(255)))[0], 0, 1) * 255)
  assert np.max(np.abs(got - want)) <= 1
  want_alpha = np.clip(imresize(rgba[None, ..., 3:] / np.float32(255), 2)[0, ..., 0], 0, 1)
  assert np.max(np.abs(alpha - want_alpha)) <= 1 / 255 + 1e-6


@pytest.mark.parametrize("case", ["corrupt", "missing_workdir", "no_checkpoint", "empty_folder"])
def test_predict_bad_inputs_fail_with_a_message(run, tmp_path, case):
  workdir, _ = run
  inp = tmp_path / "in"
  inp.mkdir()
  Image.fromarray(_photo(10, 12, 0)).save(inp / "good.png")
  named = None
  if case == "corrupt":
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    named = inp / "broken.png"
  elif case == "missing_workdir":
    workdir = named = tmp_path / "no_such_run"
  elif case == "no_checkpoint":
    named = tmp_path / "bare"
    named.mkdir()
    (named / "config.json").write_text((workdir / "config.json").read_text())
    workdir = named
  else:
    (inp / "good.png").unlink()
    named = inp
  proc = _run_cli("jsr.predict", f"--workdir={workdir}", f"--input={inp}",
                  f"--output={tmp_path / 'out'}")
  assert proc.returncode != 0
  assert str(named) in proc.stderr and proc.stderr.count("error: ") == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  if case == "corrupt":  # --skip_bad: a warning, and the good file is written.
    proc = _run_cli("jsr.predict", f"--workdir={workdir}", f"--input={inp}",
                    f"--output={tmp_path / 'out'}", "--skip_bad")
    assert proc.returncode == 0 and "warning: skipped" in proc.stderr and str(named) in proc.stderr
    assert (tmp_path / "out" / "good.png").exists()


def test_evaluate_cli_with_workdir(run, tmp_path):
  workdir, _ = run
  data = tmp_path / "hr"
  data.mkdir()
  Image.fromarray(_photo(36, 40, 8)).save(data / "a.png")
  proc = _run_cli("jsr.evaluate", f"--workdir={workdir}", f"--data={data}", "--scale=2",
                  "--self_ensemble", "--tile=12", "--tile_overlap=8",
                  f"--output={tmp_path / 'r.json'}")
  assert proc.returncode == 0, proc.stderr
  result = json.loads((tmp_path / "r.json").read_text())
  assert "self-ensemble" in result["method"] and result["num_images"] == 1
  assert result["mean"]["psnr_y"] > 20
  # The wrong scale, and a corrupt HR file: clear messages, no traceback.
  proc = _run_cli("jsr.evaluate", f"--workdir={workdir}", f"--data={data}", "--scale=3")
  assert proc.returncode == 2 and f"{workdir} holds a x2 model" in proc.stderr
  assert "Traceback" not in proc.stderr
  (data / "bad.png").write_bytes(b"garbage")
  proc = _run_cli("jsr.evaluate", f"--workdir={workdir}", f"--data={data}", "--scale=2")
  assert proc.returncode == 2 and str(data / "bad.png") in proc.stderr
  assert "Traceback" not in proc.stderr
