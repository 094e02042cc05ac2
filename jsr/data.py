"""The training input pipeline: photos decoded once into memory, random patches as numpy batches.

Batch `step` is a pure function of (config.seed, step): every random choice (which image, where to
crop, which flip/rotation) comes from a numpy Generator seeded with (seed, step), so a run resumed
at step k reads exactly the batches a straight-through run would, with no iterator state to
checkpoint, and any number of hosts cut the same global batch into their own rows.

The crops themselves are one numpy gather per batch (about 10k 96x96 patches/s per core,
scripts/bench_input.py). Running them ahead of the train step is tf.data's job
(`data.backend="tf"`: `Dataset.range(step).map(...).prefetch`, one map call per core) or, where
TensorFlow is not installed (the GPU machines we benchmark on have JAX but no TensorFlow), a small
thread pool (`"numpy"`). Both yield identical batches; `"auto"` takes tf.data when it imports.
TensorFlow is imported here only, lazily, and never sees a GPU.

Sources (`config.data.train`, comma-separated, a bare path counts as a folder):
  folder:DIR           image files under DIR, recursively (jsr.io.list_images)
  samples[:train]      scikit-image's bundled photos (the `train` split leaves `eval` out)
  tfds:NAME[/CONFIG]   the `image` (or `hr`) feature of a TFDS train split, from data.tfds_data_dir
  pairs:LR_DIR,HR_DIR  given LR/HR pairs (images or .npy arrays, jsr.io.load_array), matched by
                       name (jsr.io.pair_key: `0001x4.png` <-> `0001.png`, `_LR`/`_HR`); HR is
                       config.scale x LR (modcropped), or the LR was upsampled to the HR size
  records:DIR          a set prepared by `python -m jsr.prepare` (jsr.records), read by random
                       access: nothing is held in memory, each host reads only its own rows

The first three mix freely; pairs mix with pairs of the same size ratio; a prepared set is used
alone (prepare several folders into one). Photos and pairs are decoded once into memory on every
host -- the default for the small sets of the papers; beyond a few GB, prepare the set.

Batches are dicts {"image": uint8 (B_local, P, P, 3)} with P = data.patch_size (the HR crop),
plus {"lr": uint8 (B_local, P/r, P/r, 3)} for pairs, cut at the same place (HR corner = r x the
LR corner) and flipped/rotated alike; r is the pairs' size ratio (config.scale, or 1).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import os
import time
from typing import Iterator

from absl import logging
import ml_collections
import numpy as np

from jsr import errors
from jsr import io as jio
from jsr import records as records_lib


# ------------------------------------------------------------------------------------------------
# Sources: names -> decoded images.
# ------------------------------------------------------------------------------------------------


def _parse_source(source: str) -> list[tuple[str, str]]:
  """"folder:/a,/b,samples:train,pairs:/lr,/hr" -> [("folder", "/a"), ("folder", "/b"),
  ("samples", "train"), ("pairs", ("/lr", "/hr"))]."""
  items = []
  parts = iter(p.strip() for p in source.split(","))
  for part in parts:
    if not part:
      continue
    kind, sep, arg = part.partition(":")
    if kind == "samples":
      items.append(("samples", arg or "train"))
    elif sep and kind == "pairs":
      hr = next(parts, "").strip()
      if not arg or not hr:
        raise errors.UserError(f"data.train {source!r}: a pairs source is pairs:LR_DIR,HR_DIR")
      items.append(("pairs", (arg, hr)))
    elif sep and kind in ("folder", "tfds", "records"):
      items.append((kind, arg))
    else:
      items.append(("folder", part))
  if not items:
    raise errors.UserError(f"data.train is empty ({source!r}); give e.g. folder:/path/to/images")
  return items


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """(H, W, 1|3) float [0, 1] or uint8 -> (H, W, 3) uint8 (gray repeated; 16-bit rounded to 8)."""
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return np.ascontiguousarray(image)


def _load_file(path: str) -> np.ndarray | str:
  """The RGB uint8 image, or the reason it cannot be used."""
  try:
    return _to_rgb_uint8(jio.load_image(path).image)  # Alpha dropped: we train on colours.
  except jio.ImageError as e:
    return str(e)


def _load_tfds(name: str, data_dir: str | None) -> list[tuple[str, np.ndarray | str]]:
  # Lazily: TensorFlow is slow to import, absent on the GPU machines, and only this source needs it.
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # TF only reads files; the GPU memory is JAX's.
  import tensorflow_datasets as tfds
  builder = tfds.builder(name, data_dir=data_dir or None)
  features = builder.info.features
  key = next((k for k in ("image", "hr") if k in features), None)
  if key is None:
    raise ValueError(f"tfds:{name} has no `image` or `hr` feature (features: {list(features)})")
  ds = builder.as_dataset(split="train", shuffle_files=False)
  return [(f"tfds:{name}[{i}]", _to_rgb_uint8(ex[key]))
          for i, ex in enumerate(tfds.as_numpy(ds))]


def load_images(source: str, patch_size: int, tfds_data_dir: str | None = None,
                num_threads: int = 8) -> tuple[list[np.ndarray], list[str]]:
  """Decode every usable training image of `source` (uint8 RGB) and their names.

  Unreadable images and images smaller than the patch are skipped with a warning naming them;
  raises ValueError, naming the source, when nothing usable is left.
  """
  files, loaded = [], []
  for kind, arg in _parse_source(source):
    if kind in ("pairs", "records"):
      raise errors.UserError(f"data.train {source!r}: {kind}: sources are read by load_train_set "
                             "(they are not a list of photos)")
    if kind == "folder":
      try:
        files += jio.list_images(arg)
      except FileNotFoundError as e:
        raise errors.UserError(f"data.train {source!r}: {e}") from e
    elif kind == "samples":
      files += jio.list_images(f"samples:{arg}")
    else:
      loaded += _load_tfds(arg, tfds_data_dir)
  # PIL releases the GIL while decoding, so threads help with many large JPEGs.
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    loaded += list(zip(files, pool.map(_load_file, files)))
  images, names = [], []
  for name, image in loaded:
    if isinstance(image, str):
      logging.warning("Skipping training image %s", image)
    elif min(image.shape[:2]) < patch_size:
      logging.warning("Skipping training image %s: %dx%d is smaller than the %d-pixel patch",
                      name, image.shape[1], image.shape[0], patch_size)
    else:
      images.append(image)
      names.append(name)
  if not images:
    raise errors.UserError(f"data.train {source!r}: no usable training images (of {len(loaded)} found, "
                     f"none readable and at least {patch_size}x{patch_size}; see warnings above)")
  return images, names


def _load_pair(lr_path: str, hr_path: str, scale: int) -> tuple[np.ndarray, np.ndarray, int] | str:
  """(LR, HR modcropped to ratio x LR, ratio) as RGB uint8, or why the pair cannot be used."""
  try:
    lr = _to_rgb_uint8(jio.load_image(lr_path).image)
    hr = _to_rgb_uint8(jio.load_image(hr_path).image)
    ratio = jio.check_pair_size(lr_path, hr_path, lr.shape, hr.shape, scale)
  except jio.ImageError as e:
    return str(e)
  return lr, np.ascontiguousarray(hr[:ratio * lr.shape[0], :ratio * lr.shape[1]]), ratio


def load_pairs(lr_dir: str, hr_dir: str, scale: int, patch_size: int, num_threads: int = 8
               ) -> tuple[list[np.ndarray], list[np.ndarray], int, list[str]]:
  """Decode the LR/HR pairs of two folders: (LR images, HR images, ratio, HR names).

  Unmatched files stop with an error naming them (a silently dropped half of a pair would
  change what the run trains on); unreadable pairs, pairs whose sizes do not fit `scale` and pairs
  smaller than the crop are skipped with a warning naming both files.
  """
  try:
    lr_paths = jio.list_images(lr_dir, arrays=True)
    hr_paths = jio.list_images(hr_dir, arrays=True)
    matched = jio.match_pairs(lr_paths, hr_paths, lr_dir, hr_dir)
  except FileNotFoundError as e:
    raise errors.UserError(f"data.train pairs:{lr_dir},{hr_dir}: {e}") from e
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    loaded = list(pool.map(lambda lh: _load_pair(*lh, scale), matched))
  lrs, hrs, ratios, names = [], [], set(), []
  for (lr_path, hr_path), item in zip(matched, loaded):
    if isinstance(item, str):
      logging.warning("Skipping training pair %s", item)
      continue
    lr, hr, ratio = item
    if patch_size % ratio:
      raise errors.UserError(f"data.patch_size={patch_size} (the HR crop) must be divisible by the "
                             f"pairs' scale {ratio} ({lr_path} -> {hr_path})")
    if min(lr.shape[:2]) < patch_size // ratio:
      logging.warning("Skipping training pair %s -> %s: LR %dx%d is smaller than the %d-pixel "
                      "LR crop", lr_path, hr_path, lr.shape[0], lr.shape[1], patch_size // ratio)
      continue
    lrs.append(lr)
    hrs.append(hr)
    ratios.add(ratio)
    names.append(hr_path)
  if len(ratios) > 1:
    raise errors.UserError(f"data.train pairs:{lr_dir},{hr_dir}: some pairs are x{scale} and some "
                           "are equal-size (pre-upsampled); use one kind per run")
  if not hrs:
    raise errors.UserError(f"data.train pairs:{lr_dir},{hr_dir}: no usable pairs among "
                           f"{len(matched)} (see warnings above)")
  return lrs, hrs, ratios.pop(), names


# ------------------------------------------------------------------------------------------------
# Patches: a pure function of (seed, step).
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pool:
  """All images in one flat buffer of RGBX pixels (4 bytes viewed as one uint32), so a batch of
  crops is a single gather of whole pixels: 3x fewer indices than gathering bytes, and 4x faster
  measured, for a third more memory."""
  flat: np.ndarray     # (sum H*W,) uint32
  offsets: np.ndarray  # (N,) int64, first pixel of each image in `flat`
  heights: np.ndarray  # (N,) int64
  widths: np.ndarray   # (N,) int64

  def crops(self, idx: np.ndarray, y: np.ndarray, x: np.ndarray, patch: int) -> np.ndarray:
    """(B, patch, patch) uint32 RGBX: the windows at (y, x) of images idx."""
    w = self.widths[idx]
    r = np.arange(patch, dtype=np.int64)
    # Flat index of pixel (y + i, x + j) of image idx.
    pix = (self.offsets[idx] + y * w + x)[:, None, None] + r[None, :, None] * w[:, None, None] + r
    return self.flat[pix]


def make_pool(images: list[np.ndarray]) -> Pool:
  pixels = np.array([im.shape[0] * im.shape[1] for im in images], np.int64)
  offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]]).astype(np.int64)
  flat = np.zeros((int(pixels.sum()), 4), np.uint8)
  for im, o, p in zip(images, offsets, pixels):
    flat[o:o + p, :3] = im.reshape(-1, 3)
  return Pool(flat.view(np.uint32)[:, 0], offsets,
              np.array([im.shape[0] for im in images], np.int64),
              np.array([im.shape[1] for im in images], np.int64))


@dataclasses.dataclass
class TrainSet:
  """What batches are cut from: HR images (an in-memory Pool or prepared records) and, for pairs,
  their LR images, item for item. Crops are placed on the LR grid (`heights`, `widths`: the LR
  sizes; the HR sizes when unpaired) and scaled by `ratio` for the HR side."""
  hr: Pool | records_lib.Shards
  lr: Pool | records_lib.Shards | None = None
  ratio: int = 1
  names: list[str] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    grid = self.lr if self.lr is not None else self.hr
    if isinstance(grid, Pool):
      self.heights, self.widths = grid.heights, grid.widths
    else:
      n = len(grid)
      self.heights = self.widths = np.full(n, grid.size, np.int64)

  def __len__(self) -> int:
    return len(self.heights)


def _augment(a: np.ndarray, ops: np.ndarray) -> np.ndarray:
  """The 8 symmetries of the square on axes 1, 2: bit 0 flips left-right, bit 1 up-down, bit 2
  transposes."""
  for bit, fn in ((1, lambda t: t[:, :, ::-1]), (2, lambda t: t[:, ::-1, :]),
                  (4, lambda t: np.swapaxes(t, 1, 2))):
    sel = (ops & bit) > 0
    a[sel] = fn(a[sel])
  return a


def _rgb(a: np.ndarray) -> np.ndarray:
  if a.dtype == np.uint32:  # Pool crops: RGBX pixels.
    a = a.view(np.uint8).reshape(a.shape + (4,))[..., :3]
  return np.ascontiguousarray(a)


def make_batch(train_set: TrainSet | Pool, seed: int, step: int, global_batch: int, patch: int,
               augment: bool, rows: slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
  """Rows `rows` (a slice or row indices) of global batch `step`: {"image": (B_local, P, P, 3)
  uint8} (+ "lr" for pairs). Only these rows are read: a host of a prepared set reads its own."""
  ts = train_set if isinstance(train_set, TrainSet) else TrainSet(train_set)
  if patch % ts.ratio:
    raise errors.UserError(f"data.patch_size={patch} (the HR crop) must be divisible by the "
                           f"pairs' scale {ts.ratio}")
  p = patch // ts.ratio
  rng = np.random.default_rng([seed, step])  # Its own stream per (seed, step): no shared state.
  # Draw for the whole global batch, then keep this host's rows: hosts agree on the batch.
  idx = rng.integers(0, len(ts), global_batch)[rows]
  u = rng.random((global_batch, 2))[rows]
  ops = rng.integers(0, 8, global_batch)[rows]
  h, w = ts.heights[idx], ts.widths[idx]
  y = np.floor(u[:, 0] * (h - p + 1)).astype(np.int64)
  x = np.floor(u[:, 1] * (w - p + 1)).astype(np.int64)
  out = {"image": ts.hr.crops(idx, y * ts.ratio, x * ts.ratio, patch)}
  if ts.lr is not None:
    out["lr"] = ts.lr.crops(idx, y, x, p)
  if augment:
    out = {k: _augment(v, ops) for k, v in out.items()}
  return {k: _rgb(v) for k, v in out.items()}


def load_train_set(config: ml_collections.ConfigDict) -> TrainSet:
  """The TrainSet `config.data.train` names (see the module doc for the sources)."""
  d = config.data
  items = _parse_source(d.train)
  kinds = {kind for kind, _ in items}
  if "records" in kinds:
    if len(items) > 1:
      raise errors.UserError(f"data.train {d.train!r}: a records: source is used alone; prepare "
                             "several folders into one set (python -m jsr.prepare --data=A,B)")
    try:
      rs = records_lib.open_records(items[0][1])
    except records_lib.RecordsError as e:
      raise errors.UserError(f"data.train {d.train!r}: {e}") from e
    if d.patch_size > rs.hr.size:
      raise errors.UserError(f"data.train {d.train!r}: data.patch_size={d.patch_size} is larger "
                             f"than the prepared {rs.hr.size}-pixel sub-images")
    return TrainSet(rs.hr, rs.lr, rs.ratio, [])
  if "pairs" in kinds:
    if kinds != {"pairs"}:
      raise errors.UserError(f"data.train {d.train!r}: pairs: sources cannot be mixed with "
                             "unpaired photos (their batches have no given LR)")
    lrs, hrs, ratios, names = [], [], set(), []
    for _, (lr_dir, hr_dir) in items:
      lr, hr, ratio, nm = load_pairs(lr_dir, hr_dir, config.scale, d.patch_size)
      lrs += lr
      hrs += hr
      names += nm
      ratios.add(ratio)
    if len(ratios) > 1:
      raise errors.UserError(f"data.train {d.train!r}: the pairs sources have different size "
                             f"ratios {sorted(ratios)}; use one kind per run")
    return TrainSet(make_pool(hrs), make_pool(lrs), ratios.pop(), names)
  images, names = load_images(d.train, d.patch_size, d.tfds_data_dir)
  return TrainSet(make_pool(images), None, 1, names)


def get_train_iterator(config: ml_collections.ConfigDict, start_step: int = 0,
                       images: TrainSet | list[np.ndarray] | None = None,
                       rows: np.ndarray | None = None, num_threads: int = 2, prefetch: int = 4
                       ) -> Iterator[dict[str, np.ndarray]]:
  """Rows `rows` (default: all) of the global batches for steps start_step .. total_steps - 1,
  made ahead by threads (or tf.data). `images`: a TrainSet, a list of decoded photos, or None to
  load config.data.train. The engine passes the rows its host's devices hold
  (jsr.mesh.host_rows)."""
  d = config.data
  if images is None:
    train_set = load_train_set(config)
  elif isinstance(images, TrainSet):
    train_set = images
  else:
    train_set = TrainSet(make_pool(images))
  rows = slice(None) if rows is None else np.asarray(rows)
  make = lambda step: make_batch(train_set, config.seed, step, d.batch_size, d.patch_size,
                                 d.augment, rows)
  if _use_tf(d.backend):
    it = _tf_iterator(make, start_step, config.total_steps, d.patch_size, train_set.ratio,
                      train_set.lr is not None)
  else:
    it = _thread_iterator(make, start_step, config.total_steps, num_threads, prefetch)
  if isinstance(train_set.hr, records_lib.Shards):
    return _count_reads(it, train_set.hr, config.total_steps - start_step)
  return it


def _count_reads(it: Iterator, shards: records_lib.Shards, steps: int) -> Iterator:
  """`it`, then a log line with the sub-images this host read: its rows x steps, not the global
  batch (the multi-host test checks it)."""
  try:
    yield from it
  finally:  # Also when the engine closes the iterator after its last step.
    logging.info("Prepared set: this host read %d sub-images for %d batches.", shards.reads,
                 steps)


def _use_tf(backend: str) -> bool:
  if backend not in ("auto", "tf", "numpy"):
    raise ValueError(f"data.backend must be auto, tf or numpy, got {backend!r}")
  if backend == "numpy":
    return False
  try:
    import tensorflow  # noqa: F401
  except ImportError:
    if backend == "tf":
      raise ValueError("data.backend='tf' needs TensorFlow (pip install -e '.[tf]'), or use "
                       "data.backend='numpy'") from None
    return False
  return True


def _tf_iterator(make, start_step: int, total_steps: int, patch: int, ratio: int = 1,
                 paired: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """tf.data over the same pure batch function: parallel, ordered, prefetched.

  tf.data's autotuner is switched off. Its model thread sleeps on a condition variable between
  optimisation rounds; when the iterator is deleted at the end of training, that thread can miss
  the wake-up and sleep out its period (up to a minute, seen as a process that printed its last
  line and then hangs; scripts/exit_latency.py). Batches here are one numpy gather each, so fixed
  parallelism (one call per core) and a few batches of prefetch are all the tuning there is to do.
  """
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # TF only feeds the host; the GPU memory is JAX's.

  keys = ("image", "lr") if paired else ("image",)
  sizes = {"image": patch, "lr": patch // ratio}

  def fn(step):
    arrays = tf.numpy_function(lambda s: [make(int(s))[k] for k in keys], [step],
                               [tf.uint8] * len(keys), stateful=False)
    return {k: tf.ensure_shape(a, (None, sizes[k], sizes[k], 3)) for k, a in zip(keys, arrays)}

  options = tf.data.Options()
  options.autotune.enabled = False
  ds = tf.data.Dataset.range(start_step, total_steps)
  ds = ds.map(fn, num_parallel_calls=os.cpu_count() or 1, deterministic=True)
  ds = ds.prefetch(max(2, os.cpu_count() or 1)).with_options(options)
  return iter(ds.as_numpy_iterator())


def _thread_iterator(make, start_step: int, total_steps: int, num_threads: int, prefetch: int
                     ) -> Iterator[dict[str, np.ndarray]]:
  steps = iter(range(start_step, total_steps))
  # Worker threads make the next batches while the caller runs the train step on the device.
  with concurrent.futures.ThreadPoolExecutor(num_threads) as ex:
    queue = collections.deque(ex.submit(make, s) for _, s in zip(range(prefetch), steps))
    while queue:
      batch = queue.popleft().result()
      for s in itertools.islice(steps, 1):
        queue.append(ex.submit(make, s))
      yield batch


def benchmark(config: ml_collections.ConfigDict, num_batches: int = 200) -> dict[str, float]:
  """Decode time and steady-state patches/s of the pipeline `config` describes."""
  t0 = time.perf_counter()
  train_set = load_train_set(config)
  t_load = time.perf_counter() - t0
  it = get_train_iterator(config, 0, train_set)
  for _ in range(5):  # Warm-up: fill the prefetch queue.
    next(it)
  t0 = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  dt = time.perf_counter() - t0
  return {"images": len(train_set), "load_s": t_load,
          "patches_per_s": num_batches * config.data.batch_size / dt,
          "cpu_count": os.cpu_count() or 0}
