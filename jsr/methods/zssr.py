"""ZSSR: "Zero-Shot" Super-Resolution (Shocher, Cohen, Irani, CVPR 2018).

A zero-shot method: no training set. For each test image (the LR input y) a small network is
trained from scratch on y alone, then applied to y:

  * HR "fathers" are crops of y, augmented (flips and 90-degree rotations, or a random affine map
    with scale in [min_scale, 1], shear and rotation, or left as they are), sampled on the host;
  * each father's LR "son" is made on the device with the assumed degradation (MATLAB bicubic
    by default, or a known/estimated blur kernel from config.degradation, e.g. KernelGAN's);
  * the network (jsr/models/zssr_net.py: bicubic upsampling + a residual of 8 plain convs) learns
    son -> father with L1 and Adam;
  * the learning rate starts at 1e-3 and is divided by 10 whenever a linear fit of the
    reconstruction error (the network applied to y's own son, against y) over the last 256
    iterations has a slope smaller than 1/1.5 of the fit's standard error; training stops when it
    falls below min_lr (or at max_iters);
  * the output is the median over the 8 dihedral transforms of the network applied to y, each
    made consistent with y by iterative back-projection, then back-projected once more.

The defaults are the paper's released configuration (X2_ONE_JUMP_IDEAL_CONF). Departures: the
reconstruction test and the policy check run after every `test_every` / `policy_check_every`
updates (the reference counts from the first update); affine fathers are resampled with
scipy's cubic-spline `affine_transform` (the reference: OpenCV bicubic), padded with zeros where
the map leaves the image as the reference's warp pads (`zssr.augment.pad="black"`, the default
since 2026-12-03: +0.10 dB on Set5 x2 over "mirror", docs/zeroshot.md). One jitted step
per update, dispatched asynchronously (a `lax.scan` over several updates ran 20x slower per update
on XLA:CPU).

Gradual SR (`config.zssr.gradual`, the reference's X2_GRADUAL_IDEAL_CONF with
`configs/zssr.py:gradual=True`): the same network is trained in stages at increasing, possibly
anisotropic scales (1x1.5, 1.5x1, 1.5x1.5, 1.5x2, 2x1.5, 2x2 for x2). Each stage starts from the
previous stage's weights and Adam state with the learning rate reset, and its output becomes a
further source of fathers at its scale. The sons are bicubic downscales by the stage's scale
(ceil-sized), the network upsamples them back to the father's exact size, and anisotropic stages
ensemble over the 4 transforms that keep the axes. Bicubic degradation only, as in the reference.

`super_resolve(lr, config, seed)` is the whole method for one image; jsr/zeroshot.py runs it over
benchmark folders or the user's images.
"""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any, Callable

from absl import logging
import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jsr import progress as progress_lib
from jsr.models import common, get_model
from jsr.ops import degrade as degrade_ops
from jsr.ops.resize import imresize, output_size


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  return get_model(config.model.name, variant=config.model.variant, scale=config.scale,
                   dtype=jnp.dtype(config.model.dtype))


def make_degradation(config: ml_collections.ConfigDict, kernel: np.ndarray | None = None
                     ) -> Callable[[jax.Array], jax.Array]:
  """The assumed HR -> LR map, for sons and back-projection: config.degradation's, or blur with
  `kernel` (jsr.ops.degrade's convention, e.g. KernelGAN's estimate) and config.degradation.downsample."""
  if kernel is None:
    return degrade_ops.degradation_fn(config.degradation, config.scale)
  k = np.asarray(kernel, np.float32)
  return lambda x: degrade_ops.degrade(x, config.scale, kernel=k, mode=config.degradation.downsample)


# ------------------------------------------------------------------------------------------------
# Fathers: augmented crops of the input, on the host.
# ------------------------------------------------------------------------------------------------


def father_size(shape: tuple[int, ...], crop_size: int, scale: int) -> int:
  """Side of the square fathers: crop_size, or the image's smaller side if that is less, rounded
  down to a multiple of the scale (so the son is exactly father / scale)."""
  size = min(crop_size, shape[0], shape[1])
  size -= size % scale
  if size < 2 * scale:
    raise ValueError(f"ZSSR: an input of {shape[0]}x{shape[1]} is too small to train on at "
                     f"x{scale} (fathers of at least {2 * scale}x{2 * scale} are needed)")
  return size


