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
on XLA:CPU). Gradual SR (intermediate scales)
is not implemented: one jump of `config.scale`.

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
from jsr.ops.resize import imresize


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


def sample_father(image: np.ndarray, size: int, rng: np.random.Generator,
                  aug: ml_collections.ConfigDict) -> np.ndarray:
  """One (size, size, C) father from `image` (H, W, C) in [0, 1], the reference's three modes."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (scipy: a JAX dependency)

  if aug.pad not in _PADDING:
    raise ValueError(f"config.zssr.augment.pad must be one of {sorted(_PADDING)}, got {aug.pad!r}")
  h, w = image.shape[:2]
  u = rng.random()
  if u < aug.leave_as_is_probability:
    mode = "leave_as_is"
  elif u < aug.leave_as_is_probability + aug.no_interpolate_probability:
    mode = "no_interp"
  else:
    mode = "affine"
  if mode != "affine":
    y = rng.integers(0, h - size + 1)
    x = rng.integers(0, w - size + 1)
    crop = image[y:y + size, x:x + size]
    if mode == "no_interp" and aug.allow_rotation:
      crop = np.rot90(crop, rng.integers(4))
      if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)

  scale = rng.uniform(aug.min_scale, 1.0)
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


def train_step(state: TrainState, fathers, rng, degrade_fn, noise_std: float):
  """One Adam step on a batch of fathers (B, F, F, C) and their sons; returns (state, L1)."""
  son = make_son(fathers, degrade_fn, noise_std, rng)

  def loss_fn(params):
    return jnp.mean(jnp.abs(state.apply_fn({"params": params}, son) - fathers))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def reconstruction_mse(params, apply_fn, image, degrade_fn):
  """MSE of the network applied to the input's own son, against the input (1, H, W, C)."""
  rec = jnp.clip(apply_fn({"params": params}, jnp.clip(degrade_fn(image), 0.0, 1.0)), 0.0, 1.0)
  return jnp.mean((rec - image) ** 2)


def back_project(sr, lr, degrade_fn, scale: int, iters: int):
  """sr <- clip(sr + bicubic_up(lr - D(sr))), `iters` times (Irani & Peleg, as in ZSSR)."""
  for _ in range(iters):
    sr = jnp.clip(sr + imresize(lr - degrade_fn(sr), scale), 0.0, 1.0)
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
                 self_ensemble: bool):
  """The paper's test: per-transform output + back-projection, median, back-projection."""
  outs = []
  for k in range(8 if self_ensemble else 1):
    fwd, inv = _dihedral(k)
    sr = jnp.clip(inv(apply_fn({"params": params}, fwd(lr))), 0.0, 1.0)
    outs.append(back_project(sr, lr, degrade_fn, scale, bp_iters))
  sr = jnp.median(jnp.stack(outs), axis=0) if len(outs) > 1 else outs[0]
  return back_project(sr, lr, degrade_fn, scale, bp_iters)


# ------------------------------------------------------------------------------------------------
# The learning-rate policy and the per-image loop.
# ------------------------------------------------------------------------------------------------


def should_reduce_lr(steps: list[int], errors: list[float], ratio: float) -> bool:
  """The reference's test: fit errors ~ a*step + b; reduce when -ratio * a < std(a)."""
  (slope, _), cov = np.polyfit(np.asarray(steps, np.float64), np.asarray(errors, np.float64),
                               1, cov=True)
  return -ratio * slope < math.sqrt(max(cov[0, 0], 0.0))


def check_config(config: ml_collections.ConfigDict) -> None:
  z = config.zssr
  if z.slope_range < 3 * z.test_every:  # A line fit with an error estimate needs 3 points.
    raise ValueError(f"config.zssr.slope_range={z.slope_range} must cover at least three tests "
                     f"(test_every={z.test_every})")
  if z.batch_size < 1 or z.max_iters < 1:
    raise ValueError("config.zssr.batch_size and max_iters must be positive")


