"""notebooks/colab.ipynb runs end to end at `runlocal` size on the CPU.

No Jupyter here: the .ipynb JSON is read directly and its code cells are run in one namespace with
`exec`, translated as IPython would run them: `!cmd` lines go to a shell (repository root as cwd,
`{expr}` expanded from the namespace, a leading `python` replaced by this interpreter), `%` magics
(TensorBoard) are skipped, and so are `!pip install` and `!git clone` (this checkout is the one
under test). The parameters cell (tagged "parameters") runs first and is then overridden.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

from configs import selfsup as selfsup_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "colab.ipynb"
_SKIPPED_SHELL = re.compile(r"^((python3?\s+-m\s+)?pip3?\s+install|git\s+clone)\b")


def code_cells() -> list[tuple[str, list[str]]]:
  """(source, tags) of each code cell, in order."""
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["nbformat"] == 4
  cells = []
  for cell in nb["cells"]:
    if cell["cell_type"] == "code":
      source = cell["source"]
      cells.append(("".join(source) if isinstance(source, list) else source,
                    cell.get("metadata", {}).get("tags", [])))
  return cells


def translate(source: str) -> str:
  """IPython's escapes as Python: `!cmd` -> __shell__("cmd"), `%magic` -> pass (indent kept)."""
  out = []
  for line in source.splitlines():
    stripped = line.lstrip()
    indent = line[:len(line) - len(stripped)]
    if stripped.startswith("!"):
      out.append(f"{indent}__shell__({stripped[1:].strip()!r})")
    elif stripped.startswith("%"):
      out.append(f"{indent}pass  # magic skipped: {stripped}")
    else:
      out.append(line)
  return "\n".join(out) + "\n"


class Shell:
  """Runs `!` lines like IPython's system(): {expr} from the namespace, in the repository root."""

  def __init__(self, namespace: dict, env: dict):
    self.namespace, self.env = namespace, env
    self.ran, self.skipped = [], []

  def __call__(self, cmd: str) -> None:
    cmd = re.sub(r"\{([^{}]+)\}", lambda m: str(eval(m.group(1), self.namespace)), cmd)  # noqa: S307
    if _SKIPPED_SHELL.match(cmd):
      self.skipped.append(cmd)
      return
    cmd = re.sub(r"^python3?(?=\s)", shlex.quote(sys.executable), cmd)
    proc = subprocess.run(cmd, shell=True, cwd=ROOT, env=self.env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"!{cmd} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    self.ran.append(cmd)


def test_colab_notebook_runs_at_runlocal_size(tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)  # The notebook finds itself inside a checkout: no clone, no chdir.
  monkeypatch.setenv("MPLBACKEND", "Agg")  # Nothing may open a window.
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
  workdir = tmp_path / "selfsup"
  has_tf = importlib.util.find_spec("tensorflow") is not None
  overrides = dict(RUNLOCAL=True, WORKDIR=str(workdir), CONFIG="configs/selfsup.py:runlocal",
                   EXTRA_FLAGS="" if has_tf else "--config.data.backend=numpy")
  namespace = {"__name__": "__main__"}
  shell = Shell(namespace, env)
  namespace["__shell__"] = shell
  cells = code_cells()
  assert sum("parameters" in tags for _, tags in cells) == 1
  for i, (source, tags) in enumerate(cells):
    exec(compile(translate(source), f"{NOTEBOOK.name}, code cell {i}", "exec"), namespace)  # noqa: S102
    if "parameters" in tags:
      assert set(overrides) <= set(namespace), "the parameters cell lost a parameter"
      namespace.update(overrides)

  # Installed and trained as a Colab user would, with this test's parameters.
  assert any(c.startswith("pip install") and "[cuda12]" in c for c in shell.skipped), shell.skipped
  assert not any("[tf" in c for c in shell.skipped), "Colab must not get the tf extra"
  assert [c.split()[2] for c in shell.ran] == ["jsr.main", "jsr.predict"], shell.ran
  assert f"--workdir={workdir}" in shell.ran[0] and "selfsup.py:runlocal" in shell.ran[0]

  config = selfsup_config.get_config("runlocal")
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps and steps[-1] == config.total_steps, steps
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  psnr = [v for r in rows for k, v in r.items() if k.endswith("/psnr_y")]
  assert psnr and all(np.isfinite(psnr)), rows

  # The grids cell showed the last evaluation's LR | bicubic | output | HR images.
  grid_dir = workdir / "images" / f"step_{config.total_steps}"
  assert sorted(Path(p).name for p in namespace["GRIDS"]) == sorted(
      p.name for p in grid_dir.glob("*.png")) == ["samples_chelsea.png", "samples_coffee.png"]
  for path in namespace["GRIDS"]:
    w, h = Image.open(path).size
    assert w > 4 * h > 0  # Four panels side by side.

  # jsr.predict upscaled the fallback photo by the run's scale; the last cell showed a crop of it.
  lr = np.asarray(Image.open(namespace["INPUT"]))
  sr = np.asarray(Image.open(namespace["OUTPUT"]))
  assert Path(namespace["OUTPUT"]).parent == workdir / "predict_out"
  assert sr.dtype == np.uint8 and sr.shape == (config.scale * lr.shape[0],
                                               config.scale * lr.shape[1], lr.shape[2])
  assert namespace["SCALE"] == config.scale
  side = config.scale * min(256, *lr.shape[:2])
  assert namespace["COMPARISON"].size == (2 * side + 8, side)
