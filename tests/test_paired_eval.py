"""Evaluation on given LR images (`jsr.evaluate --lr`, `name=pairs:LR_DIR,HR_DIR` eval sets), on
tiny images the tests write, checked against the protocol written out in numpy (tests/np_reference)
and against the synthesised-LR path where the given LR is exactly the protocol's."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jsr import errors
from jsr import evaluate
from jsr import io as jio
from jsr import reporting
from jsr import zeroshot
from tests import np_reference

jax.config.update("jax_disable_most_optimizations", True)


def _image(h, w, channels, seed):
  """uint8 test image: smooth waves, noise, and saturated blocks so bicubic overshoot clips."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([np.sin(xx / 4.0 + 1.7 * c) * np.cos(yy / 6.0 - c) for c in range(channels)], -1)
  img = 0.5 + 0.4 * base + 0.06 * rng.standard_normal((h, w, channels))
  img[5:15, 8:20] = 1.0
  img[20:26, 30:40] = 0.0
  return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _np_lr(hr_u8, scale):
  """The protocol's LR in numpy: modcrop, MATLAB bicubic 1/scale on the uint8 path."""
  h, w = (d - d % scale for d in hr_u8.shape[:2])
  return np_reference.imresize(hr_u8[:h, :w].astype(np.float64), h // scale, w // scale,
                               1 / scale, 1 / scale, uint8=True).astype(np.uint8)


def _np_scores(hr_u8, lr_u8, scale):
  """(PSNR-Y, SSIM-Y) of bicubic x scale on a given LR against its HR, the protocol in numpy: HR
  cropped top-left to scale x LR; an equal-size LR is cropped with it and shrunk first."""
  hr, lr = hr_u8.astype(np.float64), lr_u8.astype(np.float64)
  if lr.shape[:2] == hr.shape[:2]:
    hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
    lr = _np_lr(lr_u8, scale).astype(np.float64)
  hr = hr[: scale * lr.shape[0], : scale * lr.shape[1]]
  h, w = hr.shape[:2]
  sr = np.floor(np.clip(np_reference.imresize(lr, h, w, scale, scale, uint8=True), 0, 255) + 0.5)
  if hr.shape[-1] == 3:
    hr, sr = np_reference.y255(hr), np_reference.y255(sr)
  else:
    hr, sr = hr[..., 0], sr[..., 0]
  hr, sr = hr[scale:-scale, scale:-scale], sr[scale:-scale, scale:-scale]
  return np_reference.psnr(sr, hr), np_reference.ssim(sr, hr)


def _save(path, arr_u8, fmt="png"):
  """Write a uint8 (H, W, C) image as PNG or as .npy (uint8, float [0, 1], float [0, 255]); gray
  arrays are saved (H, W)."""
  arr = arr_u8[..., 0] if arr_u8.shape[-1] == 1 else arr_u8
  if fmt == "png":
    Image.fromarray(arr).save(path)
  else:
    np.save(path, {"u8": arr, "f01": arr.astype(np.float32) / 255,
                   "f255": arr.astype(np.float64)}[fmt])


def _noise(shape, seed):
  """Integer noise of -6..6 levels: the given LR is not the protocol's."""
  return np.random.default_rng(seed).integers(-6, 7, shape)


# -- evaluate_images on (lr, hr) pairs ------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "u8", "f01", "f255", "equal"])
def test_given_protocol_lr_scores_as_synthesised(tmp_path, fmt):
  """LR files that hold exactly the protocol's LR (made in numpy) score as --data alone does; an
  equal-size LR (here the HR itself) is shrunk by the protocol, so it scores the same too."""
  scale = 3
  images = {"a": _image(40, 52, 3, 0), "g": _image(43, 47, 1, 1)}  # g: HR not a multiple of 3
  pairs = []
  for stem, hr in images.items():
    _save(tmp_path / f"{stem}.png", hr)
    lr = hr if fmt == "equal" else _np_lr(hr, scale)
    suffix = ".png" if fmt in ("png", "equal") else ".npy"
    _save(tmp_path / f"{stem}_LR{suffix}", lr, "png" if suffix == ".png" else fmt)
    pairs.append((str(tmp_path / f"{stem}_LR{suffix}"), str(tmp_path / f"{stem}.png")))
  bicubic = evaluate.interpolation_fn("bicubic", scale)
  given = evaluate.evaluate_images(bicubic, pairs, scale, log=None)
  synth = evaluate.evaluate_images(bicubic, [hr for _, hr in pairs], scale, log=None)
  for g, s in zip(given["per_image"], synth["per_image"]):
    assert g["image"] == s["image"] and (g["height"], g["width"]) == (s["height"], s["width"])
    assert g["psnr_y"] == pytest.approx(s["psnr_y"], rel=1e-9), (fmt, g)
    assert g["ssim_y"] == pytest.approx(s["ssim_y"], rel=1e-9), (fmt, g)
    assert 15 < g["psnr_y"] < 45