# Where an affine map leaves the image: mirrored content, or black as the reference's OpenCV warp
# (cv2.warpPerspective's default constant border) fills it.
_PADDING = {"mirror": dict(mode="reflect"), "black": dict(mode="constant", cval=0.0)}


def pick_source(scale: float, base_scales: list[float]) -> int:
  """The reference's choice among gradual ZSSR's sources: the first whose base scale (the smaller
  of its two axes' scales relative to the input) is at least the drawn `scale`."""
  return next(i for i, b in enumerate(base_scales) if b > scale - 1e-6)


def sample_father(image: np.ndarray, size: int, rng: np.random.Generator,
                  aug: ml_collections.ConfigDict, sources: list[np.ndarray] | None = None,
                  base_scales: list[float] | None = None) -> np.ndarray:
  """One (size, size, C) father from `image` (H, W, C) in [0, 1], the reference's three modes.

  Gradual ZSSR passes `sources` (the input, then each finished stage's output) and their
  `base_scales` (1.0 first). As in the reference, a scale is then drawn in [min_scale, largest
  base] for the no-interpolation and affine modes, the father comes from the source `pick_source`
  names, and an affine map scales that source by scale / base. With one source this is exactly
  the one-jump sampler (the same random draws)."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (scipy: a JAX dependency)

  if aug.pad not in _PADDING:
    raise ValueError(f"config.zssr.augment.pad must be one of {sorted(_PADDING)}, got {aug.pad!r}")
  sources = sources or [image]
  base_scales = base_scales or [1.0]
  max_scale = base_scales[-1]
  u = rng.random()
  if u < aug.leave_as_is_probability:
    mode = "leave_as_is"
  elif u < aug.leave_as_is_probability + aug.no_interpolate_probability:
    mode = "no_interp"
  else:
    mode = "affine"
  base = 1.0
  if mode == "affine":
    scale = rng.uniform(aug.min_scale, max_scale)
    index = pick_source(scale, base_scales)
    image, base = sources[index], base_scales[index]
    scale /= base
  elif mode == "no_interp" and len(sources) > 1:
    image = sources[pick_source(rng.uniform(aug.min_scale, max_scale), base_scales)]
  h, w = image.shape[:2]
  if mode != "affine":
    y = rng.integers(0, h - size + 1)
    x = rng.integers(0, w - size + 1)
    crop = image[y:y + size, x:x + size]
    if mode == "no_interp" and aug.allow_rotation:
      crop = np.rot90(crop, rng.integers(4))
      if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)

  diff = rng.normal() * aug.scale_diff_sigma
  reflect = (1.0 if rng.random() < 0.5 else -1.0) if aug.allow_rotation else 1.0
  theta = rng.uniform(0, 2 * math.pi) if aug.allow_rotation else 0.0
  shear_x, shear_y = rng.normal(size=2) * aug.shear_sigma
  shift_x = rng.random() * max(scale * w - size, 0.0)
  shift_y = rng.random() * max(scale * h - size, 0.0)
  # Output (x, y) <- input (x, y): about the image centre, scale (with mirror), rotate, shear,
  # then shift so the crop window lands inside the scaled image.
  to_center = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
  scale_mat = np.diag([reflect * (scale + diff / 2), scale - diff / 2, 1.0])
  c, s = math.cos(theta), math.sin(theta)
  rotation = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
  shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
  shift = np.array([[1, 0, -shift_x], [0, 1, -shift_y], [0, 0, 1]])
  back = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
  forward = back @ shift @ shear @ rotation @ scale_mat @ to_center
  inv = np.linalg.inv(forward)  # output (x, y) -> input (x, y); ndimage wants (row, col).
  matrix = np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]])
  offset = np.array([inv[1, 2], inv[0, 2]])
  out = np.stack([ndimage.affine_transform(image[..., c], matrix, offset, output_shape=(size, size),
                                           order=3, **_PADDING[aug.pad])
                  for c in range(image.shape[-1])], axis=-1)
  return np.clip(out, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Training and the final output, on the device.
# ------------------------------------------------------------------------------------------------


class TrainState(train_state.TrainState):
  pass


def init_state(config: ml_collections.ConfigDict, rng, channels: int, size: int) -> TrainState:
  model = create_model(config)
  dummy = jnp.zeros((1, size // config.scale, size // config.scale, channels), jnp.float32)
  params = common.init_variables(model, rng, dummy)["params"]
  z = config.zssr
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=z.lr, b1=z.b1, b2=z.b2)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def make_son(father, degrade_fn, noise_std: float, rng):
  son = degrade_fn(father)
  if noise_std > 0:
    son = son + noise_std * jax.random.normal(rng, son.shape, son.dtype)
  return jnp.clip(son, 0.0, 1.0)


def _apply(apply_fn, params, x, sf: tuple[float, float] | None, out_shape: tuple[int, int]):
  """The network on x: one jump of its own scale (sf None), or a gradual stage's (sh, sw) up to
  `out_shape`."""
  if sf is None:
    return apply_fn({"params": params}, x)
  return apply_fn({"params": params}, x, scale=sf, out_shape=tuple(out_shape))


def stage_degradation(sf: tuple[float, float]) -> Callable[[jax.Array], jax.Array]:
  """A gradual stage's HR -> LR map: MATLAB bicubic by 1/sh, 1/sw (ceil-sized, as the reference)."""
  return lambda x: imresize(x, scale=(1.0 / sf[0], 1.0 / sf[1]))


