"""The engine with a method it has never heard of: two networks, two optimizers, an EMA, frozen
pretrained parts (tests/two_net_method.py). Trains, resumes, predicts, interpolates and warm-starts
with no engine change; refuses a changed config; stops on a NaN in the state; per-step RNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from jsr import checkpoints
from jsr import data as data_lib
from jsr import inference
from jsr import interpolate
from jsr import mesh as mesh_lib
from jsr import methods
from jsr import train
from jsr import workdir as workdir_lib
from jsr import writers
from tests import two_net_method

import test_train  # pylint: disable=g-bad-import-order  (tests/ is on sys.path under pytest)

jax.config.update("jax_disable_most_optimizations", True)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


def make_config(train_dir, eval_dir=None, **overrides):
  config = two_net_method.get_config()
  config.data.train = f"folder:{train_dir}"
  config.eval.sets = f"tiny={eval_dir}" if eval_dir else ""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def flat(tree) -> dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in
          zip(checkpoints.flat_shapes(tree), jax.tree.leaves(jax.device_get(tree)))}


def saved_leaves(workdir: Path, step: int) -> dict[str, tuple]:
  manager = ocp.CheckpointManager(workdir / "checkpoints",
                                  item_handlers=ocp.PyTreeCheckpointHandler())
  try:
    return checkpoints.flat_shapes(manager.item_metadata(step).tree)
  finally:
    manager.close()


def train_rows(workdir: Path) -> list[dict]:
  return [r for r in writers.read_metrics(str(workdir)) if "train/loss" in r]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One straight 4-step run with evaluation: (root, workdir, state, config)."""
  root = tmp_path_factory.mktemp("two_nets")
  train_dir, eval_dir = test_train.make_dirs(root)
  config = make_config(train_dir, eval_dir)
  state = train.train_and_evaluate(config, str(root / "a"))
  return root, root / "a", state, config


def test_two_networks_train_with_their_own_optimizers(run):
  _, workdir, state, config = run
  assert int(state.step) == STEPS
  rows = train_rows(workdir)
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  for r in rows:
    assert {"train/loss", "train/d_loss", "train/lr_g", "train/lr_d"} <= set(r)
    assert r["train/lr_d"] == pytest.approx(config.optim_d.lr)
  # The learning rates are the method's own metrics: G's cosine at steps 0..3 of 4.
  want = [0.5 * config.optim_g.lr * (1 + np.cos(np.pi * t / STEPS)) for t in range(STEPS)]
  np.testing.assert_allclose([r["train/lr_g"] for r in rows], want, rtol=1e-6)
  evals = {k for r in writers.read_metrics(str(workdir)) for k in r if k.startswith("eval/")}
  assert "eval/tiny_x2/psnr_y" in evals
  # Both networks and both Adam states are in the checkpoint; the frozen features are not.
  saved = saved_leaves(workdir, STEPS)
  assert {k.split("/")[0] for k in saved} == {"step", "g_params", "d_params", "g_opt", "d_opt",
                                              "g_ema"}
  assert (3, 3, 3, 4) not in saved.values()  # The frozen conv's shape appears nowhere.
  assert len(saved) == len(jax.tree.leaves(state))


