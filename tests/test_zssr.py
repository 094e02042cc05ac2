"""ZSSR and the zero-shot engine: fathers, the learning-rate test, back-projection, the ensemble's
transforms, and a whole tiny run through jsr.zeroshot with resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jsr import io as jio
from jsr import zeroshot
from jsr.methods import zssr
from jsr.ops.resize import imresize
from tests.np_reference import imresize as ref_imresize  # MATLAB imresize.m, per pixel

ROOT = Path(__file__).resolve().parents[1]


def load_config(arg: str = "runlocal"):
  spec = importlib.util.spec_from_file_location("zssr_config", ROOT / "configs/zssr.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def photo(h: int, w: int, channels: int = 3) -> np.ndarray:
  """A crop of scikit-image's cat: real texture, so SR has something to do."""
  img = jio.load_image(jio.list_images("samples:eval")[0]).image
  return np.ascontiguousarray(img[100:100 + h, 150:150 + w, :channels])


def aug_config(**kw):
  a = load_config().zssr.augment
  a.update(kw)
  return a


# --- The learning-rate test (the reference's np.polyfit(..., cov=True) semantics). ---


def ols_slope_and_se(x, y):
  # Ordinary least squares, textbook form: se(slope)^2 = RSS / (n - 2) / sum((x - mean x)^2).
  x, y = np.asarray(x, float), np.asarray(y, float)
  xc = x - x.mean()
  slope = np.sum(xc * (y - y.mean())) / np.sum(xc ** 2)
  resid = y - (y.mean() + slope * xc)
  return slope, np.sqrt(np.sum(resid ** 2) / (len(x) - 2) / np.sum(xc ** 2))


@pytest.mark.parametrize("errors,expect", [
    ([5.0, 4.0, 3.1, 2.0, 1.05], False),    # Falling steadily: keep the learning rate.
    ([1.0, 1.02, 0.99, 1.01, 1.0], True),   # Flat within noise: cut it.
    ([1.0, 1.1, 1.2, 1.3, 1.45], True),     # Rising: cut it.
])
def test_learning_rate_test_matches_least_squares(errors, expect):
  steps = [50, 100, 150, 200, 250]
  slope, se = ols_slope_and_se(steps, errors)
  assert (-1.5 * slope < se) == expect  # The test's premise, from the formula.
  assert zssr.should_reduce_lr(steps, errors, 1.5) == expect


# --- Fathers. ---


def test_leave_as_is_father_is_a_crop_of_the_image():
  img = photo(40, 50)
  rng = np.random.default_rng(0)
  aug = aug_config(leave_as_is_probability=1.0, no_interpolate_probability=0.0)
  for _ in range(5):
    f = zssr.sample_father(img, 32, rng, aug)
    chex.assert_shape(f, (32, 32, 3))
    hits = [(y, x) for y in range(9) for x in range(19)
            if np.array_equal(img[y:y + 32, x:x + 32], f)]
    assert hits, "not a crop of the input"


def test_no_interp_father_is_a_dihedral_transform_of_a_crop():
  img = photo(32, 32)
  aug = aug_config(leave_as_is_probability=0.0, no_interpolate_probability=1.0)
  f = zssr.sample_father(img, 32, np.random.default_rng(3), aug)
  variants = [np.rot90(img, k) for k in range(4)] + [np.rot90(img, k)[:, ::-1] for k in range(4)]
  assert any(np.array_equal(f, v) for v in variants)


def test_affine_father_without_motion_is_the_image():
  # Scale 1, no shear, no rotation, image = father size: the map is the identity, and cubic
  # resampling at integer positions returns the pixels.
  img = photo(24, 24)
  aug = aug_config(leave_as_is_probability=0.0, no_interpolate_probability=0.0, min_scale=1.0,
                   scale_diff_sigma=0.0, shear_sigma=0.0, allow_rotation=False)
  f = zssr.sample_father(img, 24, np.random.default_rng(0), aug)
  np.testing.assert_allclose(f, img, atol=1e-5)


def test_affine_fathers_are_in_range_and_vary():
  img = photo(48, 64)
  aug = aug_config(leave_as_is_probability=0.0, no_interpolate_probability=0.0)
  rng = np.random.default_rng(1)
  fs = [zssr.sample_father(img, 32, rng, aug) for _ in range(4)]
  for f in fs:
    chex.assert_shape(f, (32, 32, 3))
    assert f.dtype == np.float32 and 0.0 <= f.min() and f.max() <= 1.0
  assert not np.allclose(fs[0], fs[1])


def test_father_size_and_too_small_input():
  assert zssr.father_size((200, 300, 3), 128, 3) == 126
  assert zssr.father_size((50, 90, 3), 128, 2) == 50
  with pytest.raises(ValueError, match="3x40 is too small"):
    zssr.father_size((3, 40, 3), 128, 2)


# --- The output: ensemble transforms and back-projection. ---


