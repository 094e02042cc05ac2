"""The engine on the new sources: EDSR runlocal trained on given pairs (.npy LR, PNG HR), and on a
prepared set, killed with SIGKILL mid-run and resumed, against a straight run."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from jsr import checkpoints
from jsr import errors
from jsr import evaluate
from jsr import inference
from jsr import io as jio
from jsr import prepare
from jsr import train
from jsr import writers

import test_train  # pylint: disable=g-bad-import-order  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]


def edsr_config(source: str, scale: int = 2, steps: int = 4):
  spec = importlib.util.spec_from_file_location("edsr_config", ROOT / "configs/edsr.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f"scale={scale},runlocal")
  config.data.train = source
  config.data.backend = "numpy"
  config.eval.sets = ""
  config.total_steps = steps
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = steps
  return config


def make_pairs(root: Path, scale: int = 2) -> tuple[Path, Path]:
  """HR PNGs and their MATLAB-bicubic LR saved as uint8 .npy, DIV2K names (0001.png, 0001x2.npy)."""
  lr_dir, hr_dir = root / "LR", root / "HR"
  lr_dir.mkdir(parents=True)
  hr_dir.mkdir(parents=True)
  from jsr.evaluate import make_lr  # pylint: disable=import-outside-toplevel
  for i in range(3):
    hr = test_train._smooth_photo(40, 48, i)  # pylint: disable=protected-access
    Image.fromarray(hr).save(hr_dir / f"{i:04d}.png")
    lr = np.asarray(make_lr(hr[None].astype(np.float32) / 255.0, scale)[0])
    np.save(lr_dir / f"{i:04d}x{scale}.npy", np.round(lr * 255).astype(np.uint8))
  return lr_dir, hr_dir


def test_edsr_trains_on_npy_pairs(tmp_path):
  lr_dir, hr_dir = make_pairs(tmp_path)
  config = edsr_config(f"pairs:{lr_dir},{hr_dir}")
  config.eval.sets = f"tiny=pairs:{lr_dir},{hr_dir}"
  state = train.train_and_evaluate(config, str(tmp_path / "work"))
  assert int(state.step) == 4
  rows = writers.read_metrics(str(tmp_path / "work"))
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert len(losses) == 4 and all(np.isfinite(losses))
  evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/tiny_x2/")}
  # The LR files are the protocol's MATLAB-bicubic LR of the HR ones, so the given-LR bicubic
  # baseline is the protocol's bicubic score of the HR images.
  protocol = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", 2),
                                      jio.list_images(hr_dir), 2, log=None)
  assert evals["eval/tiny_x2/bicubic_psnr_y"] == pytest.approx(protocol["mean"]["psnr_y"],
                                                               abs=1e-3)

  # Evaluate on the given LR from the command line: the numbers the training run logged. An HR
  # file without its LR is named.
  cmd = [sys.executable, "-m", "jsr.evaluate", f"--workdir={tmp_path / 'work'}",
         f"--data={hr_dir}", f"--lr={lr_dir}", "--scale=2", f"--output={tmp_path / 'e.json'}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  cli = json.loads((tmp_path / "e.json").read_text())
  assert cli["lr"] == str(lr_dir) and cli["num_images"] == 3
  assert cli["mean"]["psnr_y"] == pytest.approx(evals["eval/tiny_x2/psnr_y"], abs=1e-3)
  Image.fromarray(test_train._smooth_photo(40, 48, 9)).save(hr_dir / "0009.png")  # pylint: disable=protected-access
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and f"{hr_dir}/0009.png" in proc.stderr, proc.stderr[-2000:]


def test_selfsup_refuses_pairs(tmp_path):
  lr_dir, hr_dir = make_pairs(tmp_path)
  config = test_train.make_config(lr_dir)
  config.data.train = f"pairs:{lr_dir},{hr_dir}"
  with pytest.raises(errors.UserError, match="selfsup learns from LR images alone"):
    train.train_and_evaluate(config, str(tmp_path / "work"))


_RUN = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import test_train_data
from jsr import data as data_lib
from jsr import train
source, workdir, kill_at = sys.argv[2], sys.argv[3], int(sys.argv[4])
real = data_lib.get_train_iterator

def killed(config, start_step, *args, **kwargs):
  for step, batch in enumerate(real(config, start_step, *args, **kwargs), start=start_step + 1):
    if step == kill_at:  # SIGKILL: no cleanup, no flush, an orbax save may be in flight.
      os.kill(os.getpid(), signal.SIGKILL)
    yield batch

data_lib.get_train_iterator = killed
train.train_and_evaluate(test_train_data.edsr_config(source, steps=8), workdir)
"""


def _run(source: str, workdir: Path, kill_at: int = 0) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", _RUN, str(Path(__file__).parent), source,
                         str(workdir), str(kill_at)], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def test_prepared_set_resume_after_kill_equals_straight_run(tmp_path):
  train_dir, _ = test_train.make_dirs(tmp_path)
  out = tmp_path / "prepared"
  prepare.prepare_photos(jio.list_images(train_dir), str(out), crop=24, step=8, shard_records=10,
                         log=None)
  source = f"records:{out}"
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  proc = _run(source, straight)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = _run(source, killed, kill_at=6)
  assert proc.returncode == -9, proc.stderr[-3000:]
  saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) < 8
  proc = _run(source, killed)
  assert proc.returncode == 0, proc.stderr[-3000:]
  want, got = (inference.load_state(str(w))[2] for w in (straight, killed))
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=jax.tree_util.keystr(path))
  assert checkpoints.flat_shapes(want) == checkpoints.flat_shapes(got)