@functools.lru_cache(maxsize=8)
def _compiled(config_json: str, kernel: tuple | None = None):
  """Jitted train/test/output functions for one config and kernel (shapes traced per image)."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  degrade_fn = make_degradation(config, None if kernel is None else np.asarray(kernel))
  z = config.zssr
  step = jax.jit(functools.partial(train_step, degrade_fn=degrade_fn, noise_std=z.noise_std),
                 donate_argnums=0)
  model = create_model(config)
  rec = jax.jit(functools.partial(reconstruction_mse, apply_fn=model.apply, degrade_fn=degrade_fn))
  out = jax.jit(functools.partial(final_output, apply_fn=model.apply, degrade_fn=degrade_fn,
                                  scale=config.scale, bp_iters=z.back_projection_iters,
                                  self_ensemble=z.self_ensemble))
  return step, rec, out


def super_resolve(lr: np.ndarray, config: ml_collections.ConfigDict, seed: int = 0,
                  kernel: np.ndarray | None = None,
                  progress: progress_lib.Progress = progress_lib.NULL) -> tuple[np.ndarray, dict[str, Any]]:
  """ZSSR on one LR image (H, W, C) float in [0, 1]: the SR image (sH, sW, C) and a log
  {"iterations", "final_lr", "seconds", "rec_mse": [(iteration, mse), ...]}. `kernel` replaces
  config.degradation's blur (followed by config.degradation.downsample). `progress` hears of
every reconstruction test (iteration, learning rate, reconstruction MSE, L1)."""
  check_config(config)
  z, s = config.zssr, config.scale
  lr = np.array(lr, np.float32)
  if lr.ndim != 3:
    raise ValueError(f"ZSSR: expected one (H, W, C) image, got shape {lr.shape}")
  size = father_size(lr.shape, z.crop_size, s)
  key_kernel = None if kernel is None else tuple(map(tuple, np.asarray(kernel, np.float64)))
  step_fn, rec_fn, out_fn = _compiled(config.to_json(), key_kernel)
  host_rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  state = init_state(config, jax.random.fold_in(key, 0), lr.shape[-1], size)
  # The reconstruction test runs on the input cropped to a multiple of the scale.
  test_image = jnp.asarray(lr[: lr.shape[0] // s * s, : lr.shape[1] // s * s][None])

  progress.start(z.max_iters)
  t0 = time.perf_counter()
  learning_rate, last_change, steps, errors, n = z.lr, 0, [], [], 0
  while n < z.max_iters and learning_rate >= z.min_lr:
    fathers = np.stack([sample_father(lr, size, host_rng, z.augment)
                        for _ in range(z.batch_size)])
    state.opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    # Dispatch is asynchronous: the host samples the next fathers while this step runs.
    state, loss = step_fn(state, fathers, jax.random.fold_in(key, n + 1))
    n += 1
    if n % z.test_every == 0:
      mse = float(rec_fn(state.params, image=test_image))
      if not (math.isfinite(mse) and math.isfinite(float(loss))):
        raise FloatingPointError(f"ZSSR diverged at iteration {n} (L1 {float(loss)}, "
                                 f"reconstruction MSE {mse}); lower config.zssr.lr (now {z.lr})")
      steps.append(n)
      errors.append(mse)
      progress.update(n, learning_rate=learning_rate, rec_mse=mse, l1=float(loss))
    if n % z.policy_check_every == 0 and n - last_change > z.min_iters:
      window = z.slope_range // z.test_every
      if len(errors) >= 3 and should_reduce_lr(steps[-window:], errors[-window:],
                                               z.lr_change_ratio):
        learning_rate /= 10.0
        last_change = n
        logging.info("ZSSR iteration %d: reconstruction MSE %.3g, learning rate -> %.0e",
                     n, errors[-1], learning_rate)
  sr = np.asarray(out_fn(state.params, lr=jnp.asarray(lr[None])))[0]
  return sr, {"iterations": n, "final_lr": learning_rate, "seconds": time.perf_counter() - t0,
              "rec_mse": list(zip(steps, errors))}
