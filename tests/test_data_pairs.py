"""Given LR/HR pairs (`pairs:` source, .npy arrays) and prepared sets (jsr.prepare, `records:`).

The references are independent of the code: LR files are made in the test as the s x s block mean
of the HR image, so an aligned LR/HR crop pair must satisfy lr == round(blockmean(hr)) under any
of the 8 symmetries (block means commute with flips and transposes); prepared sub-images must be
windows of the original photos at the corners BasicSR's rule gives, written out here.
"""

from __future__ import annotations

import json
import logging
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest

from jsr import data
from jsr import errors
from jsr import io as jio
from jsr import prepare
from jsr import records

import test_data  # pylint: disable=g-bad-import-order  (tests/ is on sys.path under pytest)

S = 2   # Scale of the pairs.
P = 16  # HR patch.


def _photo(h, w, seed, channels=3):
  return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def _block_mean(hr: np.ndarray, s: int = S) -> np.ndarray:
  """(..., H, W, C) uint8 -> (..., H/s, W/s, C) uint8, round(mean of each s x s block)."""
  *lead, h, w, c = hr.shape
  blocks = hr[..., : h - h % s, : w - w % s, :].astype(np.float64)
  blocks = blocks.reshape(*lead, h // s, s, w // s, s, c)
  return np.round(blocks.mean(axis=(-4, -2))).astype(np.uint8)


def _config(source, scale=S, **data_overrides):
  config = ml_collections.ConfigDict(dict(
      seed=0, scale=scale, total_steps=20,
      data=dict(train=source, tfds_data_dir="", patch_size=P, batch_size=4, augment=True,
                backend="numpy")))
  config.data.update(data_overrides)
  return config


@pytest.fixture
def pairs(tmp_path):
  """DIV2K-style names; LR as .npy (uint8 HWC, float [0,1], float [0,255]) and PNG; HR as PNG
  (one with a row and column more than 2 x LR, as modcrop leaves it)."""
  lr_dir, hr_dir = tmp_path / "LR", tmp_path / "HR"
  lr_dir.mkdir()
  hr_dir.mkdir()
  hrs = {"0001": _photo(40, 48, 0), "0002": _photo(37, 45, 1), "0003": _photo(32, 34, 2),
         "0004": _photo(36, 40, 3)}
  for name, hr in hrs.items():
    Image.fromarray(hr).save(hr_dir / f"{name}.png")
  lrs = {k: _block_mean(v) for k, v in hrs.items()}
  np.save(lr_dir / "0001x2.npy", lrs["0001"])
  np.save(lr_dir / "0002x2.npy", lrs["0002"].astype(np.float32) / 255.0)
  np.save(lr_dir / "0003x2.npy", lrs["0003"].astype(np.float64))
  Image.fromarray(lrs["0004"]).save(lr_dir / "0004x2.png")
  return lr_dir, hr_dir, hrs, lrs


# ------------------------------------------------------------------------------------------------
# Names and arrays.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr,hr", [("0001x4.png", "0001.png"),        # DIV2K
                                   ("Canon_001_LR4.png", "Canon_001_HR.png"),  # RealSR
                                   ("img_001_SRF_4_LR.png", "img_001_SRF_4_HR.png"),  # SelfExSR
                                   ("baby_LRx4.npy", "baby.png"),
                                   ("comic_lr.npy", "comic_gt.png")])
def test_pair_names_match(lr, hr):
  assert jio.pair_key(lr) == jio.pair_key(hr)
  assert jio.match_pairs([f"/l/{lr}"], [f"/h/{hr}"]) == [(f"/l/{lr}", f"/h/{hr}")]


def test_unmatched_files_are_named():
  with pytest.raises(FileNotFoundError) as e:
    jio.match_pairs(["/l/0001x4.png", "/l/0009x4.png"], ["/h/0001.png", "/h/0002.png"], "/l", "/h")
  msg = str(e.value)
  assert "HR file(s) without an LR file in /l: /h/0002.png" in msg
  assert "LR file(s) without an HR file in /h: /l/0009x4.png" in msg


def test_npy_arrays_accepted_and_refused(tmp_path):
  u8 = _photo(5, 6, 0)
  cases = {"u8.npy": (u8, u8 / 255.0), "gray.npy": (u8[..., 0], u8[..., :1] / 255.0),
           "f01.npy": (u8 / 255.0, u8 / 255.0), "f255.npy": (u8.astype(np.float32), u8 / 255.0),
           "u16.npy": (u8.astype(np.uint16) * 257, u8 / 255.0),
           "rgba.npy": (np.concatenate([u8, u8[..., :1]], -1), u8 / 255.0)}
  for name, (arr, want) in cases.items():
    np.save(tmp_path / name, arr)
    got = jio.load_image(tmp_path / name).image
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)
  bad = {"chw.npy": np.zeros((3, 5, 6), np.uint8), "neg.npy": -np.ones((4, 4, 3)),
         "big.npy": np.full((4, 4, 3), 300.0), "nan.npy": np.full((4, 4), np.nan),
         "int64.npy": np.zeros((4, 4, 3), np.int64),
         "obj.npy": np.array([{"a": 1}], dtype=object)}
  for name, arr in bad.items():
    np.save(tmp_path / name, arr, allow_pickle=True)
    with pytest.raises(jio.ImageError, match=name):
      jio.load_image(tmp_path / name)
  (tmp_path / "trunc.npy").write_bytes((tmp_path / "u8.npy").read_bytes()[:100])
  with pytest.raises(jio.ImageError, match="trunc.npy"):
    jio.load_image(tmp_path / "trunc.npy")


