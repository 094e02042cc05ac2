"""A trained run as a function: load a workdir's latest checkpoint, upscale images with it.

    config, method, state = load_state("/tmp/selfsup_x2")
    sr_fn, name = load_sr_fn("/tmp/selfsup_x2", scale=2, self_ensemble=True, tile=256,
                             tile_overlap=32)
    sr = sr_fn(lr)            # (1, h, w, C) float in [0, 1] -> (1, h*s, w*s, C); C = 1 or 3

Two wrappers around the method's `predict(state, lr, config)`, both optional and composable:

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
as in `jsr.train.make_sr_fn`. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import json
import os
import types
from pathlib import Path
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jsr import train  # The engine's helpers; importing it pulls in no TensorFlow.

PyTree = Any

__all__ = ["load_state", "load_sr_fn", "make_sr_fn", "tile_starts", "tile_weights",
           "dihedral_ensemble", "CheckpointMismatchError"]


CheckpointMismatchError = train.CheckpointMismatchError


# ------------------------------------------------------------------------------------------------
# Loading a workdir.
# ------------------------------------------------------------------------------------------------


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """workdir/config.json as a ConfigDict; FileNotFoundError / ValueError naming the workdir."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"workdir {workdir} has no config.json: not a jsr training workdir "
                            "(or its run has not started)")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not a readable config ({type(e).__name__}: {e})") from e
  for key in ("method", "scale", "seed", "data"):
    if key not in config:
      raise ValueError(f"{path}: config has no {key!r}; not a jsr training config")
  return config


def _open_checkpoints(workdir: str) -> tuple[ocp.CheckpointManager, int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"workdir {workdir} holds no checkpoint (no checkpoints/ folder): "
                            "train it first, or point --workdir at a run that has saved one")
  # Read-only and create=False: loading must never create or clean up anything in the workdir.
  # (Orbax logs two warnings saying so; they would only confuse a CLI user.)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(create=False, read_only=True),
        item_handlers=ocp.StandardCheckpointHandler())
  finally:
    logging.set_verbosity(verbosity)
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"workdir {workdir} holds no checkpoint (checkpoints/ is empty): "
                            "train it first, or point --workdir at a run that has saved one")
  return manager, step


def _restore(manager: ocp.CheckpointManager, step: int, state: PyTree, workdir: str) -> PyTree:
  hint = (f"The checkpoint in {workdir} (step {step}) does not fit the model its config.json "
          "describes (config.json edited, or the model code changed since it was trained).")
  return train.restore_checkpoint(manager, step, state, workdir, hint=hint)


def load_state(workdir: str) -> tuple[ml_collections.ConfigDict, types.ModuleType, PyTree]:
  """(config, method module, state restored from the latest checkpoint) of a training workdir.

  The state is built by the method's own `init` on a dummy batch of the configured patch shape,
  then filled from the checkpoint; so anything that trains can be loaded. Raises
  FileNotFoundError (no workdir, no config.json, no checkpoint) or ValueError (unreadable config,
  CheckpointMismatchError), each naming the workdir.
  """
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  method = train.load_method(config.method)
  manager, step = _open_checkpoints(workdir)
  try:
    patch, batch = config.data.patch_size, config.data.batch_size
    dummy = {"image": np.zeros((batch, patch, patch, 3), np.uint8)}
    state = method.init(config, jax.random.key(config.seed), dummy)
    state = _restore(manager, step, state, workdir)
  finally:
    manager.close()
  return config, method, state


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

  sr_fn.info = info
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
  config, method, state = load_state(workdir)
  if scale is not None and scale != config.scale:
    raise ValueError(f"workdir {os.path.abspath(workdir)} holds a x{config.scale} model; "
                     f"asked for x{scale}")
  if hasattr(state, "opt_state"):
    state = state.replace(opt_state=None)  # predict never reads it; Adam's would triple memory.
  predict = lambda st, lr: method.predict(st, lr, config)
  sr_fn = make_sr_fn(predict, state, config.scale, self_ensemble=self_ensemble, tile=tile,
                     tile_overlap=tile_overlap, tile_batch=tile_batch)
  model = config.model.get("variant", "") if "model" in config else ""
  name = f"{Path(os.path.abspath(workdir)).name} ({config.method}"
  name += f"/{model}" if model else ""
  name += f", step {int(jax.device_get(state.step))}"
  name += ", x8 self-ensemble)" if self_ensemble else ")"
  sr_fn.scale = config.scale
  return sr_fn, name
