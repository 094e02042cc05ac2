"""Image loading and the evaluation CLI, on images the tests write themselves."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jsr import evaluate
from jsr import io as jio

jax.config.update("jax_disable_most_optimizations", True)


def _photo(h, w, seed=0):
  """A smooth colour image with some texture, uint8."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([np.sin(xx / 5.0 + c) * np.cos(yy / 7.0 - c) for c in range(3)], -1)
  img = 0.5 + 0.35 * base + 0.05 * rng.standard_normal((h, w, 3))
  return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def test_load_gray_rgba_palette_and_16bit(tmp_path):
  rgb = _photo(9, 7)
  Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
  rgba = np.concatenate([rgb, np.full((9, 7, 1), 128, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "a.png")
  Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
  g16 = (np.arange(63).reshape(9, 7) * 1000).astype(np.uint16)
  Image.fromarray(g16).save(tmp_path / "d.png")

  g = jio.load_image(tmp_path / "g.png")
  assert g.image.shape == (9, 7, 1) and g.alpha is None
  np.testing.assert_allclose(g.image[..., 0], rgb[..., 0] / 255, atol=1e-6)
  a = jio.load_image(tmp_path / "a.png")
  assert a.image.shape == (9, 7, 3) and a.alpha.shape == (9, 7, 1)
  np.testing.assert_allclose(a.image, rgb / 255, atol=1e-6)
  np.testing.assert_allclose(a.alpha, 128 / 255, atol=1e-6)
  assert jio.load_image(tmp_path / "p.png").image.shape == (9, 7, 3)
  d = jio.load_image(tmp_path / "d.png")
  assert d.bit_depth == 16 and d.image.shape == (9, 7, 1)
  np.testing.assert_allclose(d.image[..., 0], g16 / 65535, atol=1e-6)
  # Round trip through save_image keeps gray as gray and alpha as alpha.
  jio.save_image(tmp_path / "out.png", a.image, a.alpha)
  back = np.asarray(Image.open(tmp_path / "out.png"))
  np.testing.assert_array_equal(back, rgba)


def test_bad_files_name_the_file(tmp_path):
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
  (tmp_path / "notes.jpg").write_text("not an image")
  for name in ("broken.png", "notes.jpg"):
    with pytest.raises(jio.ImageError, match=name):
      jio.load_image(tmp_path / name)
  with pytest.raises(FileNotFoundError, match="no images"):
    jio.list_images(_empty(tmp_path))


def _empty(tmp_path):
  d = tmp_path / "empty"
  d.mkdir()
  return d


def test_evaluate_images_matches_independent_bicubic_psnr(tmp_path):
  for i in range(2):
    Image.fromarray(_photo(37 + i, 45, seed=i)).save(tmp_path / f"im{i}.png")
  paths = jio.list_images(tmp_path)
  res = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", 3), paths, 3, log=None)
  assert res["num_images"] == 2
  assert res["per_image"][0]["height"] == 36 and res["per_image"][0]["width"] == 45
  # Identity "SR" of an exact HR gives infinite PSNR: use a perfect oracle to check the plumbing.
  hr0 = jio.modcrop(jio.load_image(paths[0]).image, 3)
  oracle = evaluate.evaluate_images(lambda lr: jnp.asarray(hr0)[None], paths[:1], 3, log=None)
  assert math.isinf(oracle["mean"]["psnr_y"]) and oracle["mean"]["ssim_y"] == pytest.approx(1.0)
  # Bicubic is a real approximation: finite, and well above noise level on these smooth images.
  assert 20 < res["mean"]["psnr_y"] < 60 and 0.3 < res["mean"]["ssim_y"] < 1.0


def _cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "jsr.evaluate", *args], capture_output=True,
                        text=True, env=env, timeout=300)


def test_cli_good_and_bad_inputs(tmp_path):
  good = tmp_path / "good"
  good.mkdir()
  Image.fromarray(_photo(40, 44)).save(good / "a.png")
  Image.fromarray(_photo(40, 44, 1)[..., 0]).save(good / "gray.png")
  out = tmp_path / "r.json"
  r = _cli(f"--data={good}", "--scale=2", f"--output={out}")
  assert r.returncode == 0, r.stderr
  res = json.loads(out.read_text())
  assert res["num_images"] == 2 and {p["image"] for p in res["per_image"]} == {"a.png", "gray.png"}

  (good / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
  r = _cli(f"--data={good}", "--scale=2")
  assert r.returncode != 0 and "corrupt.png" in r.stderr and "Traceback" not in r.stderr
  r = _cli(f"--data={good}", "--scale=2", "--skip_bad")
  assert r.returncode == 0 and "corrupt.png" in r.stdout

  small = tmp_path / "small"
  small.mkdir()
  Image.fromarray(_photo(3, 3)).save(small / "tiny.png")
  r = _cli(f"--data={small}", "--scale=4")
  assert r.returncode != 0 and "tiny.png" in r.stderr and "smaller than the scale" in r.stderr

  r = _cli(f"--data={_empty(tmp_path)}", "--scale=2")
  assert r.returncode != 0 and "no images" in r.stderr and "Traceback" not in r.stderr
