"""Multi-host, proven on one machine: 2 processes x 2 CPU devices (jax.distributed over
127.0.0.1, gloo collectives) train the runlocal selfsup and EDSR configs (EDSR also on a prepared
set, jsr.prepare) and end with the parameters of 1 process x 4 devices; the workdir's files are
written once; evaluation works.

Each host builds only its rows of the global batch (jsr.mesh.host_rows); if both built the same
rows, the global batch would differ from the 1-process one and the parameters with it. On a
prepared set each host also reads only its rows (counted in the log line the test checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jsr import checkpoints
from jsr import inference
from jsr import io as jio
from jsr import prepare
from jsr import writers

import test_train  # pylint: disable=g-bad-import-order  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  return env


def _flags(config: str, workdir: Path, dirs) -> list[str]:
  source, eval_dir = dirs
  return [sys.executable, "-m", "jsr.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.data.train={source}", f"--config.eval.sets=tiny={eval_dir}",
          "--config.data.batch_size=4", "--config.data.backend=numpy",
          f"--config.total_steps={STEPS}", f"--config.eval_every_steps={STEPS}",
          "--config.checkpoint_every_steps=2", "--config.log_every_steps=1"]


def _run_two_processes(config: str, workdir: Path, dirs) -> list[str]:
  port = _free_port()
  procs = [subprocess.Popen(
      _flags(config, workdir, dirs) + [f"--coordinator_address=127.0.0.1:{port}",
                                       "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=400)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i}:\n{log[-3000:]}"
    assert f"JAX process {i}/2" in log
  return logs


def _run_one_process(config: str, workdir: Path, dirs) -> None:
  proc = subprocess.run(_flags(config, workdir, dirs), cwd=ROOT, env=_env(4),
                        capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _final_state(workdir: Path):
  _, _, state, step = inference.load_state(str(workdir))
  assert step == STEPS
  return {k: np.asarray(v) for k, v in
          zip(checkpoints.flat_shapes(state), jax.tree.leaves(state))}


@pytest.mark.parametrize("config,source", [("configs/selfsup.py:runlocal", "folder"),
                                           ("configs/edsr.py:scale=2,runlocal", "folder"),
                                           ("configs/edsr.py:scale=2,runlocal", "records")])
def test_two_processes_equal_one_process_with_four_devices(config, source, tmp_path):
  train_dir, eval_dir = test_train.make_dirs(tmp_path)
  if source == "records":
    prepare.prepare_photos(jio.list_images(train_dir), str(tmp_path / "prepared"), crop=32,
                           step=8, shard_records=8, log=None)
    dirs = (f"records:{tmp_path / 'prepared'}", eval_dir)
  else:
    dirs = (f"folder:{train_dir}", eval_dir)
  two, one = tmp_path / "two_hosts", tmp_path / "one_host"
  logs = _run_two_processes(config, two, dirs)
  _run_one_process(config, one, dirs)
  if source == "records":  # Each host read its 2 rows of the 4-row batch, at every step.
    for log in logs:
      assert f"this host read {2 * STEPS} sub-images for {STEPS} batches" in log, log[-3000:]

  # Same parameters (and optimizer state) at the end. Float tolerance, not bit equality: the
  # gradient all-reduce sums the 4 device shards in another order over gloo than in one process.
  want, got = _final_state(one), _final_state(two)
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)

  # Files written once: one metrics row per step and kind, one config, one checkpoint per save.
  rows = writers.read_metrics(str(two))
  steps = [r["step"] for r in rows if "train/loss" in r]
  assert steps == list(range(1, STEPS + 1))
  evals = [r for r in rows if "eval/tiny_x2/psnr_y" in r]
  assert len(evals) == 1
  one_eval = [r for r in writers.read_metrics(str(one)) if "eval/tiny_x2/psnr_y" in r][0]
  assert evals[0]["eval/tiny_x2/psnr_y"] == pytest.approx(one_eval["eval/tiny_x2/psnr_y"],
                                                          abs=1e-3)
  np.testing.assert_allclose([r["train/loss"] for r in rows if "train/loss" in r],
                             [r["train/loss"] for r in writers.read_metrics(str(one))
                              if "train/loss" in r], rtol=1e-4)
  assert sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
  assert len(list(two.glob("events.out.tfevents.*"))) <= 1  # TensorBoard from host 0 only.
  assert json.loads((two / "config.json").read_text())["total_steps"] == STEPS
  grids = sorted(p.name for p in (two / "images" / f"step_{STEPS}").iterdir())
  assert grids == ["tiny_color.png", "tiny_gray.png"]