def test_dihedral_maps_are_the_references_and_invert():
  x = jnp.asarray(np.random.default_rng(0).random((1, 3, 5, 2)), jnp.float32)
  xn = np.asarray(x[0])
  for k in range(8):
    fwd, inv = zssr._dihedral(k)
    ref = np.rot90(xn, k) if k < 4 else np.fliplr(np.rot90(xn, k))  # ZSSR's final_test.
    np.testing.assert_array_equal(np.asarray(fwd(x)[0]), ref)
    np.testing.assert_array_equal(np.asarray(inv(fwd(x))), np.asarray(x))


def test_back_projection_makes_the_output_consistent_with_the_input():
  hr = jnp.asarray(photo(48, 48)[None])
  lr = imresize(hr, 0.5)
  degrade_fn = lambda x: imresize(x, 0.5)
  start = jnp.clip(imresize(lr, 2) + 0.05 * jnp.sin(jnp.arange(48.0))[None, :, None, None],
                   0.0, 1.0)
  err = lambda sr: float(jnp.sqrt(jnp.mean((degrade_fn(sr) - lr) ** 2)))
  one = zssr.back_project(start, lr, degrade_fn, 2, 1)
  ten = zssr.back_project(start, lr, degrade_fn, 2, 10)
  assert err(ten) < err(one) < err(start)
  assert err(ten) < 0.1 * err(start)


def test_too_short_slope_range_is_an_error():
  config = load_config()
  config.zssr.slope_range = 2 * config.zssr.test_every
  with pytest.raises(ValueError, match="must cover at least three tests"):
    zssr.check_config(config)


# --- A whole run. ---


def test_super_resolve_trains_and_returns_the_output_size():
  config = load_config()
  lr = photo(20, 26)
  sr, log = zssr.super_resolve(lr, config, seed=0)
  chex.assert_shape(sr, (40, 52, 3))
  assert 0.0 <= sr.min() and sr.max() <= 1.0
  assert log["iterations"] == config.zssr.max_iters
  mses = [m for _, m in log["rec_mse"]]
  assert len(mses) == config.zssr.max_iters // config.zssr.test_every
  assert mses[-1] < mses[0]  # Training on the image's own son lowers its reconstruction error.
  gray, _ = zssr.super_resolve(lr[..., :1], config, seed=0)
  chex.assert_shape(gray, (40, 52, 1))


def test_zeroshot_run_scores_resumes_and_refuses_another_config(tmp_path, monkeypatch):
  hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
  hr_dir.mkdir()
  lr_dir.mkdir()
  Image.fromarray(np.round(photo(40, 44) * 255).astype(np.uint8)).save(hr_dir / "cat.png")
  Image.fromarray(np.round(photo(30, 30, 1)[..., 0] * 255).astype(np.uint8)).save(hr_dir / "g.png")
  Image.fromarray(np.round(photo(16, 18) * 255).astype(np.uint8)).save(lr_dir / "mine.png")
  config = load_config()
  config.eval.sets = f"tiny={hr_dir}"
  config.data.inputs = str(lr_dir)
  workdir = tmp_path / "w"

  rows = zeroshot.run(config, str(workdir))
  assert [(r["set"], r["image"]) for r in rows] == [("tiny", "cat.png"), ("tiny", "g.png"),
                                                     ("inputs", "mine.png")]
  for r in rows[:2]:
    assert 15 < r["bicubic_psnr_y"] < 60 and 15 < r["psnr_y"] < 60
    # Back-projection and the x8 median alone already beat plain bicubic on a real photo.
    assert r["psnr_y"] > r["bicubic_psnr_y"]
  chex.assert_shape(np.asarray(Image.open(workdir / "images/tiny/cat.png")), (40, 44, 3))
  chex.assert_shape(np.asarray(Image.open(workdir / "images/tiny/g.png")), (30, 30))
  chex.assert_shape(np.asarray(Image.open(workdir / "images/inputs/mine.png")), (32, 36, 3))
  metrics = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert metrics[-1]["eval/tiny_x2/psnr_y"] == pytest.approx(
      np.mean([r["psnr_y"] for r in rows[:2]]))

  # Resume: a rerun finds every image done and trains nothing.
  calls = []
  monkeypatch.setattr(zssr, "super_resolve", lambda *a, **k: calls.append(a))
  assert len(zeroshot.run(config, str(workdir))) == 3 and not calls

  config.zssr.lr = 5e-4
  with pytest.raises(ValueError, match=r"another config[\s\S]*zssr.lr: 0.00\d+ -> 0.0005"):
    zeroshot.run(config, str(workdir))


@pytest.mark.parametrize("pad", ["mirror", "black"])
def test_affine_father_padding_where_the_map_leaves_the_image(pad):
  # A rotated father of the image's own size reaches outside it at the corners: zeros there with
  # black padding (the reference's cv2 warp), image content with mirror padding.
  img = np.clip(photo(32, 32) + 0.2, 0.0, 1.0)  # No true black pixel in the image itself.
  aug = aug_config(leave_as_is_probability=0.0, no_interpolate_probability=0.0, min_scale=1.0,
                   scale_diff_sigma=0.0, shear_sigma=0.0, pad=pad)
  rng = np.random.default_rng(7)
  fathers = [zssr.sample_father(img, 32, rng, aug) for _ in range(6)]
  black = sum(int((f.max(-1) < 0.02).sum()) for f in fathers)
  if pad == "black":
    assert black > 20  # Several whole corners.
  else:
    assert black == 0
  with pytest.raises(ValueError, match="augment.pad"):
    zssr.sample_father(img, 32, rng, aug_config(pad="zeros"))