def test_given_lr_scores_equal_numpy_protocol(tmp_path):
  """Given LR that differ from the protocol's (noised, shifted by a pixel, pre-upsampled and
  noised; RGB and gray; HR with extra pixels to crop): bicubic of that LR against HR, in numpy."""
  scale = 2
  hr_a, hr_g, hr_e = _image(41, 52, 3, 0), _image(40, 47, 1, 1), _image(42, 50, 3, 2)
  cases = {
      "noised": (hr_a, np.clip(_np_lr(hr_a, scale) + _noise((20, 26, 3), 0), 0, 255)),
      "shifted": (hr_g, _np_lr(np.roll(hr_g, 1, axis=1), scale)),
      "equal": (hr_e, np.clip(hr_e.astype(int) + _noise(hr_e.shape, 1), 0, 255)),
  }
  pairs = []
  for stem, (hr, lr) in cases.items():
    _save(tmp_path / f"{stem}_HR.png", hr)
    _save(tmp_path / f"{stem}_LR.png", lr.astype(np.uint8))
    pairs.append((str(tmp_path / f"{stem}_LR.png"), str(tmp_path / f"{stem}_HR.png")))
  bicubic = evaluate.interpolation_fn("bicubic", scale)
  given = evaluate.evaluate_images(bicubic, pairs, scale, log=None)
  synth = evaluate.evaluate_images(bicubic, [hr for _, hr in pairs], scale, log=None)
  for row, s, (hr, lr) in zip(given["per_image"], synth["per_image"], cases.values()):
    ref_psnr, ref_ssim = _np_scores(hr, lr.astype(np.uint8), scale)
    # Tolerances as in test_io_evaluate: float32 vs float64 and ties leave less than these.
    assert row["psnr_y"] == pytest.approx(ref_psnr, abs=1e-4), row
    assert row["ssim_y"] == pytest.approx(ref_ssim, abs=1e-5), row
    assert abs(row["psnr_y"] - s["psnr_y"]) > 0.01  # It scored the given LR, not a made one.
  assert [r["lr"] for r in given["per_image"]] == [f"{s}_LR.png" for s in cases]
  assert given["per_image"][0]["height"] == 40  # 41 rows cropped to 2 x 20


def test_mismatched_pairs_name_both_files(tmp_path):
  _save(tmp_path / "a.png", _image(40, 52, 3, 0))
  _save(tmp_path / "a_LR.png", _image(15, 26, 3, 0))        # 40 rows are not 2 x 15
  _save(tmp_path / "b.png", _image(40, 52, 3, 1))
  _save(tmp_path / "b_LR.png", _image(20, 26, 1, 1))        # gray LR for an RGB HR
  _save(tmp_path / "c.png", _image(40, 52, 3, 2))
  _save(tmp_path / "c_LR.png", _np_lr(_image(40, 52, 3, 2), 2))
  pairs = [(str(tmp_path / f"{s}_LR.png"), str(tmp_path / f"{s}.png")) for s in "abc"]
  bicubic = evaluate.interpolation_fn("bicubic", 2)
  for lr, hr in pairs[:2]:
    with pytest.raises(jio.ImageError) as e:
      evaluate.evaluate_images(bicubic, [(lr, hr)], 2, log=None)
    assert lr in str(e.value) and hr in str(e.value)
  logged = []
  res = evaluate.evaluate_images(bicubic, pairs, 2, log=logged.append, skip_bad=True)
  assert [r["image"] for r in res["per_image"]] == ["c.png"]
  assert [(s["lr"], s["image"]) for s in res["skipped"]] == [tuple(p) for p in pairs[:2]]
  assert sum("warning: skipped" in m for m in logged) == 2


