"""The training input pipeline (jsr/data.py): sources, skipping bad files, crops, determinism."""

from __future__ import annotations

import logging

import ml_collections
import numpy as np
from PIL import Image
import pytest

from jsr import data

P = 16  # Patch size used throughout: small, and smaller than the test images.


def _photo(h: int, w: int, seed: int) -> np.ndarray:
  # Random pixels: every 16x16 window is unique, so a crop can be located exactly.
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
  """rgb, gray, RGBA and a nested JPEG-free PNG that work; a too-small image and a corrupt file."""
  d = tmp_path / "train"
  (d / "sub").mkdir(parents=True)
  images = {"rgb.png": _photo(40, 50, 0), "sub/nested.png": _photo(24, 30, 1)}
  for name, im in images.items():
    Image.fromarray(im).save(d / name)
  gray = _photo(32, 36, 2)[..., 0]
  Image.fromarray(gray).save(d / "gray.png")
  images["gray.png"] = np.repeat(gray[..., None], 3, axis=-1)
  rgba = np.concatenate([_photo(36, 20, 3), np.full((36, 20, 1), 7, np.uint8)], axis=-1)
  Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
  images["rgba.png"] = rgba[..., :3]
  Image.fromarray(_photo(P - 1, 64, 4)).save(d / "small.png")
  (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
  return d, images


def _config(source: str, **data_overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=50,
      data=dict(train=source, tfds_data_dir="", patch_size=P, batch_size=4, augment=True,
                backend="numpy")))
  config.data.update(data_overrides)
  return config


def test_folder_source_decodes_and_skips_with_warnings(folder, caplog):
  d, expected = folder
  with caplog.at_level(logging.WARNING):
    images, names = data.load_images(f"folder:{d}", P)
  got = {str(n)[len(str(d)) + 1:]: im for n, im in zip(names, images)}
  assert sorted(got) == sorted(expected)  # Recursive; small.png and corrupt.png left out.
  for name, im in got.items():
    assert im.dtype == np.uint8 and im.shape[-1] == 3  # Gray repeated, alpha dropped.
    np.testing.assert_array_equal(im, expected[name])
  warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
  assert "small.png" in warnings and "smaller than the 16-pixel patch" in warnings
  assert "corrupt.png" in warnings and "not a readable image" in warnings


def test_several_folders_and_bare_paths(folder, tmp_path):
  d, expected = folder
  other = tmp_path / "other"
  other.mkdir()
  Image.fromarray(_photo(20, 20, 9)).save(other / "x.png")
  images, names = data.load_images(f"folder:{d},{other}", P)
  assert len(images) == len(expected) + 1 and names[-1].endswith("x.png")


def test_empty_or_unusable_source_errors_name_it(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match=f"folder:{empty}.*no images"):
    data.load_images(f"folder:{empty}", P)
  bad = tmp_path / "bad"
  bad.mkdir()
  Image.fromarray(_photo(8, 8, 0)).save(bad / "tiny.png")
  with pytest.raises(ValueError, match=f"folder:{bad}.*no usable training images"):
    data.load_images(f"folder:{bad}", P)
  with pytest.raises(ValueError, match="does_not_exist"):
    data.load_images(f"folder:{tmp_path / 'does_not_exist'}", P)


def test_source_parsing():
  assert data._parse_source("samples") == [("samples", "train")]
  assert data._parse_source("folder:/a,/b, samples:eval,tfds:div2k/bicubic_x2") == [
      ("folder", "/a"), ("folder", "/b"), ("samples", "eval"), ("tfds", "div2k/bicubic_x2")]