def train_step(state: TrainState, fathers, rng, degrade_fn, noise_std: float,
               sf: tuple[float, float] | None = None):
  """One Adam step on a batch of fathers (B, F, F, C) and their sons; returns (state, L1)."""
  son = make_son(fathers, degrade_fn, noise_std, rng)

  def loss_fn(params):
    out = _apply(state.apply_fn, params, son, sf, fathers.shape[1:3])
    return jnp.mean(jnp.abs(out - fathers))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def reconstruction_mse(params, apply_fn, image, degrade_fn, sf=None):
  """MSE of the network applied to the input's own son, against the input (1, H, W, C)."""
  son = jnp.clip(degrade_fn(image), 0.0, 1.0)
  rec = jnp.clip(_apply(apply_fn, params, son, sf, image.shape[1:3]), 0.0, 1.0)
  return jnp.mean((rec - image) ** 2)


def back_project(sr, lr, degrade_fn, scale: int, iters: int, sf=None):
  """sr <- clip(sr + bicubic_up(lr - D(sr))), `iters` times (Irani & Peleg, as in ZSSR). A
  gradual stage (sf = (sh, sw)) resizes by its scales to lr's and sr's exact sizes."""
  for _ in range(iters):
    if sf is None:
      up = imresize(lr - degrade_fn(sr), scale)
    else:
      down = imresize(sr, scale=(1.0 / sf[0], 1.0 / sf[1]), out_shape=lr.shape[1:3])
      up = imresize(lr - down, scale=sf, out_shape=sr.shape[1:3])
    sr = jnp.clip(sr + up, 0.0, 1.0)
  return sr


def _dihedral(k: int) -> tuple[Callable, Callable]:
  """The k-th of the 8 dihedral maps on (N, H, W, C) and its inverse: rotate k*90 degrees, then
  mirror (left-right) when k >= 4 (the reference's order)."""
  rot, flip = k % 4, k >= 4

  def fwd(x):
    x = jnp.rot90(x, rot, axes=(1, 2))
    return x[:, :, ::-1] if flip else x

  def inv(y):
    y = y[:, :, ::-1] if flip else y
    return jnp.rot90(y, -rot, axes=(1, 2))

  return fwd, inv


def final_output(params, apply_fn, lr, degrade_fn, scale: int, bp_iters: int,
                 self_ensemble: bool, sf=None):
  """The paper's test: per-transform output + back-projection, median, back-projection. An
  anisotropic gradual stage uses the 4 transforms that keep the axes (0/180 degrees, mirrored or
  not), as the reference does."""
  outs = []
  transforms = range(8) if sf is None or sf[0] == sf[1] else range(0, 8, 2)
  for k in (transforms if self_ensemble else [0]):
    fwd, inv = _dihedral(k)
    x = fwd(lr)
    shape = None if sf is None else (output_size(x.shape[1], sf[0]), output_size(x.shape[2], sf[1]))
    sr = jnp.clip(inv(_apply(apply_fn, params, x, sf, shape)), 0.0, 1.0)
    outs.append(back_project(sr, lr, degrade_fn, scale, bp_iters, sf))
  sr = jnp.median(jnp.stack(outs), axis=0) if len(outs) > 1 else outs[0]
  return back_project(sr, lr, degrade_fn, scale, bp_iters, sf)


