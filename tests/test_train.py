"""The training engine (jsr/train.py, jsr/main.py) on the selfsup `runlocal` config.

Real runs of a few steps on tiny images the tests make: checkpoints, resume == straight through,
4 devices == 1 device, NaN guard, foreign checkpoints, unknown config keys.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import chex
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from jsr import checkpoints
from jsr import data as data_lib
from jsr import mesh as mesh_lib
from jsr import train
from jsr import workdir as workdir_lib
from jsr import writers

jax.config.update("jax_disable_most_optimizations", True)  # Tiny models: compile time dominates.

ROOT = Path(__file__).resolve().parents[1]
TOTAL_STEPS = 4


def _smooth_photo(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
  # Low-frequency content, so SR has something to learn and PSNR values are meaningful.
  rng = np.random.default_rng(seed)
  small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, channels))
  big = np.kron(small, np.ones((8, 8, 1)))[:h, :w]
  return np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)


def make_dirs(root: Path) -> tuple[Path, Path]:
  train_dir, eval_dir = root / "train", root / "eval"
  train_dir.mkdir(parents=True, exist_ok=True)
  eval_dir.mkdir(parents=True, exist_ok=True)
  for i in range(3):
    Image.fromarray(_smooth_photo(40, 48, i)).save(train_dir / f"t{i}.png")
  Image.fromarray(_smooth_photo(32, 36, 10)).save(eval_dir / "color.png")
  Image.fromarray(_smooth_photo(30, 34, 11, 1)[..., 0]).save(eval_dir / "gray.png")
  return train_dir, eval_dir


def make_config(train_dir, eval_spec: str = "", **overrides) -> ml_collections.ConfigDict:
  """configs/selfsup.py:runlocal on the test images, 4 steps; overrides as "a.b": value."""
  spec = importlib.util.spec_from_file_location("selfsup_config", ROOT / "configs/selfsup.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("runlocal")
  config.data.train = f"folder:{train_dir}"
  config.eval.sets = eval_spec
  config.total_steps = TOTAL_STEPS
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = TOTAL_STEPS
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def flat_params(state) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def checkpoint_steps(workdir: Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """One uninterrupted 4-step run with evaluation: (workdir, final state, config, dirs)."""
  root = tmp_path_factory.mktemp("straight")
  train_dir, eval_dir = make_dirs(root)
  config = make_config(train_dir, f"tiny={eval_dir}")
  state = train.train_and_evaluate(config, str(root / "work"))
  return root / "work", state, config, (train_dir, eval_dir)


def test_runlocal_trains_checkpoints_and_evaluates(straight):
  workdir, state, config, _ = straight
  assert int(state.step) == TOTAL_STEPS
  assert checkpoint_steps(workdir) == [2, 4]
  rows = writers.read_metrics(str(workdir))
  train_rows = [r for r in rows if "train/loss" in r]
  assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
  for r in train_rows:
    assert np.isfinite(r["train/loss"]) and r["train/loss"] > 0
    assert {"train/l2", "train/pair_l2", "train/learning_rate"} <= set(r)
  # Cosine schedule from config.optim.lr, logged for the step's own update.
  assert train_rows[0]["train/learning_rate"] == pytest.approx(config.optim.lr)
  assert train_rows[-1]["train/learning_rate"] < config.optim.lr
  evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/")}
  assert set(evals) == {f"eval/tiny_x2/{m}" for m in
                        ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")}
  assert 20 < evals["eval/tiny_x2/bicubic_psnr_y"] < 60
  assert 15 < evals["eval/tiny_x2/psnr_y"] < 60  # 4 steps: near bicubic, not garbage.
  assert 0 < evals["eval/tiny_x2/ssim_y"] <= 1
  grids = sorted(p.name for p in (workdir / "images" / f"step_{TOTAL_STEPS}").iterdir())
  assert grids == ["tiny_color.png", "tiny_gray.png"]
  grid = np.asarray(Image.open(workdir / "images" / f"step_{TOTAL_STEPS}" / "tiny_color.png"))
  chex.assert_shape(grid, (32, 4 * 32 + 3 * 4, 3))  # LR | bicubic | output | HR crops.
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["method"] == "selfsup" and saved["total_steps"] == TOTAL_STEPS
  # TensorBoard events come from clu's writer, which needs TensorFlow (the `tf` extra).
  has_tf = importlib.util.find_spec("tensorflow") is not None
  assert bool(list(workdir.glob("events.out.tfevents.*"))) == has_tf


def test_stop_and_resume_equals_straight_through(straight, tmp_path, monkeypatch):
  _, straight_state, _, (train_dir, _) = straight
  config = make_config(train_dir)
  workdir = tmp_path / "work"
  real = data_lib.get_train_iterator
  starts = []

  def preempted_after_3(config, start_step, *args, **kwargs):
    starts.append(start_step)
    for i, batch in enumerate(real(config, start_step, *args, **kwargs)):
      if i == 3:
        raise RuntimeError("preempted")
      yield batch

  monkeypatch.setattr(data_lib, "get_train_iterator", preempted_after_3)
  with pytest.raises(RuntimeError, match="preempted"):
    train.train_and_evaluate(config, str(workdir))
  assert checkpoint_steps(workdir) == [2]  # Step 3 ran but was not saved.

  def recording(config, start_step, *args, **kwargs):
    starts.append(start_step)
    return real(config, start_step, *args, **kwargs)

  monkeypatch.setattr(data_lib, "get_train_iterator", recording)
  state = train.train_and_evaluate(config, str(workdir))
  assert starts == [0, 2]  # The input resumes at the checkpoint's step.
  assert int(state.step) == TOTAL_STEPS and checkpoint_steps(workdir) == [2, 4]
  resumed_rows = [r["step"] for r in writers.read_metrics(str(workdir)) if "train/loss" in r]
  # Steps 1-3 ran in the first run (3 unsaved), then 3-4 again after resuming at 2.
  assert resumed_rows == [1, 2, 3, 3, 4]
  want, got = flat_params(straight_state), flat_params(state)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  # A finished run started again does nothing and returns the final state.
  again = train.train_and_evaluate(config, str(workdir))
  assert int(again.step) == TOTAL_STEPS


_MULTI_DEVICE_SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
import test_train
from jsr import mesh as mesh_lib
from jsr import train
assert jax.device_count() == 4, jax.devices()
config = test_train.make_config(sys.argv[2], "tiny=" + sys.argv[4])
state = train.train_and_evaluate(config, sys.argv[3])
np.savez(sys.argv[3] + "/params.npz", **test_train.flat_params(state))
mesh = mesh_lib.make_mesh()
rows = mesh_lib.host_rows(mesh, 4)
batch = mesh_lib.shard_batch({"image": np.arange(4, dtype=np.uint8)[:, None, None, None]
                              * np.ones((4, 8, 8, 3), np.uint8)}, mesh, 4, rows)
print("SHARDS", [tuple(s.data.shape) for s in batch["image"].addressable_shards])
print("ROWS", sorted(int(s.data[0, 0, 0, 0]) for s in batch["image"].addressable_shards))
try:
  mesh_lib.check_batch_size(6)
except ValueError as e:
  print("BATCH_ERROR", e)
"""


