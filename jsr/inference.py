"""A trained run as a function: load a workdir's latest checkpoint, upscale images with it.

    config, method, variables, step = load_variables("/tmp/selfsup_x2")
    sr_fn, name = load_sr_fn("/tmp/selfsup_x2", scale=2, self_ensemble=True, tile=256,
                             tile_overlap=32)
    sr = sr_fn(lr)            # (1, h, w, C) float in [0, 1] -> (1, h*s, w*s, C); C = 1 or 3

Two wrappers around the method's `predict(variables, lr, config)`, both optional and composable:

- x8 geometric self-ensemble: the 8 dihedral transforms of the input (flips x transposes) go
  through the model in one batched call, are transformed back and averaged. Transposed variants of
  a non-square input have H and W swapped, so those are two batched calls of 4 (same jit); a
  square input (and every tile) is one call of 8. Costs 8x compute and 8x activation memory.
- Tiling: the LR image is cut into tiles of one fixed shape (`tile` x `tile`), so the model
  compiles once whatever the image size. Tiles step by `tile - tile_overlap`; the last tile of a
  row/column is shifted back to end at the image border instead of being padded, so every tile
  lies inside the image and sees the same borders as the untiled model (padding would put
  reflected pixels where the untiled model sees its own border handling, and the edge would
  differ). Tiles run `tile_batch` at a time; each tile's output is weighted by a separable ramp
  and the sum is divided by the summed weights. The ramp is 0 in the outer quarter of the
  overlap (those pixels are wrong: they lack context), rises linearly across the middle half and
  is 1 inside; edges on the image border are not ramped. So the output equals the untiled one
  when the model's receptive-field radius (in LR pixels) is at most tile_overlap / 4, and seams
  are blended, not cut, for models with a wider (or global) context. The output accumulates on
  the host in float32: device memory is bounded by the tile batch, not by the image.

Gray images (C = 1) go through the RGB model as three equal channels and come back as their mean,
as in `jsr.reporting.make_sr_fn`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import os
import types
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jsr import checkpoints
from jsr import methods
from jsr import workdir as workdir_lib

PyTree = Any

__all__ = ["load_variables", "load_state", "abstract_state", "load_sr_fn", "make_sr_fn", "tile_starts",
           "tile_weights", "dihedral_ensemble", "CheckpointMismatchError"]


CheckpointMismatchError = checkpoints.CheckpointMismatchError


# ------------------------------------------------------------------------------------------------
# Loading a workdir: only the part of the state that predict reads.
# ------------------------------------------------------------------------------------------------


def abstract_state(method: types.ModuleType, config: ml_collections.ConfigDict) -> PyTree:
  """The shapes and dtypes of the state `method.init` builds for `config` (nothing computed, no
  memory allocated): the tree checkpoints are checked against."""
  patch, batch = config.data.patch_size, config.data.batch_size
  dummy = {"image": jax.ShapeDtypeStruct((batch, patch, patch, 3), jnp.uint8)}
  return jax.eval_shape(lambda rng, b: method.init(config, rng, b), jax.random.key(config.seed),
                        dummy)


def load_variables(workdir: str, step: int | None = None,
                   sharding: jax.sharding.Sharding | None = None
                   ) -> tuple[ml_collections.ConfigDict, types.ModuleType, dict, int]:
  """(config, method, variables, step): the Flax variables that the method's `predict` reads
  (`methods.inference_fields`), restored from checkpoint `step` (default: the latest) of a
  training workdir. Nothing else of the state is read: no optimizer state, no discriminator.

  Arrays are numpy unless `sharding` is given. Raises FileNotFoundError (no workdir, config.json
  or checkpoint) or ValueError (unreadable config, CheckpointMismatchError), each naming the
  workdir.
  """
  workdir = os.path.abspath(workdir)
  config = workdir_lib.read_config(workdir)
  method = methods.load(config.method)
  fields = methods.inference_fields(method, config)
  abstract = abstract_state(method, config)
  manager, step = checkpoints.open_readonly(workdir, step)
  hint = (f"The checkpoint in {workdir} (step {step}) does not fit the model its config.json "
          "describes (config.json edited, or the model code changed since it was trained).")
  try:
    restored = checkpoints.restore_fields(manager, step, abstract, fields.values(), hint,
                                          sharding)
  finally:
    manager.close()
  variables = {c: restored[f] for c, f in fields.items() if f in restored}
  return config, method, variables, step


def load_state(workdir: str, step: int | None = None
               ) -> tuple[ml_collections.ConfigDict, types.ModuleType, PyTree, int]:
  """(config, method, state, step): the whole training state of checkpoint `step` (default: the
  latest), as numpy arrays: every network and optimizer state. For tools that continue a run
  (jsr.interpolate) or inspect one; upscaling needs only `load_variables`."""
  workdir = os.path.abspath(workdir)
  config = workdir_lib.read_config(workdir)
  method = methods.load(config.method)
  abstract = abstract_state(method, config)
  manager, step = checkpoints.open_readonly(workdir, step)
  hint = (f"The checkpoint in {workdir} (step {step}) does not fit the model its config.json "
          "describes (config.json edited, or the model code changed since it was trained).")
  try:
    state = checkpoints.restore(manager, step, abstract, hint)
  finally:
    manager.close()
  return config, method, state, step


# ------------------------------------------------------------------------------------------------
# Self-ensemble and tiling (pure functions of a batched model call `f`).
# ------------------------------------------------------------------------------------------------


def _flips(x: jax.Array) -> list[jax.Array]:
  """The 4 flips of (N, H, W, C): identity, vertical, horizontal, both (each its own inverse)."""
  return [x, x[:, ::-1], x[:, :, ::-1], x[:, ::-1, ::-1]]


def _transpose(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, 1, 2)


def dihedral_ensemble(f: Callable, x: jax.Array) -> jax.Array:
  """Mean over the 8 dihedral transforms g of g^-1(f(g(x))); `f` batched, (N, h, w, C) -> SR."""
  n = x.shape[0]
  plain = jnp.concatenate(_flips(x))                 # (4N, H, W, C)
  swapped = jnp.concatenate(_flips(_transpose(x)))   # (4N, W, H, C)
  if x.shape[1] == x.shape[2]:
    out = f(jnp.concatenate([plain, swapped]))       # One call of 8N.
    out_plain, out_swapped = out[:4 * n], out[4 * n:]
  else:
    out_plain, out_swapped = f(plain), f(swapped)    # Two calls of 4N: shapes differ.

  def undo_flips(y):
    return sum(_flips(y[i * n:(i + 1) * n])[i] for i in range(4))

  return (undo_flips(out_plain) + _transpose(undo_flips(out_swapped))) / 8.0


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Tile origins along one axis: step `tile - overlap`, last one shifted back to end at `size`."""
  if size <= tile:
    return [0]
  starts = list(range(0, size - tile, tile - overlap))
  return starts + [size - tile]


