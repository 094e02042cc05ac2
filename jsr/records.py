"""Prepared training sets: fixed-size sub-images in sharded `.npy` files, read by random access.

`python -m jsr.prepare` (jsr/prepare.py) writes a folder:

  index.json            {"format": "jsr-records", "version": 1, "crop": S, "lr_crop": S/r or null,
                         "count": N, "shards": [{"hr": "hr-00000.npy", "lr": ..., "count": n}],
                         "sources": [the photos' paths], ...}
  hr-00000.npy ...      uint8 (n, S, S, 3): the HR sub-images, in index order across shards
  lr-00000.npy ...      uint8 (n, S/r, S/r, 3) when prepared from LR/HR pairs (else absent); r is
                        the pairs' size ratio: the scale, or 1 for LR images upsampled to HR size
  positions.npy         int32 (N, 3): (source image, y, x) of each sub-image, for provenance

Why raw arrays and not ArrayRecord/LMDB of PNGs (BasicSR's choice): a training sample is a P-pixel
crop of one sub-image, and with fixed-size uncompressed records that crop is one `os.pread` of P
rows at a computed offset -- no decoder, no index lookup, no library beyond numpy, and a 2-core
host delivers ~10^4 crops/s (docs/data.md) where decoding a 480-px PNG sub-image per sample
costs milliseconds. The price is disk: the set takes its decoded size (DIV2K + Flickr2K
sub-images: ~28 GB instead of ~12 GB of PNG). Files are standard `.npy`, so
`np.load(f, mmap_mode="r")` opens them anywhere. We read with pread rather than mmap on purpose:
mapped pages count in the process's RSS as they are touched, pread'ed ones live only in the OS
page cache, which the kernel bounds and shares, so host memory stays flat whatever the set's size.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

FORMAT = "jsr-records"
VERSION = 1
INDEX = "index.json"


class RecordsError(ValueError):
  """A prepared folder that cannot be read; the message names the file and the problem."""


def _data_offset(path: Path, want_shape: tuple[int, ...]) -> int:
  """Byte offset of the array data in a uint8 C-order .npy file of `want_shape`."""
  with open(path, "rb") as f:
    try:
      version = np.lib.format.read_magic(f)
      read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                     (2, 0): np.lib.format.read_array_header_2_0}.get(version)
      if read_header is None:
        raise ValueError(f"unsupported .npy version {version}")
      shape, fortran, dtype = read_header(f)
    except ValueError as e:
      raise RecordsError(f"{path}: not a .npy file ({e})") from e
    offset = f.tell()
  if dtype != np.uint8 or fortran or tuple(shape) != tuple(want_shape):
    raise RecordsError(f"{path}: holds {dtype} {shape}{' (Fortran order)' if fortran else ''}; "
                       f"{INDEX} says uint8 {tuple(want_shape)}")
  size = path.stat().st_size
  if size < offset + int(np.prod(want_shape)):
    raise RecordsError(f"{path}: truncated ({size} bytes, {offset + int(np.prod(want_shape))} "
                       "expected); prepare the set again")
  return offset


@dataclasses.dataclass
class Shards:
  """One side (HR or LR) of a prepared set: N square uint8 RGB sub-images of `size` pixels,
  readable by index without loading the rest."""
  paths: list[Path]
  counts: np.ndarray    # (n_shards,) records per shard
  size: int             # sub-image side in pixels
  offsets: list[int]    # data offset of each shard file
  fds: list[int]
  reads: int = 0        # crops read so far (the engine logs it: a host reads only its rows)

  @property
  def starts(self) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

  def __len__(self) -> int:
    return int(self.counts.sum())

  def crops(self, idx: np.ndarray, y: np.ndarray, x: np.ndarray, patch: int) -> np.ndarray:
    """(B, patch, patch, 3) uint8: the windows at (y, x) of records idx, one pread of `patch`
    full rows each."""
    s = self.size
    row = s * 3
    out = np.empty((len(idx), patch, patch, 3), np.uint8)
    self.reads += len(idx)
    shard = np.searchsorted(np.cumsum(self.counts), idx, side="right")
    local = idx - self.starts[shard]
    for b in range(len(idx)):
      k = int(shard[b])
      at = self.offsets[k] + int(local[b]) * s * row + int(y[b]) * row
      buf = os.pread(self.fds[k], patch * row, at)
      if len(buf) != patch * row:
        raise RecordsError(f"{self.paths[k]}: short read at record {int(local[b])}; the file "
                           "changed after it was opened")
      rows = np.frombuffer(buf, np.uint8).reshape(patch, s, 3)
      out[b] = rows[:, int(x[b]):int(x[b]) + patch]
    return out

  def read(self, i: int) -> np.ndarray:
    """Record i whole, (size, size, 3) uint8."""
    z = np.zeros(1, np.int64)
    return self.crops(np.array([i]), z, z, self.size)[0]

  def close(self) -> None:
    for fd in self.fds:
      os.close(fd)
    self.fds = []


@dataclasses.dataclass
class RecordSet:
  folder: Path
  index: dict
  hr: Shards
  lr: Shards | None

  @property
  def ratio(self) -> int:
    """HR pixels per LR pixel along an axis (1 when unpaired)."""
    return self.hr.size // self.lr.size if self.lr is not None else 1

  def __len__(self) -> int:
    return len(self.hr)


def _open_side(folder: Path, index: dict, side: str, size: int) -> Shards:
  paths, counts, offsets, fds = [], [], [], []
  for shard in index["shards"]:
    path = folder / shard[side]
    if not path.is_file():
      raise RecordsError(f"{path}: missing (listed in {folder / INDEX}); prepare the set again")
    n = int(shard["count"])
    offsets.append(_data_offset(path, (n, size, size, 3)))
    paths.append(path)
    counts.append(n)
  for path in paths:
    fds.append(os.open(path, os.O_RDONLY))
  return Shards(paths, np.asarray(counts, np.int64), size, offsets, fds)


def open_records(folder: str | os.PathLike) -> RecordSet:
  """Open a prepared folder (only its headers are read); RecordsError naming what is wrong."""
  folder = Path(folder)
  path = folder / INDEX
  if not path.is_file():
    raise RecordsError(f"{folder}: no {INDEX}; is it a folder written by `python -m jsr.prepare`?")
  try:
    index = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RecordsError(f"{path}: not valid JSON ({e})") from e
  if index.get("format") != FORMAT or index.get("version") != VERSION:
    raise RecordsError(f"{path}: format {index.get('format')!r} version {index.get('version')!r}; "
                       f"this jsr reads {FORMAT!r} version {VERSION}")
  missing = [k for k in ("crop", "lr_crop", "count", "shards") if k not in index]
  if missing:
    raise RecordsError(f"{path}: missing keys {missing}")
  hr = _open_side(folder, index, "hr", int(index["crop"]))
  lr = _open_side(folder, index, "lr", int(index["lr_crop"])) if index["lr_crop"] else None
  if len(hr) != int(index["count"]):
    raise RecordsError(f"{path}: count {index['count']} but the shards hold {len(hr)} records")
  return RecordSet(folder, index, hr, lr)


# ------------------------------------------------------------------------------------------------
# Writing (jsr.prepare).
# ------------------------------------------------------------------------------------------------


def positions(length: int, crop: int, step: int) -> list[int]:
  """Top-left corners along one axis, BasicSR's extract_subimages rule (thresh_size 0): every
  `step` pixels, plus a last window flush with the border when the grid leaves pixels over."""
  if length < crop:
    return []
  out = list(range(0, length - crop + 1, step))
  if out[-1] + crop < length:
    out.append(length - crop)
  return out


def _write_npy(path: Path, arrays: list[np.ndarray]) -> None:
  """np.save(path, np.stack(arrays)) without the stacked copy (a shard's worth of memory)."""
  with open(path, "wb") as f:
    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                             "shape": (len(arrays),) + arrays[0].shape})
    for a in arrays:
      f.write(np.ascontiguousarray(a, np.uint8).tobytes())