# -- The CLI and the training eval sets ------------------------------------------------------------

# The CLI's subprocess compiles with XLA's optimisations and these tests without
# (jax_disable_most_optimizations): float32 metrics then differ by ~1e-6 dB, far below the 0.01 dB
# that separates the given LR from a synthesised one.
_CLI_TOL = 1e-5


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "jsr.evaluate", *args], capture_output=True,
                        text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def div2k(tmp_path_factory):
  """DIV2K-style folders (HR 0001.png, LR 0001x2.png / 0002x2.npy gray (H, W) uint8) with noised
  LR, the HR arrays, and the CLI's JSON for them."""
  root = tmp_path_factory.mktemp("div2k")
  hr_dir, lr_dir = root / "HR", root / "LR_bicubic_X2"
  hr_dir.mkdir()
  lr_dir.mkdir()
  hrs = {"0001": _image(40, 52, 3, 0), "0002": _image(41, 45, 1, 1)}
  lrs = {}
  for i, (stem, hr) in enumerate(hrs.items()):
    _save(hr_dir / f"{stem}.png", hr)
    lrs[stem] = np.clip(_np_lr(hr, 2) + _noise(_np_lr(hr, 2).shape, i), 0, 255).astype(np.uint8)
  _save(lr_dir / "0001x2.png", lrs["0001"])
  _save(lr_dir / "0002x2.npy", lrs["0002"], "u8")
  out = root / "r.json"
  r = _cli(f"--data={hr_dir}", f"--lr={lr_dir}", "--scale=2", f"--output={out}")
  assert r.returncode == 0, r.stderr
  return {"hr_dir": hr_dir, "lr_dir": lr_dir, "hrs": hrs, "lrs": lrs,
          "result": json.loads(out.read_text()), "stdout": r.stdout}


def test_cli_given_lr_equals_numpy(div2k):
  res = div2k["result"]
  assert res["lr"] == str(div2k["lr_dir"]) and res["data"] == str(div2k["hr_dir"])
  assert [(r["image"], r["lr"]) for r in res["per_image"]] == [("0001.png", "0001x2.png"),
                                                               ("0002.png", "0002x2.npy")]
  for row in res["per_image"]:
    stem = row["image"][:4]
    ref_psnr, ref_ssim = _np_scores(div2k["hrs"][stem], div2k["lrs"][stem], 2)
    assert row["psnr_y"] == pytest.approx(ref_psnr, abs=1e-4), row
    assert row["ssim_y"] == pytest.approx(ref_ssim, abs=1e-5), row
  assert f"with the LR in {div2k['lr_dir']}" in div2k["stdout"]


def test_cli_missing_and_mismatched_files(tmp_path, div2k):
  hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
  hr_dir.mkdir()
  lr_dir.mkdir()
  for stem in div2k["hrs"]:
    _save(hr_dir / f"{stem}.png", div2k["hrs"][stem])
    _save(lr_dir / f"{stem}x2.png", div2k["lrs"][stem])
  _save(hr_dir / "0003.png", _image(40, 52, 3, 3))
  r = _cli(f"--data={hr_dir}", f"--lr={lr_dir}", "--scale=2")
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert f"without an LR file in {lr_dir}: {hr_dir / '0003.png'}" in r.stderr

  _save(lr_dir / "0003x2.png", _image(16, 26, 3, 3))  # HR 40 rows are not 2 x 16
  r = _cli(f"--data={hr_dir}", f"--lr={lr_dir}", "--scale=2")
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
  assert str(lr_dir / "0003x2.png") in r.stderr and str(hr_dir / "0003.png") in r.stderr
  out = tmp_path / "r.json"
  r = _cli(f"--data={hr_dir}", f"--lr={lr_dir}", "--scale=2", "--skip_bad", f"--output={out}")
  assert r.returncode == 0, r.stderr
  assert "warning: skipped" in r.stdout and str(lr_dir / "0003x2.png") in r.stdout
  res = json.loads(out.read_text())
  assert [row["image"] for row in res["per_image"]] == ["0001.png", "0002.png"]
  assert res["skipped"][0]["image"] == str(hr_dir / "0003.png")