def tile_weights(start: int, tile: int, size: int, overlap: int, scale: int) -> np.ndarray:
  """Blend weight of one tile's output pixels along one axis, (tile * scale,) float32.

  Zero in the outer quarter of the overlap at an inner tile edge, a linear ramp over the middle
  half, one elsewhere; edges on the image border are not ramped.
  """
  d = (np.arange(tile * scale) + 0.5) / scale  # Output pixel centres, in LR pixels from the edge.
  w = np.ones(tile * scale)
  if overlap > 0:
    ramp = lambda t: np.clip((t - overlap / 4) / (overlap / 2), 0.0, 1.0)
    if start > 0:
      w = w * ramp(d)
    if start + tile < size:
      w = w * ramp(tile - d)
  return w.astype(np.float32)


def _tiled(run_tiles: Callable, x: np.ndarray, scale: int, tile: int, overlap: int,
           batch: int, put: Callable, info: dict) -> np.ndarray:
  """(H, W, C) numpy -> (H*s, W*s, C) numpy float32, `batch` tiles of one shape per call."""
  h, w, c = x.shape
  th, tw = min(tile, h), min(tile, w)
  ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
  wy = {y: tile_weights(y, th, h, overlap, scale) for y in ys}
  wx = {x0: tile_weights(x0, tw, w, overlap, scale) for x0 in xs}
  norm_y, norm_x = np.zeros(h * scale, np.float32), np.zeros(w * scale, np.float32)
  for y in ys:
    norm_y[y * scale:(y + th) * scale] += wy[y]
  for x0 in xs:
    norm_x[x0 * scale:(x0 + tw) * scale] += wx[x0]
  coords = [(y, x0) for y in ys for x0 in xs]
  info["tiles"] = len(coords)
  info["tile_shape"] = (th, tw)
  out = np.zeros((h * scale, w * scale, c), np.float32)

  def dispatch(chunk):
    pad = chunk + [chunk[-1]] * (batch - len(chunk))  # Fixed batch shape: one compilation.
    tiles = np.stack([x[y:y + th, x0:x0 + tw] for y, x0 in pad])
    return run_tiles(put(tiles), put(np.stack([wy[y] for y, _ in pad])),
                     put(np.stack([wx[x0] for _, x0 in pad])))

  def accumulate(chunk, result):
    result = np.asarray(result)
    for (y, x0), r in zip(chunk, result):
      out[y * scale:(y + th) * scale, x0 * scale:(x0 + tw) * scale] += r

  chunks = [coords[i:i + batch] for i in range(0, len(coords), batch)]
  in_flight = None
  for chunk in chunks:  # Dispatch the next batch before fetching the last: device stays busy.
    result = dispatch(chunk)
    if in_flight is not None:
      accumulate(*in_flight)
    in_flight = (chunk, result)
  accumulate(*in_flight)
  out /= norm_y[:, None, None]
  out /= norm_x[None, :, None]
  return out


