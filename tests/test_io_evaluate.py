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
from tests import np_reference

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


# -- EXIF orientation ----------------------------------------------------------------------------

# The EXIF spec's Orientation table, as "what to do to the stored pixels to show them upright",
# written with numpy alone (np.rot90 with k=-1 turns clockwise).
_EXIF_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                       # mirror horizontal
    3: lambda a: np.rot90(a, 2),                   # rotate 180
    4: lambda a: a[::-1, :],                       # mirror vertical
    5: lambda a: np.swapaxes(a, 0, 1),             # transpose: mirror horizontal, rotate 270 CW
    6: lambda a: np.rot90(a, -1),                  # rotate 90 CW
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),    # transverse: mirror horizontal, rotate 90 CW
    8: lambda a: np.rot90(a, 1),                   # rotate 90 CCW (270 CW)
}


def _exif(orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation  # Orientation
  return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_applies_exif_orientation_png(tmp_path, orientation):
  # Non-square, every pixel distinct: a wrong rotation, flip or transpose cannot match.
  stored = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
  path = tmp_path / f"o{orientation}.png"
  Image.fromarray(stored).save(path, exif=_exif(orientation))
  with Image.open(path) as im:  # the tag really is in the file
    assert im.getexif()[0x0112] == orientation
  img = jio.load_image(path)
  np.testing.assert_array_equal(img.image * 255, _EXIF_UPRIGHT[orientation](stored))
  # A few points by hand for the phone case (6: the camera was turned clockwise).
  if orientation == 6:
    assert img.image.shape == (7, 5, 3)
    np.testing.assert_array_equal(img.image[0, -1] * 255, stored[0, 0])   # top-left -> top-right
    np.testing.assert_array_equal(img.image[-1, 0] * 255, stored[-1, -1])


def test_load_applies_exif_orientation_jpeg_16bit_and_alpha(tmp_path):
  yy, xx = np.mgrid[0:24, 0:40]
  stored = np.stack([128 + 90 * np.sin(xx / 5.0 + c) * np.cos(yy / 4.0) for c in range(3)], -1)
  stored = np.round(stored).astype(np.uint8)  # smooth, so JPEG keeps it within a few levels
  Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, subsampling=0, exif=_exif(6))
  with Image.open(tmp_path / "phone.jpg") as im:
    decoded = np.asarray(im.convert("RGB"))  # PIL's decoding of the stored pixels, not rotated
  img = jio.load_image(tmp_path / "phone.jpg")
  np.testing.assert_array_equal(img.image * 255, np.rot90(decoded, -1))
  err = lambda ref: np.abs(img.image * 255 - ref.astype(float)).mean()
  assert err(np.rot90(stored, -1)) < 2 and err(np.rot90(stored, 1)) > 20  # JPEG loss vs wrong turn
  # 16-bit gray (mode I;16) and RGBA (alpha turned with the colours).
  g16 = (np.arange(6 * 9).reshape(6, 9) * 1201).astype(np.uint16)
  Image.fromarray(g16).save(tmp_path / "d.png", exif=_exif(8))
  d = jio.load_image(tmp_path / "d.png")
  assert d.bit_depth == 16
  np.testing.assert_allclose(d.image[..., 0] * 65535, np.rot90(g16, 1), atol=1e-2)
  rgba = np.concatenate([stored, np.arange(24 * 40).reshape(24, 40, 1).astype(np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "a.png", exif=_exif(3))
  a = jio.load_image(tmp_path / "a.png")
  np.testing.assert_array_equal(a.image * 255, np.rot90(rgba[..., :3], 2))
  np.testing.assert_array_equal(a.alpha * 255, np.rot90(rgba[..., 3:], 2))


# -- evaluate_images end to end, against the protocol in numpy -------------------------------------

def _bench_image(h, w, channels, seed):
  """uint8 test image: smooth waves, noise, and a saturated block so bicubic overshoot clips."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([np.sin(xx / 4.0 + 1.7 * c) * np.cos(yy / 6.0 - c) for c in range(channels)], -1)
  img = 0.5 + 0.4 * base + 0.06 * rng.standard_normal((h, w, channels))
  img[5:15, 8:20] = 1.0
  img[20:26, 30:40] = 0.0
  return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _offset_levels(h, w, channels):
  """A fixed perturbation in 8-bit levels: integers -5..5 plus +-0.3, so rounding it back to 8 bits
  matters (0.3 levels everywhere) but no value sits near a rounding tie."""
  yy, xx = np.mgrid[0:h, 0:w]
  c = np.arange(channels)
  k = np.round(5 * np.sin(0.7 * yy[..., None] + 0.45 * xx[..., None] + c))
  return k + 0.3 * np.where(np.cos(0.9 * xx[..., None] - 0.5 * yy[..., None] + c) > 0, 1, -1)


def _np_protocol(hr_u8, scale, offset):
  """(PSNR-Y, SSIM-Y) of bicubic SR (+ offset in 8-bit levels) by the papers' protocol, in numpy."""
  hr = hr_u8.astype(np.float64)
  h, w = hr.shape[:2]
  hr = hr[: h - h % scale, : w - w % scale]                              # modcrop
  h, w = hr.shape[:2]
  lr = np_reference.imresize(hr, h // scale, w // scale, 1 / scale, 1 / scale, uint8=True)
  sr = np_reference.imresize(lr, h, w, scale, scale, uint8=True)       # bicubic, 8-bit passes
  if offset:
    sr = sr + _offset_levels(h, w, hr.shape[-1])
  sr = np.floor(np.clip(sr, 0, 255) + 0.5)                              # saved as 8-bit
  if hr.shape[-1] == 3:
    hr, sr = np_reference.y255(hr), np_reference.y255(sr)               # MATLAB rgb2ycbcr Y
  else:
    hr, sr = hr[..., 0], sr[..., 0]                                     # gray: its own values
  hr, sr = hr[scale:-scale, scale:-scale], sr[scale:-scale, scale:-scale]  # shave = scale
  return np_reference.psnr(sr, hr), np_reference.ssim(sr, hr)


@pytest.mark.parametrize("scale", [2, 3])
def test_evaluate_images_equals_numpy_protocol(tmp_path, scale):
  """Every step of the chain (modcrop, uint8 MATLAB bicubic down and up, 8-bit output, Y, shave,
  PSNR, SSIM) against numpy: a change in any rounding, even of exact ties in a few pixels, fails."""
  images = {"a.png": _bench_image(40, 52, 3, 0), "b.png": _bench_image(43, 47, 3, 1),
            "g.png": _bench_image(40, 52, 1, 2)}
  for name, arr in images.items():
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(tmp_path / name)
  paths = jio.list_images(tmp_path)
  bicubic = evaluate.interpolation_fn("bicubic", scale)

  def perturbed(lr):
    sr = bicubic(lr)
    return sr + jnp.asarray(_offset_levels(*sr.shape[1:]) / 255, sr.dtype)[None]

  for offset, sr_fn in ((False, bicubic), (True, perturbed)):
    res = evaluate.evaluate_images(sr_fn, paths, scale, log=None)
    assert [r["image"] for r in res["per_image"]] == sorted(images)
    for row in res["per_image"]:
      ref_psnr, ref_ssim = _np_protocol(images[row["image"]], scale, offset)
      # float32 vs float64 leaves ~5e-6 dB and ~1e-6; a tie rounded the other way in a few LR
      # pixels moves them by up to 7e-4 dB and 4e-5 (measured), so the tolerances sit between.
      assert row["psnr_y"] == pytest.approx(ref_psnr, abs=1e-4), (row, offset)
      assert row["ssim_y"] == pytest.approx(ref_ssim, abs=1e-5), (row, offset)
      assert 15 < ref_psnr < 45 and 0.3 < ref_ssim < 0.99  # neither trivial nor broken
    np.testing.assert_allclose(res["mean"]["psnr_y"],
                               np.mean([r["psnr_y"] for r in res["per_image"]]), rtol=1e-12)


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
