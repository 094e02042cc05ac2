"""scripts/perception_distortion.py and scripts/compare_crops.py end to end on tiny runs.

A supervised SRResNet (configs/srresnet.py:runlocal) and its SRGAN fine-tune
(configs/srgan.py:runlocal, init_from the first, with a patch discriminator) train one step each
on synthetic photos; both scripts then run through their absl flags (parsed into a private
FlagValues) on small synthetic HR images, and their JSON, table and PNGs are checked.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

from absl import flags
import jax
import numpy as np
from PIL import Image
import pytest

from jsr import evaluate
from jsr import inference
from jsr import io as jio
from jsr import train
from jsr import writers

jax.config.update("jax_disable_most_optimizations", True)

ROOT = Path(__file__).resolve().parents[1]


def load_module(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


pd = load_module("scripts/perception_distortion.py", "perception_distortion")
cc = load_module("scripts/compare_crops.py", "compare_crops")


def _photo(h, w, seed):
  """A smooth colour image with some edges (uint8)."""
  r = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  chans = [np.sin(2 * np.pi * (r.uniform(1, 3) * yy + r.uniform(1, 3) * xx) + r.uniform(0, 6))
           for _ in range(3)]
  img = 0.5 + 0.35 * np.stack(chans, -1) + 0.1 * (xx > 0.5)[..., None]
  return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def run_flags(module, argv):
  """Runs module.main with `argv` parsed into fresh FlagValues (no clash between the scripts)."""
  fv = flags.FlagValues()
  module.define_flags(fv)
  rest = fv([module.__name__, *argv])
  return module.main(rest, fv)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("figs")
  (root / "train").mkdir()
  (root / "bench").mkdir()
  for i in range(2):
    Image.fromarray(_photo(136, 140, i)).save(root / "train" / f"t{i}.png")
  # Small: LPIPS (a VGG16 at "highest" precision) is most of the time.
  Image.fromarray(_photo(64, 72, 7)).save(root / "bench" / "a.png")
  Image.fromarray(_photo(48, 52, 8)[..., 0]).save(root / "bench" / "b.png")  # Gray.
  # 104x200 at x4 leaves 96x192 after shaving: the smallest NIQE accepts (two 96-px blocks).
  (root / "big").mkdir()
  Image.fromarray(_photo(104, 200, 9)).save(root / "big" / "c.png")

  def config(name, **overrides):
    spec = importlib.util.spec_from_file_location(f"{name}_config", ROOT / f"configs/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("runlocal")
    c.data.train, c.data.backend, c.eval.sets = f"folder:{root / 'train'}", "numpy", ""
    c.update(overrides)
    return c

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(writers, "import_clu", lambda: None)  # metrics.jsonl only: no TensorFlow import.
    train.train_and_evaluate(config("srresnet", total_steps=1), str(root / "srresnet"))
    # SRGAN's G warm-started from the run above. Its VGG-style D needs 128-px crops and triples
    # the compile time; D is never read here (interpolation mixes G only), so a 32-px patch D.
    gan = config("srgan", total_steps=1, init_from=str(root / "srresnet"))
    gan.discriminator.kind, gan.data.patch_size = "patch", 32
    train.train_and_evaluate(gan, str(root / "srgan"))
  return root


def test_perception_distortion_curve(runs, tmp_path):
  pytest.importorskip("matplotlib", reason="in the test extra: pip install -e '.[test]'")
  out_json, out_png = tmp_path / "pd.json", tmp_path / "pd.png"
  # b.png is too small for NIQE. Endpoints through jsr.interpolate too: checked below.
  result = run_flags(pd, [
      f"--psnr_run={runs / 'srresnet'}", f"--gan_run={runs / 'srgan'}", "--scale=4",
      "--alphas=0,0.5,1", f"--sets=tiny={runs / 'bench'}", "--metrics=psnr,lpips",
      f"--tmp={tmp_path / 'tmp'}", f"--out_json={out_json}", f"--out_png={out_png}",
      "--nodirect_endpoints", "--title=SRResNet -> SRGAN (runlocal)"])
  saved = json.loads(out_json.read_text())
  assert saved["rows"] == json.loads(json.dumps(result["rows"]))
  assert [(r["alpha"], r["set"]) for r in saved["rows"]] == [(0, "tiny"), (0.5, "tiny"),
                                                             (1, "tiny")]
  for r in saved["rows"] + saved["bicubic"]:
    assert r["num_images"] == 2 and len(r["per_image"]) == 2
    for k in ("psnr_y", "lpips"):
      assert math.isfinite(r[k]), (r, k)
      assert np.isclose(r[k], np.mean([p[k] for p in r["per_image"]]))
  assert saved["machine"]["cpu_count"] >= 1 and saved["date"]
  assert "--alphas=0,0.5,1" in saved["command"]
  assert list((tmp_path / "tmp").iterdir()) == []  # The interpolated workdirs are removed.
  assert all(r["interpolated"] and r["workdir"] is None for r in saved["rows"])

  # The interpolated endpoints are the runs themselves, evaluated directly here.
  paths = jio.list_images(runs / "bench")
  for alpha, run in ((0, "srresnet"), (1, "srgan")):
    sr_fn, _ = inference.load_sr_fn(str(runs / run), 4)
    direct = evaluate.evaluate_images(sr_fn, paths, 4, log=None, metric_names=("psnr",))
    row = next(r for r in saved["rows"] if r["alpha"] == alpha)
    np.testing.assert_allclose(row["psnr_y"], direct["mean"]["psnr_y"], rtol=0, atol=1e-6)
    assert [p["psnr_y"] for p in row["per_image"]] == pytest.approx(
        [p["psnr_y"] for p in direct["per_image"]], rel=0, abs=1e-6)
  # The middle of the curve is neither end.
  mid = saved["rows"][1]["per_image"][0]["psnr_y"]
  assert all(abs(mid - r["per_image"][0]["psnr_y"]) > 1e-6 for r in saved["rows"][::2])
  # The bicubic row is MATLAB bicubic: independent of the runs.
  bic = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", 4), paths, 4, log=None)
  np.testing.assert_allclose(saved["bicubic"][0]["psnr_y"], bic["mean"]["psnr_y"], atol=1e-6)

  with Image.open(out_png) as im:
    assert im.size == (900, 450)
    im.load()


def test_perception_distortion_niqe_panel(runs, tmp_path):
  pytest.importorskip("matplotlib", reason="in the test extra: pip install -e '.[test]'")
  # The default: alpha 1 is the GAN run itself, not interpolated. One alpha keeps LPIPS cheap.
  out_json, out_png = tmp_path / "pd.json", tmp_path / "pd.png"
  run_flags(pd, [
      f"--psnr_run={runs / 'srresnet'}", f"--gan_run={runs / 'srgan'}", "--scale=4",
      "--alphas=1", f"--sets=big={runs / 'big'}", "--metrics=psnr,lpips,niqe",
      f"--tmp={tmp_path / 'tmp'}", f"--out_json={out_json}", f"--out_png={out_png}"])
  saved = json.loads(out_json.read_text())
  assert [r["workdir"] for r in saved["rows"]] == [str(runs / "srgan")]
  assert all(math.isfinite(r["niqe"]) for r in saved["rows"] + saved["bicubic"])
  with Image.open(out_png) as im:
    assert im.size == (900, 450)


def test_compare_crops(runs, tmp_path, capsys):
  out = tmp_path / "crops.png"
  images = [runs / "bench" / "a.png", runs / "bench" / "b.png"]
  result = run_flags(cc, [
      *(f"--image={p}" for p in images), "--scale=4",
      f"--runs=SRResNet={runs / 'srresnet'},SRGAN={runs / 'srgan'}", "--crop=4,8,40", "--zoom=2",
      f"--out={out}"])
  n_panels, side = 4, 40 * 2  # Bicubic | SRResNet | SRGAN | HR, each a 40-px crop at zoom 2.
  want = (n_panels * side + (n_panels - 1) * cc.GAP, 2 * (side + cc.LABEL_H) + cc.GAP)
  with Image.open(out) as im:
    assert im.size == want
    pixels = np.asarray(im.convert("RGB"))
  # The HR panel of row 0 is the HR crop, each pixel repeated 2x2.
  hr = np.asarray(Image.open(images[0]).convert("RGB"))[4:44, 8:48]
  x0 = 3 * (side + cc.GAP)
  np.testing.assert_array_equal(pixels[:side, x0:x0 + side], hr.repeat(2, 0).repeat(2, 1))
  # Each panel has its label beneath: dark text on the white strip.
  for k in range(n_panels):
    strip = pixels[side:side + cc.LABEL_H, k * (side + cc.GAP):k * (side + cc.GAP) + side]
    assert (strip < 128).any() and (strip == 255).mean() > 0.5
  # The bicubic panel of the gray row is gray.
  bic = pixels[side + cc.LABEL_H + cc.GAP:][:side, :side].astype(int)
  assert np.all(bic[..., 0] == bic[..., 1])
  table = result["table"]
  assert [(r["image"], r["method"]) for r in table] == [
      (im.name, m) for im in images for m in ("Bicubic", "SRResNet", "SRGAN")]
  assert all(math.isfinite(r["psnr_y"]) and math.isfinite(r["lpips"]) for r in table)
  printed = capsys.readouterr().out
  assert "SRGAN" in printed and f"{table[0]['psnr_y']:10.4f}" in printed
  # The labels' PSNR is the whole image's (not the crop's): the bicubic one recomputed here with
  # numpy from the protocol (8-bit output, MATLAB rgb2ycbcr Y unrounded, 4 px shaved).
  hr0 = jio.modcrop(jio.load_image(images[0]).image, 4)[None]
  sr0 = np.asarray(evaluate.interpolation_fn("bicubic", 4)(evaluate.make_lr(hr0, 4))[0])
  luma = lambda im: (16 + 65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2])
  d = luma(np.round(np.clip(sr0, 0, 1) * 255) / 255) - luma(np.asarray(hr0[0], np.float64))
  psnr = 10 * np.log10(255.0**2 / np.mean(d[4:-4, 4:-4] ** 2))
  np.testing.assert_allclose(table[0]["psnr_y"], psnr, atol=1e-3)