# ------------------------------------------------------------------------------------------------
# The learning-rate policy and the per-image loop.
# ------------------------------------------------------------------------------------------------


def should_reduce_lr(steps: list[int], errors: list[float], ratio: float) -> bool:
  """The reference's test: fit errors ~ a*step + b; reduce when -ratio * a < std(a)."""
  (slope, _), cov = np.polyfit(np.asarray(steps, np.float64), np.asarray(errors, np.float64),
                               1, cov=True)
  return -ratio * slope < math.sqrt(max(cov[0, 0], 0.0))


def gradual_stages(config: ml_collections.ConfigDict) -> list[tuple[tuple[float, float], int]]:
  """config.zssr.gradual ("1x1.5,1.5x1,...,2x2": each stage's height x width scale) with each
  stage's back-projection iterations (config.zssr.gradual_back_projection_iters, or
  back_projection_iters for all); [] for one jump. The last stage must be config.scale."""
  z = config.zssr
  text = z.get("gradual", "")
  if not text:
    return []
  try:
    stages = [tuple(float(v) for v in item.lower().split("x")) for item in text.split(",")]
  except ValueError:
    stages = [()]
  if any(len(sf) != 2 or min(sf) < 1.0 for sf in stages):
    raise ValueError(f"config.zssr.gradual={text!r}: expected comma-separated HxW scales of at "
                     "least 1, e.g. '1x1.5,1.5x1.5,2x2'")
  if stages[-1] != (float(config.scale), float(config.scale)):
    raise ValueError(f"config.zssr.gradual={text!r} must end at the run's scale "
                     f"{config.scale}x{config.scale}")
  bp = z.get("gradual_back_projection_iters", "")
  iters = [int(v) for v in bp.split(",")] if bp else [z.back_projection_iters] * len(stages)
  if len(iters) != len(stages):
    raise ValueError(f"config.zssr.gradual_back_projection_iters={bp!r} needs one value per "
                     f"stage of config.zssr.gradual ({len(stages)})")
  if config.degradation.kernel != "bicubic":
    raise ValueError("config.zssr.gradual needs degradation.kernel=bicubic (intermediate scales "
                     "of a given kernel are not defined), got " + repr(config.degradation.kernel))
  return list(zip(stages, iters))


def check_config(config: ml_collections.ConfigDict) -> None:
  gradual_stages(config)
  z = config.zssr
  if z.slope_range < 3 * z.test_every:  # A line fit with an error estimate needs 3 points.
    raise ValueError(f"config.zssr.slope_range={z.slope_range} must cover at least three tests "
                     f"(test_every={z.test_every})")
  if z.batch_size < 1 or z.max_iters < 1:
    raise ValueError("config.zssr.batch_size and max_iters must be positive")