class _Writer:
  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    self.scalars.update({(step, k): v for k, v in scalars.items()})


def test_paired_eval_set_logs_the_cli_numbers(tmp_path, div2k):
  plain = tmp_path / "plain"
  plain.mkdir()
  _save(plain / "p.png", _image(40, 44, 3, 5))
  sets = reporting.parse_eval_sets(f"plain={plain},real=pairs:{div2k['lr_dir']},"
                                   f"{div2k['hr_dir']}")
  assert sets["plain"] == [str(plain / "p.png")]
  assert sets["real"] == [(str(div2k["lr_dir"] / "0001x2.png"), str(div2k["hr_dir"] / "0001.png")),
                          (str(div2k["lr_dir"] / "0002x2.npy"), str(div2k["hr_dir"] / "0002.png"))]
  writer = _Writer()
  bicubic = reporting.run_bicubic_baseline(sets, 2, writer, 0)
  # The "model" is bicubic too: its scores must be the baseline's and the CLI's.
  reporting.run_eval(evaluate.interpolation_fn("bicubic", 2), sets, 2, writer, 5, str(tmp_path),
                     bicubic)
  cli = div2k["result"]["mean"]
  for key, step in (("bicubic_psnr_y", 0), ("bicubic_ssim_y", 0), ("psnr_y", 5), ("ssim_y", 5)):
    assert writer.scalars[(step, f"eval/real_x2/{key}")] == pytest.approx(
        cli[key.removeprefix("bicubic_")], abs=_CLI_TOL)
  plain_ref = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", 2), sets["plain"], 2,
                                       log=None)["mean"]["psnr_y"]
  assert writer.scalars[(5, "eval/plain_x2/psnr_y")] == pytest.approx(plain_ref, rel=1e-9)
  grid = np.asarray(Image.open(tmp_path / "images/step_5/real_0001.png"))
  assert grid.shape[0] == 40  # LR | bicubic | output | HR crops of the 40x52 HR


def test_parse_paired_eval_sets_errors(tmp_path, div2k):
  lr, hr = div2k["lr_dir"], div2k["hr_dir"]
  assert list(reporting.parse_eval_sets(f"pairs:{lr},{hr}")) == ["hr"]  # named after its HR dir
  with pytest.raises(errors.UserError, match="NAME=pairs:LR_DIR,HR_DIR"):
    reporting.parse_eval_sets(f"real=pairs:{lr}")
  extra = tmp_path / "HR"
  extra.mkdir()
  for f in hr.iterdir():
    (extra / f.name).write_bytes(f.read_bytes())
  _save(extra / "0009.png", _image(40, 52, 3, 9))
  with pytest.raises(errors.UserError, match=f"config.eval.sets.*{extra / '0009.png'}"):
    reporting.parse_eval_sets(f"real=pairs:{lr},{extra}")


def super_resolve(lr, config, seed):
  """A zero-shot "method" (config.method = "tests.test_paired_eval"): MATLAB bicubic."""
  del seed
  sr = evaluate.interpolation_fn("bicubic", config.scale)(jnp.asarray(lr)[None])
  return np.asarray(sr[0]), {}


def test_zeroshot_scores_a_paired_set(tmp_path, div2k):
  spec = importlib.util.spec_from_file_location(
      "zssr_config", Path(__file__).parent.parent / "configs/zssr.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("runlocal")
  config.method, config.scale = "tests.test_paired_eval", 2
  config.eval.sets = f"real=pairs:{div2k['lr_dir']},{div2k['hr_dir']}"
  config.data.inputs = ""
  rows = zeroshot.run(config, str(tmp_path / "w"))
  cli = div2k["result"]["per_image"]
  assert [r["image"] for r in rows] == [r["image"] for r in cli]
  for row, ref in zip(rows, cli):
    assert row["psnr_y"] == pytest.approx(ref["psnr_y"], abs=_CLI_TOL)
    assert row["bicubic_psnr_y"] == pytest.approx(ref["psnr_y"], abs=_CLI_TOL)
  assert (tmp_path / "w/images/real/0002.png").exists()