def test_four_devices_match_one(straight, tmp_path):
  _, straight_state, _, (train_dir, eval_dir) = straight
  workdir = tmp_path / "work4"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-c", _MULTI_DEVICE_SCRIPT, str(ROOT / "tests"), str(train_dir),
       str(workdir), str(eval_dir)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "SHARDS [(1, 8, 8, 3), (1, 8, 8, 3), (1, 8, 8, 3), (1, 8, 8, 3)]" in proc.stdout
  assert "ROWS [0, 1, 2, 3]" in proc.stdout  # Each device holds its own row.
  assert "data.batch_size=6 must be divisible by the number of devices (4" in proc.stdout
  four_rows, one_rows = writers.read_metrics(str(workdir)), writers.read_metrics(str(straight[0]))
  four = [r["train/loss"] for r in four_rows if "train/loss" in r]
  one = [r["train/loss"] for r in one_rows if "train/loss" in r]
  assert len(four) == len(one) == TOTAL_STEPS
  np.testing.assert_allclose(four, one, rtol=1e-4)
  psnr = lambda rows: [r["eval/tiny_x2/psnr_y"] for r in rows if "eval/tiny_x2/psnr_y" in r]
  np.testing.assert_allclose(psnr(four_rows), psnr(one_rows), rtol=1e-4)
  got = np.load(workdir / "params.npz")
  for k, v in flat_params(straight_state).items():
    np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def test_unknown_config_key_is_an_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jsr.main", "--config=configs/selfsup.py:runlocal",
       "--config.data.patchsize=32", f"--workdir={tmp_path / 'w'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  assert "does not define: 'patchsize'" in proc.stderr
  assert 'Did you mean "patch_size"' in proc.stderr
  assert not (tmp_path / "w").exists()
  # Reading a key the config lacks fails too (the engine never uses .get with a default).
  config = make_config(tmp_path)
  with pytest.raises(AttributeError):
    _ = config.data.patchsize