def make_sr_fn(predict: Callable, params: PyTree, scale: int, *, self_ensemble: bool = False,
               tile: int = 0, tile_overlap: int = 0, tile_batch: int = 4) -> Callable:
  """sr_fn: (N, h, w, C) float [0, 1] -> (N, h*s, w*s, C) float32, C = 1 (gray) or 3.

  `predict(params, lr)` is the model on an RGB batch (pure, jit-able). With `tile` > 0 the image
  is processed in tile x tile pieces (see the module docstring) and a numpy array is returned;
  otherwise a jax array. `sr_fn.info` holds the number of tiles of the last call.
  """
  if tile < 0 or tile_overlap < 0:
    raise ValueError(f"tile={tile} and tile_overlap={tile_overlap} must be >= 0")
  if tile and tile_overlap >= tile:
    raise ValueError(f"tile_overlap={tile_overlap} must be smaller than tile={tile}")
  if tile_batch < 1:
    raise ValueError(f"tile_batch={tile_batch} must be >= 1")
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  params = jax.device_put(params, replicated)

  def model(params, x):
    gray = x.shape[-1] == 1
    f = lambda b: predict(params, jnp.repeat(b, 3, axis=-1) if gray else b)
    sr = dihedral_ensemble(f, x) if self_ensemble else f(x)
    return jnp.mean(sr, axis=-1, keepdims=True) if gray else sr.astype(jnp.float32)

  @jax.jit
  def run_full(params, x):
    return model(params, x)

  @jax.jit
  def run_tiles(params, tiles, wy, wx):
    # Weighting on the device: the host only adds finished tiles.
    return model(params, tiles) * wy[:, :, None, None] * wx[:, None, :, None]

  # Tiles are spread over all devices: round the batch up to a multiple of their number.
  n_dev = jax.device_count()
  batch = -(-tile_batch // n_dev) * n_dev
  info: dict = {"tiles": 0}

  def sr_fn(lr):
    if lr.ndim != 4 or lr.shape[-1] not in (1, 3):
      raise ValueError(f"sr_fn expects (N, h, w, 1 or 3), got shape {lr.shape}")
    if not tile:
      info["tiles"] = 0
      return run_full(params, jax.device_put(jnp.asarray(lr, jnp.float32), replicated))
    lr = np.asarray(lr, np.float32)
    put = lambda a: jax.device_put(a, sharded)
    run = functools.partial(run_tiles, params)
    return np.stack([_tiled(run, im, scale, tile, tile_overlap, batch, put, info) for im in lr])

  def precompile(lr: jax.ShapeDtypeStruct):
    """Compile the whole-image call for one LR shape (evaluate.precompile); tiles need not: one
    compile serves every size."""
    if not tile:
      run_full.lower(params, jax.ShapeDtypeStruct(lr.shape, jnp.float32,
                                                  sharding=replicated)).compile()

  sr_fn.info = info
  sr_fn.precompile = precompile
  # Compiled variants of the per-tile call (jax's cache; for tests and curious users).
  sr_fn.tile_compilations = run_tiles._cache_size  # pylint: disable=protected-access
  return sr_fn


def load_sr_fn(workdir: str, scale: int | None = None, self_ensemble: bool = False,
               tile: int = 0, tile_overlap: int = 0, tile_batch: int = 4
               ) -> tuple[Callable, str]:
  """(sr_fn, name) for the latest checkpoint of a training workdir; see `make_sr_fn`.

  `scale` must be the run's config.scale (None: take the run's). Errors are FileNotFoundError or
  ValueError naming the workdir.
  """
  config, method, variables, step = load_variables(workdir)
  if scale is not None and scale != config.scale:
    raise ValueError(f"workdir {os.path.abspath(workdir)} holds a x{config.scale} model; "
                     f"asked for x{scale}")
  predict = lambda v, lr: method.predict(v, lr, config)
  sr_fn = make_sr_fn(predict, variables, config.scale, self_ensemble=self_ensemble, tile=tile,
                     tile_overlap=tile_overlap, tile_batch=tile_batch)
  name = f"{Path(os.path.abspath(workdir)).name} ({config.method}, step {step}"
  name += ", x8 self-ensemble)" if self_ensemble else ")"
  sr_fn.scale = config.scale
  return sr_fn, name