def _find(patch: np.ndarray, images: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
  """(image, y, x, symmetry) of every window that equals `patch` up to the 8 symmetries."""
  found = []
  for sym in range(8):
    p = patch
    # Undo the pipeline's ops (applied as: flip lr, flip ud, transpose).
    if sym & 4:
      p = p.transpose(1, 0, 2)
    if sym & 2:
      p = p[::-1]
    if sym & 1:
      p = p[:, ::-1]
    for i, im in enumerate(images):
      win = np.lib.stride_tricks.sliding_window_view(im, (P, P, 3))[..., 0, :, :, :]
      ys, xs = np.nonzero(np.all(win == p, axis=(2, 3, 4)))
      found += [(i, int(y), int(x), sym) for y, x in zip(ys, xs)]
  return found


def test_patches_are_windows_of_the_images_with_all_symmetries(folder):
  d, _ = folder
  images, _ = data.load_images(f"folder:{d}", P)
  pool = data.make_pool(images)
  syms, used = set(), set()
  for step in range(12):
    batch = data.make_batch(pool, 0, step, 4, P, True)
    assert batch["image"].shape == (4, P, P, 3) and batch["image"].dtype == np.uint8
    for patch in batch["image"]:
      hits = _find(patch, images)
      assert len(hits) == 1, hits  # Exactly one image window, under one symmetry.
      used.add(hits[0][0])
      syms.add(hits[0][3])
  assert syms == set(range(8)) and used == set(range(len(images)))
  plain = data.make_batch(pool, 0, 0, 4, P, False)["image"]
  assert all(_find(p, images)[0][3] == 0 for p in plain)


def test_deterministic_and_resumable(folder):
  d, _ = folder
  config = _config(f"folder:{d}")
  images, _ = data.load_images(config.data.train, P)
  straight = list(data.get_train_iterator(config, 0, images))
  assert len(straight) == config.total_steps
  again = list(data.get_train_iterator(config, 0, images))
  for a, b in zip(straight, again):
    np.testing.assert_array_equal(a["image"], b["image"])
  # A run resumed at step 7 reads exactly batches 7, 8, ... of the straight run.
  resumed = list(data.get_train_iterator(config, 7, images))
  assert len(resumed) == config.total_steps - 7
  for a, b in zip(straight[7:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.array_equal(straight[0]["image"], straight[1]["image"])
  config.seed = 1
  other = next(data.get_train_iterator(config, 0, images))
  assert not np.array_equal(straight[0]["image"], other["image"])


@pytest.mark.requires_tf
def test_tf_data_backend_yields_the_numpy_batches(folder):
  d, _ = folder
  config = _config(f"folder:{d}")
  images, _ = data.load_images(config.data.train, P)
  config.data.backend = "numpy"
  ref = list(data.get_train_iterator(config, 3, images))
  config.data.backend = "tf"
  got = list(data.get_train_iterator(config, 3, images))
  assert len(got) == len(ref) == config.total_steps - 3
  for a, b in zip(ref, got):
    assert b["image"].dtype == np.uint8
    np.testing.assert_array_equal(a["image"], b["image"])
  config.data.backend = "torch"
  with pytest.raises(ValueError, match="data.backend"):
    data.get_train_iterator(config, 0, images)


def test_hosts_split_the_same_global_batch(folder):
  d, _ = folder
  images, _ = data.load_images(f"folder:{d}", P)
  pool = data.make_pool(images)
  full = data.make_batch(pool, 3, 5, 8, P, True)["image"]
  halves = [data.make_batch(pool, 3, 5, 8, P, True, slice(i * 4, (i + 1) * 4))["image"]
            for i in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), full)


@pytest.mark.requires_tf("tensorflow_datasets")
def test_tfds_source_uses_hr_feature():
  import tensorflow_datasets as tfds
  # Mock data follows the real builder's features (div2k: "hr" and "lr"), no download.
  with tfds.testing.mock_data(num_examples=3):
    images, names = data.load_images("tfds:div2k/bicubic_x2", 8)
  assert 1 <= len(images) <= 3 and names[0].startswith("tfds:div2k/bicubic_x2[")
  assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[-1] == 3 for im in images)