def test_per_step_rng_differs_between_steps_and_resumes_equal(run, tmp_path, monkeypatch):
  root, workdir, state, _ = run
  config = make_config(root / "train")
  draws = [r["train/rng_draw"] for r in train_rows(workdir)]
  assert len(set(draws)) == STEPS  # fold_in(base, step): a new draw every step.
  real = data_lib.get_train_iterator

  def preempted_after_3(config, start_step, *args, **kwargs):
    for i, batch in enumerate(real(config, start_step, *args, **kwargs)):
      if i == 3:
        raise RuntimeError("preempted")
      yield batch

  resumed = tmp_path / "resumed"
  monkeypatch.setattr(data_lib, "get_train_iterator", preempted_after_3)
  with pytest.raises(RuntimeError, match="preempted"):
    train.train_and_evaluate(config, str(resumed))
  monkeypatch.setattr(data_lib, "get_train_iterator", real)
  again = train.train_and_evaluate(config, str(resumed))
  rows = train_rows(resumed)
  assert [r["step"] for r in rows] == [1, 2, 3, 3, 4]
  # Steps 3 and 4 after resuming at 2 draw what the straight run drew.
  assert [r["train/rng_draw"] for r in rows[-2:]] == pytest.approx(draws[2:], abs=0)
  want, got = flat(state), flat(again)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_predict_restores_only_the_generator(run, tmp_path):
  root, workdir, state, _ = run
  config, _, variables, step = inference.load_variables(str(workdir))
  assert step == STEPS
  restored = jax.tree.leaves(variables)
  # Only G's EMA: 4 arrays (two convs), of the 6 fields' many leaves in the checkpoint.
  assert len(restored) == len(jax.tree.leaves(state.g_ema)) == 4
  assert len(saved_leaves(workdir, STEPS)) > 4 * len(restored)
  for k, v in flat(state.g_ema).items():
    np.testing.assert_array_equal(flat(variables["params"])[k], v)
  # The command line, on a user's image.
  image = root / "eval" / "color.png"
  proc = subprocess.run([sys.executable, "-m", "jsr.predict", f"--workdir={workdir}",
                         f"--input={image}", f"--output={tmp_path / 'out'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  h, w = np.asarray(Image.open(image)).shape[:2]
  assert np.asarray(Image.open(tmp_path / "out" / "color.png")).shape == (2 * h, 2 * w, 3)


def test_interpolation_mixes_the_generator_only(run, tmp_path):
  root, workdir, state, _ = run
  config_b = make_config(root / "train", seed=1)
  state_b = train.train_and_evaluate(config_b, str(tmp_path / "b"))
  mixed = interpolate.interpolate(str(workdir), str(tmp_path / "b"), 0.25, str(tmp_path / "mix"))
  for field in ("g_params", "g_ema"):
    a, b, m = flat(getattr(state, field)), flat(getattr(state_b, field)), flat(getattr(mixed, field))
    for k in a:
      np.testing.assert_allclose(m[k], 0.75 * a[k] + 0.25 * b[k], rtol=1e-6, err_msg=k)
  for k, v in flat(state.d_params).items():  # D and the optimizers stay A's.
    np.testing.assert_array_equal(flat(mixed.d_params)[k], v)
  _, _, variables, _ = inference.load_variables(str(tmp_path / "mix"))
  for k, v in flat(mixed.g_ema).items():
    np.testing.assert_array_equal(flat(variables["params"])[k], v)


def test_warm_start_fills_the_generator_from_another_run(run, tmp_path):
  root, workdir, state, _ = run
  config = make_config(root / "train", init_from=f"{workdir}:2", seed=5)
  method = methods.load(config.method)
  batch = {"image": np.zeros((4, 16, 16, 3), np.uint8)}
  fresh = method.init(config, jax.random.key(5), batch)
  warm = train.warm_start(fresh, method, config)
  _, _, step2, _ = inference.load_variables(str(workdir), 2)
  for field in ("g_params", "g_ema"):
    for k, v in flat(step2["params"]).items():
      np.testing.assert_array_equal(flat(getattr(warm, field))[k], v)
  for k, v in flat(fresh.d_params).items():  # D starts fresh.
    np.testing.assert_array_equal(flat(warm.d_params)[k], v)
  # End to end: a run warm-started from A trains, and once it has a checkpoint of its own it
  # ignores init_from (resume first, always): a path that no longer exists is never read.
  work = tmp_path / "warm"
  train.train_and_evaluate(make_config(root / "train", init_from=str(workdir), total_steps=2),
                           str(work))
  gone = make_config(root / "train", init_from=str(workdir), total_steps=2)
  gone.init_from = str(tmp_path / "deleted")
  gone.allow_config_change = True
  assert int(train.train_and_evaluate(gone, str(work)).step) == 2


def test_warm_start_from_another_model_names_the_leaves(run, tmp_path):
  root, workdir, _, _ = run
  config = make_config(root / "train", init_from=str(workdir), **{"model.g_features": 6})
  with pytest.raises(checkpoints.CheckpointMismatchError) as e:
    train.train_and_evaluate(config, str(tmp_path / "w"))
  msg = str(e.value)
  assert "g_params" in msg and "Conv_0/kernel: checkpoint (3, 3, 3, 8) vs model (3, 3, 3, 6)" in msg
  assert not (tmp_path / "w" / "checkpoints").exists() or not any(
      (tmp_path / "w" / "checkpoints").iterdir())


def test_resume_refuses_a_changed_config_unless_allowed(run, tmp_path):
  root, workdir, _, _ = run
  work = tmp_path / "w"
  train.train_and_evaluate(make_config(root / "train", total_steps=2), str(work))
  before = (work / "config.json").read_text()
  changed = make_config(root / "train", total_steps=4, **{"optim_g.lr": 3e-4})
  with pytest.raises(workdir_lib.ConfigChangedError) as e:
    train.train_and_evaluate(changed, str(work))
  assert "optim_g.lr: 0.001 -> 0.0003" in str(e.value) and "total_steps: 2 -> 4" in str(e.value)
  assert (work / "config.json").read_text() == before  # Nothing written.
  changed.allow_config_change = True
  assert int(train.train_and_evaluate(changed, str(work)).step) == 4
  assert json.loads((work / "config.2.json").read_text())["optim_g"]["lr"] == 1e-3
  assert json.loads((work / "config.json").read_text())["optim_g"]["lr"] == 3e-4


def test_nan_in_the_parameters_stops_even_with_finite_metrics(run, tmp_path):
  root, _, _, _ = run
  config = make_config(root / "train", nan_params_at_step=3, checkpoint_every_steps=1)
  with pytest.raises(train.NonFiniteError, match="diverged at step 3: .*state") as e:
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert "last good checkpoint is kept" in str(e.value)
  assert sorted(int(p.name) for p in (tmp_path / "w" / "checkpoints").iterdir()) == [1, 2]
  rows = train_rows(tmp_path / "w")
  assert all(np.isfinite(r["train/loss"]) for r in rows)


def test_frozen_parameters_are_an_argument_of_the_step_not_constants(run):
  root, _, _, _ = run
  config = make_config(root / "train")
  method = methods.load(config.method)
  mesh = mesh_lib.make_mesh()
  batch = {"image": np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), np.uint8)}
  state = method.init(config, jax.random.key(0), batch)
  step = train.make_train_step(method, config, mesh, jax.random.key(1))
  rows = mesh_lib.host_rows(mesh, 4)
  outs = []
  for seed in (7, 8):
    config.frozen_seed = seed
    frozen = methods.load_frozen(method, config)
    fresh = jax.tree.map(np.array, state)  # The step donates its input.
    _, metrics, _ = step(fresh, mesh_lib.shard_batch(batch, mesh, 4, rows), frozen)
    outs.append(float(metrics["loss"]))
  assert outs[0] != outs[1]  # The new weights were used ...
  assert step._cache_size() == 1  # ... by the same compiled program.  # pylint: disable=protected-access


def test_missing_training_folder_is_one_error_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jsr.main", "--config=configs/selfsup.py:runlocal",
       f"--workdir={tmp_path / 'w'}", f"--config.data.train=folder:{tmp_path / 'nope'}",
       "--config.data.backend=numpy"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and str(tmp_path / "nope") in errors[0], proc.stderr[-2000:]