class Writer:
  """Appends sub-images to shards of at most `shard_records` records and writes index.json on
  close; a shard is written once, whole (np.save), so a crash leaves no half-valid set: the index
  comes last."""

  def __init__(self, folder: str | os.PathLike, crop: int, lr_crop: int | None,
               shard_records: int, meta: dict):
    self.folder = Path(folder)
    self.folder.mkdir(parents=True, exist_ok=True)
    if (self.folder / INDEX).exists():
      raise RecordsError(f"{self.folder}: already holds a prepared set ({INDEX}); choose a new "
                         "--out or remove it")
    self.crop, self.lr_crop, self.shard_records, self.meta = crop, lr_crop, shard_records, meta
    self.hr, self.lr, self.pos, self.shards, self.all_pos = [], [], [], [], []

  def add(self, hr: np.ndarray, lr: np.ndarray | None, pos: tuple[int, int, int]) -> None:
    self.hr.append(hr)
    if lr is not None:
      self.lr.append(lr)
    self.pos.append(pos)
    if len(self.hr) == self.shard_records:
      self._flush()

  def _flush(self) -> None:
    if not self.hr:
      return
    k = len(self.shards)
    entry = {"hr": f"hr-{k:05d}.npy", "count": len(self.hr)}
    _write_npy(self.folder / entry["hr"], self.hr)
    if self.lr_crop:
      entry["lr"] = f"lr-{k:05d}.npy"
      _write_npy(self.folder / entry["lr"], self.lr)
    self.shards.append(entry)
    self.all_pos += self.pos
    self.hr, self.lr, self.pos = [], [], []

  def close(self) -> dict:
    self._flush()
    count = sum(s["count"] for s in self.shards)
    if not count:
      raise RecordsError(f"{self.folder}: no sub-images were cut (every image smaller than the "
                         f"{self.crop}-pixel crop?)")
    np.save(self.folder / "positions.npy", np.asarray(self.all_pos, np.int32))
    index = {"format": FORMAT, "version": VERSION, "crop": self.crop, "lr_crop": self.lr_crop,
             "count": count, "shards": self.shards, **self.meta}
    (self.folder / INDEX).write_text(json.dumps(index, indent=1))
    return index