@functools.lru_cache(maxsize=16)
def _compiled(config_json: str, kernel: tuple | None = None, sf: tuple | None = None,
              bp_iters: int | None = None):
  """Jitted train/test/output functions for one config and kernel (shapes traced per image), or
  for one gradual stage of scale `sf` with `bp_iters` back-projections."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  if sf is None:
    degrade_fn = make_degradation(config, None if kernel is None else np.asarray(kernel))
  else:
    degrade_fn = stage_degradation(sf)
  z = config.zssr
  step = jax.jit(functools.partial(train_step, degrade_fn=degrade_fn, noise_std=z.noise_std,
                                   sf=sf), donate_argnums=0)
  model = create_model(config)
  rec = jax.jit(functools.partial(reconstruction_mse, apply_fn=model.apply, degrade_fn=degrade_fn,
                                  sf=sf))
  out = jax.jit(functools.partial(
      final_output, apply_fn=model.apply, degrade_fn=degrade_fn, scale=config.scale,
      bp_iters=z.back_projection_iters if bp_iters is None else bp_iters,
      self_ensemble=z.self_ensemble, sf=sf))
  return step, rec, out


def super_resolve(lr: np.ndarray, config: ml_collections.ConfigDict, seed: int = 0,
                  kernel: np.ndarray | None = None,
                  progress: progress_lib.Progress = progress_lib.NULL) -> tuple[np.ndarray, dict[str, Any]]:
  """ZSSR on one LR image (H, W, C) float in [0, 1]: the SR image (sH, sW, C) and a log
  {"iterations", "final_lr", "seconds", "rec_mse": [(iteration, mse), ...]} (and "stages", one
  such log per stage, for gradual runs). `kernel` replaces config.degradation's blur (followed by
  config.degradation.downsample). `progress` hears of every reconstruction test (iteration,
  learning rate, reconstruction MSE, L1)."""
  check_config(config)
  z, s = config.zssr, config.scale
  lr = np.array(lr, np.float32)
  if lr.ndim != 3:
    raise ValueError(f"ZSSR: expected one (H, W, C) image, got shape {lr.shape}")
  size = father_size(lr.shape, z.crop_size, s)
  key_kernel = None if kernel is None else tuple(map(tuple, np.asarray(kernel, np.float64)))
  stages = gradual_stages(config)
  if stages and kernel is not None:
    raise ValueError("ZSSR: config.zssr.gradual works with the bicubic degradation only, not "
                     "with a given kernel (e.g. KernelGAN's)")
  host_rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  state = init_state(config, jax.random.fold_in(key, 0), lr.shape[-1], size)
  # Gradual: the fathers' sources, each finished stage's output at its (smaller-axis) scale.
  sources, base_scales = [lr], [1.0]
  plan = stages or [(None, None)]
  progress.start(z.max_iters * len(plan))
  t0 = time.perf_counter()
  offset, logs = 0, []
  for sf, bp_iters in plan:
    step_fn, rec_fn, out_fn = _compiled(config.to_json(), key_kernel, sf, bp_iters)
    if sf is None:  # The one-jump test runs on the input cropped to a multiple of the scale.
      test_image = jnp.asarray(lr[: lr.shape[0] // s * s, : lr.shape[1] // s * s][None])
    else:
      test_image = jnp.asarray(lr[None])
    learning_rate, last_change, steps, errors, n = z.lr, 0, [], [], 0
    while n < z.max_iters and learning_rate >= z.min_lr:
      fathers = np.stack([sample_father(lr, size, host_rng, z.augment, sources, base_scales)
                          for _ in range(z.batch_size)])
      state.opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
      # Dispatch is asynchronous: the host samples the next fathers while this step runs.
      state, loss = step_fn(state, fathers, jax.random.fold_in(key, offset + n + 1))
      n += 1
      if n % z.test_every == 0:
        mse = float(rec_fn(state.params, image=test_image))
        if not (math.isfinite(mse) and math.isfinite(float(loss))):
          raise FloatingPointError(f"ZSSR diverged at iteration {offset + n} (L1 {float(loss)}, "
                                   f"reconstruction MSE {mse}); lower config.zssr.lr (now {z.lr})")
        steps.append(n)
        errors.append(mse)
        progress.update(offset + n, learning_rate=learning_rate, rec_mse=mse, l1=float(loss))
      if n % z.policy_check_every == 0 and n - last_change > z.min_iters:
        window = z.slope_range // z.test_every
        if len(errors) >= 3 and should_reduce_lr(steps[-window:], errors[-window:],
                                                 z.lr_change_ratio):
          learning_rate /= 10.0
          last_change = n
          logging.info("ZSSR %siteration %d: reconstruction MSE %.3g, learning rate -> %.0e",
                       "" if sf is None else f"stage {sf[0]:g}x{sf[1]:g} ", n, errors[-1],
                       learning_rate)
    sr = np.asarray(out_fn(state.params, lr=jnp.asarray(lr[None])))[0]
    logs.append({"scale": None if sf is None else list(sf), "iterations": n,
                 "final_lr": learning_rate, "rec_mse": list(zip(steps, errors))})
    if sf is not None:
      sources.append(sr)
      base_scales.append(min(sf))
    offset += n
  log = {"iterations": offset, "final_lr": logs[-1]["final_lr"],
         "seconds": time.perf_counter() - t0, "rec_mse": logs[-1]["rec_mse"]}
  if stages:
    log["stages"] = logs
  return sr, log