# --- Gradual ZSSR (the reference's X2_GRADUAL_IDEAL_CONF). ---


def test_imresize_with_scale_and_size_samples_matlabs_grid():
  # MATLAB's output pixel i (1-based) reads input coordinate i / scale + (1 - 1 / scale) / 2, a
  # function of i and the scale only: giving a smaller size keeps the first rows and columns.
  x = photo(9, 7)
  full = imresize(jnp.asarray(x), scale=(2.0, 1.5))  # 18 x 11 (ceil 10.5)
  part = imresize(jnp.asarray(x), scale=(2.0, 1.5), out_shape=(17, 10))
  np.testing.assert_allclose(np.asarray(part), np.asarray(full)[:17, :10], atol=1e-6)
  # ... and MATLAB's imresize.m written per output pixel, given both the size and the scales.
  np.testing.assert_allclose(np.asarray(part), ref_imresize(x, 17, 10, 2.0, 1.5), atol=1e-5)
  # A scale of 1 along an axis is the identity there (cubic weights 1 at 0, 0 at +-1, +-2).
  np.testing.assert_allclose(np.asarray(imresize(x, scale=(1.0, 1.0))), np.asarray(x), atol=1e-6)


def test_gradual_sources_are_picked_by_the_references_rule():
  # Two sources: the input (zeros, base 1.0) and a 1.5x output (ones, base 1.5). Crops only: the
  # drawn scale is U(0.5, 1.5), and the reference takes the first source whose base is at least
  # it, so half the fathers come from the 1.5x output; a leave-as-is father is always the input.
  small, big = np.zeros((40, 40, 3), np.float32), np.ones((60, 60, 3), np.float32)
  rng = np.random.default_rng(0)
  aug = aug_config(leave_as_is_probability=0.0, no_interpolate_probability=1.0)
  means = [zssr.sample_father(small, 32, rng, aug, [small, big], [1.0, 1.5]).mean()
           for _ in range(400)]
  assert set(np.unique(means)) == {0.0, 1.0}
  assert abs(np.mean(means) - 0.5) < 0.08
  aug = aug_config(leave_as_is_probability=1.0, no_interpolate_probability=0.0)
  assert all(zssr.sample_father(small, 32, rng, aug, [small, big], [1.0, 1.5]).max() == 0.0
             for _ in range(20))
  assert zssr.pick_source(1.2, [1.0, 1.0, 1.0, 1.5, 1.5, 2.0]) == 3


def test_gradual_back_projection_is_consistent_at_anisotropic_scales():
  lr = jnp.asarray(photo(15, 13)[None])
  sf = (1.5, 2.0)
  sr0 = jnp.clip(imresize(lr, scale=sf) + 0.05, 0.0, 1.0)
  chex.assert_shape(sr0, (1, 23, 26, 3))  # ceil(22.5), 26
  down = lambda sr: imresize(sr, scale=(1 / 1.5, 0.5), out_shape=(15, 13))
  err = lambda sr: float(jnp.sqrt(jnp.mean((down(sr) - lr) ** 2)))
  sr = zssr.back_project(sr0, lr, None, 2, 10, sf=sf)
  chex.assert_shape(sr, sr0.shape)
  assert err(sr) < 0.1 * err(sr0)


def test_gradual_run_trains_each_stage_and_checks_its_stages():
  config = load_config("runlocal,gradual=True")
  assert config.zssr.gradual == "1x1.5,1.5x1,1.5x1.5,1.5x2,2x1.5,2x2"  # X2_GRADUAL_IDEAL_CONF
  config.zssr.gradual, config.zssr.gradual_back_projection_iters = "1x1.5,2x2", "1,2"
  config.zssr.max_iters = 20
  lr = photo(21, 25)
  sr, log = zssr.super_resolve(lr, config, seed=0)
  chex.assert_shape(sr, (42, 50, 3))
  assert [st["scale"] for st in log["stages"]] == [[1.0, 1.5], [2.0, 2.0]]
  assert log["iterations"] == sum(st["iterations"] for st in log["stages"]) == 40
  with pytest.raises(ValueError, match="given kernel"):
    zssr.super_resolve(lr, config, kernel=np.ones((3, 3)) / 9)
  config.zssr.gradual = "1.5x1.5"
  with pytest.raises(ValueError, match="must end at the run's scale 2x2"):
    zssr.check_config(config)
  config.zssr.gradual = "1.5x1.5,2x2,2x2"
  with pytest.raises(ValueError, match="one value per stage"):
    zssr.check_config(config)
  with pytest.raises(ValueError, match="gradual=True is the reference's x2"):
    load_config("runlocal,gradual=True,scale=4")