def test_checkpoint_of_another_model_is_refused(straight, tmp_path):
  workdir, _, _, (train_dir, _) = straight
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  before = (copy / "config.json").read_text()
  config = make_config(train_dir, **{"model.variant": "small"})
  with pytest.raises(workdir_lib.ConfigChangedError, match="model.variant: 'tiny' -> 'small'"):
    train.train_and_evaluate(config, str(copy))
  # Allowed to change the config, it still cannot load another model's checkpoint.
  config.allow_config_change = True
  with pytest.raises(checkpoints.CheckpointMismatchError) as e:
    train.train_and_evaluate(config, str(copy))
  msg = str(e.value)
  assert str(copy) in msg and "different model" in msg
  # Names a parameter whose shape differs (tiny and small differ in width).
  assert re.search(r"\n  [\w/]+/kernel: checkpoint \(3, 3, \d+, \d+\) vs model \(3, 3, \d+, \d+\)",
                   msg), msg
  # Same params, different optimizer state (SGD without momentum keeps none).
  config = make_config(train_dir, **{"optim.name": "sgd", "optim.b1": 0.0,
                                     "allow_config_change": True})
  with pytest.raises(checkpoints.CheckpointMismatchError, match=str(copy)):
    train.train_and_evaluate(config, str(copy))
  assert checkpoint_steps(copy) == [2, 4]  # Nothing deleted or overwritten.
  assert (copy / "config.json").read_text() == before
  assert not list(copy.glob("config.*.json"))


def test_nan_stops_with_clear_error_and_keeps_last_good_checkpoint(straight, tmp_path,
                                                                    monkeypatch):
  _, _, _, (train_dir, _) = straight
  config = make_config(train_dir, checkpoint_every_steps=1)
  workdir = tmp_path / "work"
  real = data_lib.get_train_iterator

  def nan_at_step_3(config, start_step, *args, **kwargs):
    for i, batch in enumerate(real(config, start_step, *args, **kwargs)):
      if start_step + i + 1 == 3:  # The batch of step 3.
        batch = {"image": np.full(batch["image"].shape, np.nan, np.float32)}
      yield batch

  monkeypatch.setattr(data_lib, "get_train_iterator", nan_at_step_3)
  with pytest.raises(train.NonFiniteError, match=r"diverged at step 3: .*loss=nan") as e:
    train.train_and_evaluate(config, str(workdir))
  assert "last good checkpoint is kept" in str(e.value)
  assert checkpoint_steps(workdir) == [1, 2]
  assert [r["step"] for r in writers.read_metrics(str(workdir)) if "train/loss" in r] == [1, 2]
  manager = ocp.CheckpointManager(workdir / "checkpoints",
                                  item_handlers=ocp.PyTreeCheckpointHandler())
  restored = manager.restore(2)
  manager.close()
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(restored["params"]))


