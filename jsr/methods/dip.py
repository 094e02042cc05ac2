"""Deep Image Prior super-resolution (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

A zero-shot method with no learning from images at all: for each LR image y (h, w), a randomly
initialised generator f_theta (jsr/models/dip_net.py, the "skip" hourglass) maps a fixed noise
code z at the HR size (sh, sw, 32 channels, uniform in [0, 0.1)) to an image, and theta is fitted
so that the image, downsampled by the reference's fixed Lanczos-2 Downsampler
(jsr/ops/downsampler.py), matches y:

    min_theta  mean (d(f_theta(z + 0.03 n_t)) - y)^2,   n_t ~ N(0, 1) fresh at every step t,

with Adam (learning rate 0.01) for 2000 steps at x4. The network's structure is the prior: it fits
natural images long before it fits noise, so the number of steps is the regulariser, and the SR
image is f_theta(z) after the last step. The defaults are the reference's super-resolution
notebook (super-resolution.ipynb: input_depth=32, INPUT="noise", reg_noise_std=0.03,
LR=0.01, num_iter=2000, KERNEL_TYPE="lanczos2", tv_weight=0).

Departures from the reference (docs/dip.md): the output is the network on the clean code z (the
notebook's last `net(net_input)` reads the last *perturbed* code); any HR size is used as it is
(the notebook centre-crops the HR image to a multiple of 32 first; the net's crops make any size
work, as in the reference's own code path); x2 uses the x4 settings (the authors ran x4 and x8
only).

`super_resolve(lr, config, seed, progress)` is the whole method for one image; jsr/zeroshot.py
runs it over benchmark folders or the user's images.
"""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jsr import progress as progress_lib
from jsr.models import get_model
from jsr.ops import downsampler
from jsr.ops.resize import imresize


def create_model(config: ml_collections.ConfigDict, channels: int) -> nn.Module:
  return get_model(config.model.name, variant=config.model.variant, out_channels=channels,
                   dtype=jnp.dtype(config.model.dtype))


class TrainState(train_state.TrainState):
  pass


def make_code(key, height: int, width: int, config: ml_collections.ConfigDict):
  """The fixed input z: (1, H, W, input_depth) uniform noise times input_scale (the reference's
  get_noise(..., "noise", noise_type="u", var=1/10))."""
  d = config.dip
  return d.input_scale * jax.random.uniform(key, (1, height, width, d.input_depth), jnp.float32)


def init_state(config: ml_collections.ConfigDict, rng, channels: int) -> TrainState:
  _, _, init_fn = _compiled(_compile_key(config), channels)
  # Parameters do not depend on the spatial size: initialise on a small code.
  side = 2 ** len(create_model(config, channels).down)
  dummy = jnp.zeros((1, side, side, config.dip.input_depth), jnp.float32)
  params = init_fn(rng, dummy)["params"]
  d = config.dip
  tx = optax.adam(learning_rate=d.lr, b1=d.b1, b2=d.b2, eps=d.eps)
  return TrainState.create(apply_fn=create_model(config, channels).apply, params=params, tx=tx)


# The loss's HR -> LR operators: the reference's Downsampler, or jsr's benchmark protocol itself.
KERNEL_TYPES = ("lanczos2", "lanczos3", "bicubic")


def degrade(x, scale: int, kernel_type: str):
  """d(x): "lanczos2"/"lanczos3", the reference's fixed Downsampler (jsr.ops.downsampler), or
  "bicubic", MATLAB imresize by 1/scale (the operator jsr's benchmark LR images are made with)."""
  if kernel_type == "bicubic":
    return imresize(x, 1.0 / scale)
  return downsampler.downsample(x, scale, kernel_type)