def test_pair_sizes_checked():
  assert jio.check_pair_size("l", "h", (10, 12), (40, 48), 4) == 4
  assert jio.check_pair_size("l", "h", (10, 12), (43, 51), 4) == 4  # modcrop tolerance
  assert jio.check_pair_size("l", "h", (40, 48), (40, 48), 4) == 1  # pre-upsampled
  with pytest.raises(jio.ImageError, match=r"l \(10x12\) and h \(44x48\)"):
    jio.check_pair_size("l", "h", (10, 12), (44, 48), 4)


# ------------------------------------------------------------------------------------------------
# The pairs: source.
# ------------------------------------------------------------------------------------------------


def _assert_aligned(batch):
  assert batch["image"].shape[1:] == (P, P, 3) and batch["lr"].shape[1:] == (P // S, P // S, 3)
  np.testing.assert_array_equal(batch["lr"], _block_mean(batch["image"]))


def test_pairs_source_gives_aligned_crops_with_all_symmetries(pairs):
  lr_dir, hr_dir, hrs, _ = pairs
  config = _config(f"pairs:{lr_dir},{hr_dir}")
  ts = data.load_train_set(config)
  assert ts.ratio == S and len(ts) == 4
  found_syms = set()
  for step in range(10):
    batch = data.make_batch(ts, 0, step, 4, P, True)
    _assert_aligned(batch)
    for patch in batch["image"]:
      hits = test_data._find(patch, list(hrs.values()))  # pylint: disable=protected-access
      assert len(hits) == 1
      _, y, x, sym = hits[0]
      found_syms.add(sym)
      assert y % S == 0 and x % S == 0  # HR corner = S x the LR corner.
  assert found_syms == set(range(8))
  # Several pairs sources, and both backends, give the same batches as one.
  it = data.get_train_iterator(_config(f"pairs:{lr_dir},{hr_dir},pairs:{lr_dir},{hr_dir}"), 0)
  _assert_aligned(next(it))


@pytest.mark.requires_tf
def test_pairs_tf_backend_yields_the_numpy_batches(pairs):
  lr_dir, hr_dir, _, _ = pairs
  ref = list(data.get_train_iterator(_config(f"pairs:{lr_dir},{hr_dir}"), 15))
  got = list(data.get_train_iterator(_config(f"pairs:{lr_dir},{hr_dir}", backend="tf"), 15))
  assert len(ref) == len(got) == 5
  for a, b in zip(ref, got):
    assert set(b) == {"image", "lr"}
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_pairs_source_errors_name_the_files(pairs, caplog):
  lr_dir, hr_dir, hrs, _ = pairs
  Image.fromarray(_photo(20, 20, 9)).save(hr_dir / "0005.png")
  with pytest.raises(errors.UserError, match=f"without an LR file in {lr_dir}: {hr_dir}/0005.png"):
    data.load_train_set(_config(f"pairs:{lr_dir},{hr_dir}"))
  os.remove(hr_dir / "0005.png")
  # A wrong size ratio and a corrupt array are skipped with a warning naming them.
  np.save(lr_dir / "0003x2.npy", np.zeros((10, 10, 3), np.uint8))
  (lr_dir / "0004x2.png").unlink()
  (lr_dir / "0004x2.npy").write_bytes(b"not an array")
  with caplog.at_level(logging.WARNING):
    ts = data.load_train_set(_config(f"pairs:{lr_dir},{hr_dir}"))
  assert len(ts) == 2
  warnings = "\n".join(r.getMessage() for r in caplog.records)
  assert f"{lr_dir}/0003x2.npy (10x10) and {hr_dir}/0003.png (32x34)" in warnings
  assert f"{lr_dir}/0004x2.npy: not a readable .npy array" in warnings
  with pytest.raises(errors.UserError, match="cannot be mixed"):
    data.load_train_set(_config(f"pairs:{lr_dir},{hr_dir},folder:{hr_dir}"))
  with pytest.raises(errors.UserError, match="pairs:LR_DIR,HR_DIR"):
    data.load_train_set(_config(f"pairs:{lr_dir}"))


def test_equal_size_pairs(tmp_path):
  """LR images already at the HR size (RealSR-style): crops at the same place, same size."""
  lr_dir, hr_dir = tmp_path / "lr", tmp_path / "hr"
  lr_dir.mkdir()
  hr_dir.mkdir()
  for i in range(2):
    hr = _photo(30, 36, i)
    Image.fromarray(hr).save(hr_dir / f"im{i}_HR.png")
    np.save(lr_dir / f"im{i}_LR.npy", 255 - hr)
  ts = data.load_train_set(_config(f"pairs:{lr_dir},{hr_dir}", scale=4))
  assert ts.ratio == 1
  batch = data.make_batch(ts, 1, 2, 6, P, True)
  assert batch["lr"].shape == batch["image"].shape == (6, P, P, 3)
  np.testing.assert_array_equal(batch["lr"], 255 - batch["image"])


# ------------------------------------------------------------------------------------------------
# Prepared sets.
# ------------------------------------------------------------------------------------------------


def _basicsr_positions(n, crop, step):
  # BasicSR scripts/data_preparation/extract_subimages.py with thresh_size = 0.
  space = np.arange(0, n - crop + 1, step)
  if n - (space[-1] + crop) > 0:
    space = np.append(space, n - crop)
  return list(space)


def test_prepared_photos_are_windows_of_the_photos(tmp_path):
  src = tmp_path / "photos"
  src.mkdir()
  photos = {"a.png": _photo(40, 50, 0), "b.png": _photo(33, 21, 1), "c.png": _photo(12, 40, 2)}
  for name, im in photos.items():
    Image.fromarray(im).save(src / name)
  out = tmp_path / "set"
  index = prepare.prepare_photos(jio.list_images(src), str(out), crop=20, step=12,
                                 shard_records=5, log=None)
  want = [(k, y, x) for k, im in enumerate(photos.values()) if min(im.shape[:2]) >= 20
          for y in _basicsr_positions(im.shape[0], 20, 12)
          for x in _basicsr_positions(im.shape[1], 20, 12)]
  np.testing.assert_array_equal(np.load(out / "positions.npy"), want)
  rs = records.open_records(out)
  assert len(rs) == index["count"] == len(want) and len(rs.hr.paths) == -(-len(want) // 5)
  ims = list(photos.values())
  for i, (k, y, x) in enumerate(want):
    np.testing.assert_array_equal(rs.hr.read(i), ims[k][y:y + 20, x:x + 20])
  # Training batches from it are windows of the photos, under the 8 symmetries.
  ts = data.load_train_set(_config(f"records:{out}"))
  syms = set()
  for step in range(8):
    for patch in data.make_batch(ts, 0, step, 4, P, True)["image"]:
      hits = test_data._find(patch, ims[:2])  # pylint: disable=protected-access  (c.png: too small)
      assert len(hits) >= 1
      syms.add(hits[0][3])
  assert syms == set(range(8))
  with pytest.raises(records.RecordsError, match="already holds"):
    prepare.prepare_photos(jio.list_images(src), str(out), 20, 12, 5, log=None)
  with pytest.raises(errors.UserError, match="larger than the prepared 20-pixel"):
    data.load_train_set(_config(f"records:{out}", patch_size=24))


def test_prepared_pairs_stay_aligned_and_hosts_read_only_their_rows(pairs, tmp_path, monkeypatch):
  lr_dir, hr_dir, _, _ = pairs
  out = tmp_path / "pairs_set"
  index = prepare.prepare_pairs(str(lr_dir), str(hr_dir), S, str(out), crop=24, step=8,
                                shard_records=7, log=None)
  assert index["lr_crop"] == 12 and index["count"] > 7
  ts = data.load_train_set(_config(f"records:{out}"))
  assert ts.ratio == S
  for step in range(6):
    _assert_aligned(data.make_batch(ts, 3, step, 8, P, True))

  reads = []
  real = os.pread
  monkeypatch.setattr(records.os, "pread", lambda fd, n, at: reads.append(fd) or real(fd, n, at))
  full = data.make_batch(ts, 3, 5, 8, P, True)
  assert len(reads) == 16  # 8 rows, an HR and an LR read each.
  reads.clear()
  mine = data.make_batch(ts, 3, 5, 8, P, True, rows=np.array([1, 6]))
  assert len(reads) == 4  # This host's 2 rows only.
  for k in full:
    np.testing.assert_array_equal(mine[k], full[k][[1, 6]])


def test_prepared_set_errors_name_the_file(tmp_path):
  with pytest.raises(records.RecordsError, match=f"{tmp_path}: no index.json"):
    records.open_records(tmp_path)
  src = tmp_path / "photos"
  src.mkdir()
  Image.fromarray(_photo(30, 30, 0)).save(src / "a.png")
  out = tmp_path / "set"
  prepare.prepare_photos(jio.list_images(src), str(out), 16, 8, 100, log=None)
  shard = out / "hr-00000.npy"
  shard.write_bytes(shard.read_bytes()[:-10])
  with pytest.raises(records.RecordsError, match=f"{shard}: truncated"):
    records.open_records(out)
  index = json.loads((out / "index.json").read_text())
  (out / "index.json").write_text(json.dumps({**index, "version": 99}))
  with pytest.raises(errors.UserError, match="version 99"):
    data.load_train_set(_config(f"records:{out}"))