def test_optimizer_schedules_follow_their_formulas():
  from jsr import optim
  c = optim.default_config()
  c.lr, c.warmup_steps, c.schedule = 1e-3, 10, "cosine"
  s = optim.make_schedule(c, 110)
  # Linear warmup from 0, then 0.5 * lr * (1 + cos(pi * t / T)) over the remaining 100 steps.
  for step, want in [(0, 0.0), (5, 5e-4), (10, 1e-3), (60, 5e-4),
                     (85, 0.5e-3 * (1 + np.cos(0.75 * np.pi))), (110, 0.0)]:
    assert float(s(step)) == pytest.approx(want, abs=1e-9), step
  c.schedule, c.warmup_steps, c.decay_steps, c.decay_factor = "step", 0, 20, 0.5
  s = optim.make_schedule(c, 100)
  assert [float(s(t)) for t in (0, 19, 20, 45)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])
  c.schedule = "linear"
  with pytest.raises(ValueError, match="optim.schedule must be one of"):
    optim.make_schedule(c, 100)
  # Every optimizer moves a parameter against its gradient; clipping bounds the first SGD step.
  c.schedule, c.grad_clip_norm = "constant", 1.0
  for name in optim.OPTIMIZERS:
    c.name, c.b1, c.weight_decay = name, 0.0 if name == "sgd" else 0.9, 0.1
    tx = optim.make_optimizer(c, 100)
    params = {"w": np.ones(4, np.float32)}
    updates, _ = tx.update({"w": np.full(4, 100.0, np.float32)}, tx.init(params), params)
    assert np.all(np.asarray(updates["w"]) < 0), name
  # sgd: the gradient clipped to norm 1 (0.5 each), then + 0.1 * w (L2 after clipping, as
  # PyTorch's clip_grad_norm_ + SGD(weight_decay) do): 4 x 0.6 -> norm 1.2, times lr.
  assert float(np.linalg.norm(updates["w"])) == pytest.approx(1.2e-3, rel=1e-5)


def test_without_clu_writers_metrics_go_to_log_and_jsonl(tmp_path, monkeypatch):
  # The GPU machines have no TensorFlow, so clu.metric_writers cannot be imported there.
  monkeypatch.setattr(writers, "import_clu", lambda: None)
  writer = writers.make_writer(str(tmp_path))
  writer.write_scalars(3, {"train/loss": np.float32(0.25)})
  writer.write_images(3, {"x": np.zeros((1, 2, 2, 3))})  # Ignored, not an error.
  writer.flush()
  assert writers.read_metrics(str(tmp_path)) == [{"step": 3, "train/loss": 0.25}]
  progress = writers.make_progress(10, writer)
  with progress.timed("eval"):
    for step in range(1, 11):
      progress(step)


_BLOCK_TENSORFLOW = """
import runpy, sys
for name in ("tensorflow", "tensorflow_datasets", "tensorboard"):
  sys.modules[name] = None  # Absent, as on the GPU machines: import fails, find_spec is None.
sys.argv = ["jsr.main"] + sys.argv[1:]
try:
  runpy.run_module("jsr.main", run_name="__main__")
except SystemExit as e:
  if e.code:
    raise
print("imported:", sorted(m for m, v in sys.modules.items()
                         if v is not None and m.split(".")[0] in ("tensorflow", "tensorboard")))
"""


def test_trains_and_evaluates_without_tensorflow(tmp_path):
  """The GPU machines have no TensorFlow: jsr.main must train, checkpoint, evaluate and log there
  with the numpy input pipeline, and nothing on that path may import TensorFlow."""
  train_dir, eval_dir = make_dirs(tmp_path)
  workdir = tmp_path / "w"
  proc = subprocess.run(
      [sys.executable, "-c", _BLOCK_TENSORFLOW, "--config=configs/selfsup.py:runlocal",
       f"--workdir={workdir}", "--config.data.backend=numpy",
       f"--config.data.train=folder:{train_dir}", f"--config.eval.sets=tiny={eval_dir}",
       f"--config.total_steps={TOTAL_STEPS}", f"--config.eval_every_steps={TOTAL_STEPS}",
       "--config.checkpoint_every_steps=2", "--config.log_every_steps=1"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "imported: []" in proc.stdout, proc.stdout[-2000:]
  assert checkpoint_steps(workdir) == [2, 4]
  rows = writers.read_metrics(str(workdir))
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]
  assert any("eval/tiny_x2/psnr_y" in r for r in rows)