def train_step(state: TrainState, z, lr, rng, *, scale: int, kernel_type: str,
               reg_noise_std: float):
  """One Adam step on ||d(f(z + reg_noise_std * n)) - lr||^2 (mean); returns (state, MSE)."""
  rng = jax.random.fold_in(rng, state.step)
  z_in = z + reg_noise_std * jax.random.normal(rng, z.shape, z.dtype) if reg_noise_std else z

  def loss_fn(params):
    out = state.apply_fn({"params": params}, z_in)
    return jnp.mean((degrade(out, scale, kernel_type) - lr) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def render(params, z, *, apply_fn):
  """The current SR image: the network on the clean code, clipped to [0, 1]."""
  return jnp.clip(apply_fn({"params": params}, z), 0.0, 1.0)


def check_config(config: ml_collections.ConfigDict) -> None:
  d = config.dip
  if config.scale < 2 or config.scale % 2:
    raise ValueError(f"DIP: the scale must be even (2, 4, 8: the Downsampler's padding needs an "
                     f"even factor), got {config.scale}")
  if d.kernel_type not in KERNEL_TYPES:
    raise ValueError(f"config.dip.kernel_type must be one of {KERNEL_TYPES}, "
                     f"got {d.kernel_type!r}")
  if d.iterations < 1 or d.report_every < 1:
    raise ValueError("config.dip.iterations and report_every must be positive")
  bad = [i for i in d.snapshot_iters if not 1 <= i <= d.iterations]
  if bad:
    raise ValueError(f"config.dip.snapshot_iters {bad} outside 1..{d.iterations}")


def _compile_key(config: ml_collections.ConfigDict) -> str:
  """What the compiled functions depend on (not the iteration count or snapshots, so runs that
  differ only in those share one compile)."""
  d = config.dip
  return json.dumps({"model": config.model.to_dict(), "scale": config.scale,
                     "kernel_type": d.kernel_type, "reg_noise_std": d.reg_noise_std},
                    sort_keys=True)


@functools.lru_cache(maxsize=8)
def _compiled(key: str, channels: int):
  """Jitted step, render and init for one _compile_key and channel count (shapes traced per
  image). The init is jitted too: unlike the big supervised nets (common.init_variables), this
  one's few parameter tensors compile in one go faster than ~100 ops run one by one."""
  k = json.loads(key)
  config = ml_collections.ConfigDict({"model": k["model"]})
  model = create_model(config, channels)
  # Donate the state: the parameters and both Adam moments are rewritten every step.
  step = jax.jit(functools.partial(train_step, scale=k["scale"], kernel_type=k["kernel_type"],
                                   reg_noise_std=k["reg_noise_std"]), donate_argnums=0)
  out = jax.jit(functools.partial(render, apply_fn=model.apply))
  return step, out, jax.jit(model.init)


def super_resolve(lr: np.ndarray, config: ml_collections.ConfigDict, seed: int = 0,
                  progress: progress_lib.Progress = progress_lib.NULL
                  ) -> tuple[np.ndarray, dict[str, Any]]:
  """DIP on one LR image (h, w, C) float in [0, 1]: the SR image (sh, sw, C) and a log
  {"iterations", "seconds", "loss", "rec_mse": [(iteration, MSE of d(f(z_t)) against lr), ...]}
  and, when config.dip.snapshot_iters is not empty, "snapshot_iters" and "snapshot" (an array
  (len(snapshot_iters), sh, sw, C): f(z) after those iterations). `progress` hears of the MSE
  every config.dip.report_every iterations."""
  check_config(config)
  d, s = config.dip, config.scale
  lr = np.array(lr, np.float32)
  if lr.ndim != 3:
    raise ValueError(f"DIP: expected one (H, W, C) image, got shape {lr.shape}")
  channels = lr.shape[-1]
  height, width = lr.shape[0] * s, lr.shape[1] * s
  scales = len(create_model(config, channels).down)
  # Each scale halves (rounding up); below 2 ** scales the coarsest levels are 1 pixel wide,
  # where reflection padding (PyTorch's and jnp's) has nothing to reflect.
  if min(height, width) < 2 ** scales:
    raise ValueError(f"DIP: an HR size of {height}x{width} is too small for the network's "
                     f"{scales} scales (at least {2 ** scales} pixels a side)")
  step_fn, out_fn, _ = _compiled(_compile_key(config), channels)
  key = jax.random.key(seed)
  state = init_state(config, jax.random.fold_in(key, 0), channels)
  z = make_code(jax.random.fold_in(key, 1), height, width, config)
  noise_key = jax.random.fold_in(key, 2)
  target = jnp.asarray(lr[None])
  snapshot_iters = sorted(set(d.snapshot_iters))
  snapshots = []

  progress.start(d.iterations)
  t0 = time.perf_counter()
  curve = []
  loss = None
  for n in range(1, d.iterations + 1):
    # Dispatch is asynchronous: only reports and snapshots wait for the device.
    state, loss = step_fn(state, z, target, noise_key)
    if n % d.report_every == 0 or n == d.iterations:
      mse = float(loss)
      if not math.isfinite(mse):
        raise FloatingPointError(f"DIP diverged at iteration {n} (MSE {mse}); lower "
                                 f"config.dip.lr (now {d.lr})")
      curve.append((n, mse))
      progress.update(n, learning_rate=d.lr, rec_mse=mse)
    if n in snapshot_iters:
      snapshots.append(np.asarray(out_fn(state.params, z))[0])
  sr = np.asarray(out_fn(state.params, z))[0]
  log = {"iterations": d.iterations, "seconds": time.perf_counter() - t0,
         "loss": curve[-1][1], "rec_mse": curve}
  if snapshot_iters:
    log["snapshot_iters"] = snapshot_iters
    log["snapshot"] = np.stack(snapshots)
  return sr, log
