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

Batches are dicts {"image": uint8 (B_local, P, P, 3)} with P = data.patch_size.
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


# ------------------------------------------------------------------------------------------------
# Sources: names -> decoded images.
# ------------------------------------------------------------------------------------------------


def _parse_source(source: str) -> list[tuple[str, str]]:
  """"folder:/a,/b,samples:train" -> [("folder", "/a"), ("folder", "/b"), ("samples", "train")]."""
  items = []
  for part in (p.strip() for p in source.split(",")):
    if not part:
      continue
    kind, sep, arg = part.partition(":")
    if kind == "samples":
      items.append(("samples", arg or "train"))
    elif sep and kind in ("folder", "tfds"):
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


def make_pool(images: list[np.ndarray]) -> Pool:
  pixels = np.array([im.shape[0] * im.shape[1] for im in images], np.int64)
  offsets = np.concatenate([[0], np.cumsum(pixels)[:-1]]).astype(np.int64)
  flat = np.zeros((int(pixels.sum()), 4), np.uint8)
  for im, o, p in zip(images, offsets, pixels):
    flat[o:o + p, :3] = im.reshape(-1, 3)
  return Pool(flat.view(np.uint32)[:, 0], offsets,
              np.array([im.shape[0] for im in images], np.int64),
              np.array([im.shape[1] for im in images], np.int64))


def make_batch(pool: Pool, seed: int, step: int, global_batch: int, patch: int, augment: bool,
               rows: slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
  """Rows `rows` (a slice or row indices) of global batch `step`: {"image": (B_local, P, P, 3) uint8}."""
  rng = np.random.default_rng([seed, step])  # Its own stream per (seed, step): no shared state.
  # Draw for the whole global batch, then keep this host's rows: hosts agree on the batch.
  idx = rng.integers(0, len(pool.offsets), global_batch)[rows]
  u = rng.random((global_batch, 2))[rows]
  ops = rng.integers(0, 8, global_batch)[rows]
  h, w = pool.heights[idx], pool.widths[idx]
  y = np.floor(u[:, 0] * (h - patch + 1)).astype(np.int64)
  x = np.floor(u[:, 1] * (w - patch + 1)).astype(np.int64)
  r = np.arange(patch, dtype=np.int64)
  # Flat index of pixel (y + i, x + j) of image idx.
  pix = (pool.offsets[idx] + y * w + x)[:, None, None] + r[None, :, None] * w[:, None, None] + r
  out = pool.flat[pix]                                                   # (B, P, P) uint32
  if augment:
    # The 8 symmetries of the square: bit 0 flips left-right, bit 1 up-down, bit 2 transposes.
    for bit, fn in ((1, lambda a: a[:, :, ::-1]), (2, lambda a: a[:, ::-1, :]),
                    (4, lambda a: a.transpose(0, 2, 1))):
      sel = (ops & bit) > 0
      out[sel] = fn(out[sel])
  image = out.view(np.uint8).reshape(out.shape + (4,))[..., :3]
  return {"image": np.ascontiguousarray(image)}


def get_train_iterator(config: ml_collections.ConfigDict, start_step: int = 0,
                       images: list[np.ndarray] | None = None, rows: np.ndarray | None = None,
                       num_threads: int = 2, prefetch: int = 4) -> Iterator[dict[str, np.ndarray]]:
  """Rows `rows` (default: all) of the global batches for steps start_step .. total_steps - 1,
  made ahead by threads (or tf.data). The engine passes the rows its host's devices hold
  (jsr.mesh.host_rows)."""
  d = config.data
  if images is None:
    images, _ = load_images(d.train, d.patch_size, d.tfds_data_dir)
  rows = slice(None) if rows is None else np.asarray(rows)
  pool = make_pool(images)
  make = lambda step: make_batch(pool, config.seed, step, d.batch_size, d.patch_size, d.augment,
                                 rows)
  if _use_tf(d.backend):
    return _tf_iterator(make, start_step, config.total_steps, d.patch_size)
  return _thread_iterator(make, start_step, config.total_steps, num_threads, prefetch)


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


def _tf_iterator(make, start_step: int, total_steps: int, patch: int
                 ) -> Iterator[dict[str, np.ndarray]]:
  """tf.data over the same pure batch function: parallel, ordered, prefetched.

  tf.data's autotuner is switched off. Its model thread sleeps on a condition variable between
  optimisation rounds; when the iterator is deleted at the end of training, that thread can miss
  the wake-up and sleep out its period (up to a minute, seen as a process that printed its last
  line and then hangs; scripts/exit_latency.py). Batches here are one numpy gather each, so fixed
  parallelism (one call per core) and a few batches of prefetch are all the tuning there is to do.
  """
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # TF only feeds the host; the GPU memory is JAX's.

  def fn(step):
    image = tf.numpy_function(lambda s: make(int(s))["image"], [step], tf.uint8, stateful=False)
    return {"image": tf.ensure_shape(image, (None, patch, patch, 3))}

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
  images, _ = load_images(config.data.train, config.data.patch_size, config.data.tfds_data_dir)
  t_load = time.perf_counter() - t0
  it = get_train_iterator(config, 0, images)
  for _ in range(5):  # Warm-up: fill the prefetch queue.
    next(it)
  t0 = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  dt = time.perf_counter() - t0
  return {"images": len(images), "load_s": t_load,
          "patches_per_s": num_batches * config.data.batch_size / dt,
          "cpu_count": os.cpu_count() or 0}
