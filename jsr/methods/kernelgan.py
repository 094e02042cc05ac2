"""KernelGAN + ZSSR: blind SR of one image (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

Zero-shot and blind: nothing is known but the LR image y. KernelGAN estimates the x2 blur kernel
that made y: a deep linear generator G (jsr/models/kernelgan_net.py) downscales 64-px crops of y
by 2, and a patch discriminator D learns to tell G's 26-px outputs from 26-px crops of y itself.
When D cannot, G's kernel makes y look like a downscaled y -- the kernel that relates y to its HR
source across scales. G is trained with D's L1 GAN loss plus the reference's constraints on its
kernel w: sum(w) = 1, little mass near the boundary, and, until G first matches MATLAB bicubic
downscaling (three iterations running), a bicubic prior whose weight then decays by 100
every 200 iterations, after which centre-of-mass and sparsity (|w|^0.2) terms are switched on.
(Departure: "matches" is MSE under 0.1x that of G = 0; the reference's absolute MSE < 0.4 is met
by G's near-zero initial output.)
Adam(0.5, 0.999) at 2e-4 for both nets, divided by 10 every 750 of the 3000 iterations; crops
are drawn where y has gradients. The kernel is cleaned (values under 0.75x the 40th largest are
zeroed), centred, and, for x4, composed with itself analytically. ZSSR (jsr/methods/zssr.py) then
super-resolves y with it.

All of the GAN step -- both updates and the constraint schedule -- is one jitted function of
(state, crops, iteration); the host only cuts crops.

Kernel convention: kernels returned here are jsr.ops.degrade's (a true convolution, then direct
subsampling from pixel 0), centred so that LR pixel i sits at HR position s*i + (s - 1)/2, the
MATLAB-bicubic alignment the benchmark protocol and ZSSR's bicubic base use.
"""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jsr import progress as progress_lib
from jsr.methods import zssr
from jsr.models import common
from jsr.models import kernelgan_net
from jsr.ops.resize import imresize

# Iterations between progress reports: each report waits for the device once.
REPORT_EVERY = 100



# ------------------------------------------------------------------------------------------------
# Kernels: from G's weights, constraints, post-processing.
# ------------------------------------------------------------------------------------------------


def effective_kernel(g_apply, g_params, size: int) -> jax.Array:
  """The (size, size) weights w with G(x)[i, j] = sum_uv w[u, v] x[s*i + u, s*j + v]: G is linear,
  so w is the gradient of G's single output on a size x size input (exact, differentiable)."""
  x = jnp.zeros((1, size, size, 1), jnp.float32)
  out, vjp = jax.vjp(lambda v: g_apply({"params": g_params}, v), x)
  return vjp(jnp.ones_like(out))[0][0, :, :, 0]


def wanted_center(size: int, scale: int) -> float:
  """Centre of mass of a correlation kernel that samples LR pixel i at HR s*i + (s - 1)/2."""
  return size // 2 + 0.5 * (scale - size % 2)


def penalty_mask(size: int, penalty: float = 30.0) -> np.ndarray:
  """The reference's boundary weights: 1 - a wide Gaussian (sigma = size), zero in the middle."""
  z = np.arange(-size // 2 + 1, size // 2 + 1, dtype=np.float64)
  g = np.exp(-z ** 2 / (2.0 * size ** 2))
  mask = 1.0 - np.outer(g, g) / np.max(np.outer(g, g))
  margin = (size - (size // 2 + size % 2)) // 2 - 1
  mask[margin:-margin, margin:-margin] = 0.0
  return (penalty * mask).astype(np.float32)


def kernel_terms(w: jax.Array, scale: int) -> dict[str, jax.Array]:
  size = w.shape[0]
  idx = jnp.arange(size, dtype=jnp.float32)
  total = jnp.sum(w)
  center = jnp.stack([jnp.sum(jnp.sum(w, 1) * idx), jnp.sum(jnp.sum(w, 0) * idx)]) / total
  return {
      "sum2one": jnp.abs(1.0 - total),
      "boundaries": jnp.mean(jnp.abs(w * penalty_mask(size))),
      "centralized": jnp.mean((center - wanted_center(size, scale)) ** 2),
      # |w|^0.2 has an infinite slope at 0; the floor keeps its gradient finite.
      "sparse": jnp.mean(jnp.maximum(jnp.abs(w), 1e-12) ** 0.2),
  }


def clean_kernel(w: np.ndarray, n: int = 40) -> np.ndarray:
  """Zero what is below 0.75x the n-th largest value, renormalise (the reference's filtering)."""
  w = np.asarray(w, np.float64)
  floor = 0.75 * np.sort(w.ravel())[-n - 1]
  w = np.clip(w - floor, 0.0, None)
  return w / w.sum()


def center_kernel(w: np.ndarray, scale: int) -> np.ndarray:
  """Shift a correlation kernel (padding it) so its centre of mass is `wanted_center`."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  w = np.asarray(w, np.float64)
  if w.shape[0] % 2 == 0 or w.shape[0] != w.shape[1]:
    raise ValueError(f"center_kernel expects an odd square kernel, got {w.shape}")
  shift = wanted_center(w.shape[0], scale) - np.asarray(ndimage.center_of_mass(w))
  pad = int(math.ceil(np.max(np.abs(shift)))) + 1
  w = np.pad(w, pad)
  w = ndimage.shift(w, shift, order=1)  # Linear: stays >= 0 and moves the mean exactly.
  return w / w.sum()


def analytic_x4(w2: np.ndarray) -> np.ndarray:
  """The x4 kernel of applying the x2 correlation kernel twice (KernelGAN's appendix)."""
  k = w2.shape[0]
  big = np.zeros((3 * k - 2, 3 * k - 2))
  for r in range(k):
    for c in range(k):
      big[2 * r:2 * r + k, 2 * c:2 * c + k] += w2[r, c] * w2
  crop = k // 2
  big = big[crop:-crop, crop:-crop]
  return big / big.sum()


def to_degrade_convention(w: np.ndarray) -> np.ndarray:
  """Correlation weights -> the kernel jsr.ops.degrade convolves with (flipped)."""
  return np.ascontiguousarray(np.asarray(w, np.float32)[::-1, ::-1])


# ------------------------------------------------------------------------------------------------
# Crops where the image has gradients (the reference's probability maps).
# ------------------------------------------------------------------------------------------------


def _zero_border(m: np.ndarray, edge: int) -> np.ndarray:
  out = np.zeros_like(m)
  out[edge:-edge, edge:-edge] = m[edge:-edge, edge:-edge]
  return out


def _clip_extreme(m: np.ndarray, percent: float) -> np.ndarray:
  s = np.sort(m.ravel())
  pivot = int(percent * len(s))
  lo = s[pivot]
  hi = s[pivot + 1] if s[pivot + 1] > lo else lo + 1e-5
  return np.clip(m, lo, hi) - lo


def gradient_map(img: np.ndarray, window: int = 5, percent: float = 0.97) -> np.ndarray:
  """Where the image has edges: clipped |gx|, |gy|, |g| maps summed and box-blurred (mean 1)."""
  from scipy.signal import convolve2d  # pylint: disable=g-import-not-at-top
  gray = img @ np.array([0.299, 0.587, 0.114]) if img.shape[-1] == 3 else img[..., 0]
  gx, gy = np.gradient(gray)
  mag = np.sqrt(gx ** 2 + gy ** 2)
  maps = [_clip_extreme(_zero_border(m, window), percent) for m in (np.abs(gx), np.abs(gy), mag)]
  comb = sum(m / max(m.sum(), 1e-12) for m in maps)
  loss_map = convolve2d(comb, np.ones((window, window)), "same") / window ** 2
  return loss_map / max(np.mean(loss_map), 1e-12)


def crop_probabilities(loss_map: np.ndarray, crop: int) -> np.ndarray:
  """P(crop centre) over the flattened map: mean of the map over the crop, 0 near borders."""
  from scipy.signal import convolve2d  # pylint: disable=g-import-not-at-top
  half = max(crop // 2, 1)
  blurred = convolve2d(loss_map, np.ones((half, half)), "same") / half ** 2
  p = _zero_border(blurred, half).ravel()
  return p / p.sum() if p.sum() > 0 else np.full(p.shape, 1.0 / p.size)


def top_left(center: int, size: int, h: int, w: int) -> tuple[int, int]:
  row, col = divmod(int(center), w)
  top = min(max(0, row - size // 2), h - size)
  left = min(max(0, col - size // 2), w - size)
  return top - top % 2, left - left % 2  # Even, so crops stay aligned with the x2 grid.


# ------------------------------------------------------------------------------------------------
# The GAN step.
# ------------------------------------------------------------------------------------------------


@struct.dataclass
class GANState:
  g_params: Any
  g_opt: Any
  d_params: Any
  d_stats: Any
  d_opt: Any
  lambdas: dict[str, jax.Array]  # bicubic, sum2one, boundaries, centralized, sparse
  similar: jax.Array  # G has matched bicubic (three iterations running)
  counter: jax.Array
  inserted: jax.Array  # centralized/sparse terms switched on


def _swap(x):
  """(1, H, W, C) <-> (C, H, W, 1): G sees each colour channel as its own gray image."""
  return jnp.transpose(x, (3, 1, 2, 0))


def make_nets(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  return kernelgan_net.Model(variant=config.kernelgan.variant, scale=2)


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  k = config.kernelgan
  boundaries = {s + 1: 1.0 / k.lr_decay_factor
                for s in range(k.lr_decay_every, k.max_iters, k.lr_decay_every)}
  return optax.piecewise_constant_schedule(k.lr, boundaries)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  k = config.kernelgan
  return optax.adam(make_schedule(config), b1=k.b1, b2=k.b2)


def init_gan(config: ml_collections.ConfigDict, rng, g_crop: int) -> GANState:
  gen, disc = make_nets(config)
  g_rng, d_rng = jax.random.split(rng)
  x = jnp.zeros((3, g_crop, g_crop, 1), jnp.float32)
  g_params = common.init_variables(gen, g_rng, x)["params"]
  d_in = _swap(gen.apply({"params": g_params}, x))
  d_vars = common.init_variables(disc, d_rng, d_in, train=False)
  tx = make_optimizer(config)
  k = config.kernelgan
  lambdas = {name: jnp.asarray(v, jnp.float32) for name, v in (
      ("bicubic", k.lambda_bicubic), ("sum2one", k.lambda_sum2one),
      ("boundaries", k.lambda_boundaries), ("centralized", 0.0), ("sparse", 0.0))}
  return GANState(g_params=g_params, g_opt=tx.init(g_params), d_params=d_vars["params"],
                  d_stats=d_vars["batch_stats"], d_opt=tx.init(d_vars["params"]),
                  lambdas=lambdas, similar=jnp.asarray(False), counter=jnp.asarray(0),
                  inserted=jnp.asarray(False))


def gan_step(state: GANState, g_in, d_in, rng, iteration, *, config: ml_collections.ConfigDict):
  """One G update, one D update and the constraint schedule; g_in (1, P, P, C), d_in (1, p, p, C)
  in [-1, 1]. Returns (state, metrics)."""
  gen, disc = make_nets(config)
  tx = make_optimizer(config)
  k = config.kernelgan
  size = gen.kernel_size
  lam = state.lambdas

  def d_apply(params, stats, x):
    out, upd = disc.apply({"params": params, "batch_stats": stats}, x, train=True,
                          mutable=["batch_stats"])
    return out, upd["batch_stats"]

  # --- G: fool D, plus the kernel constraints. ---
  bicubic_target = imresize(g_in, 0.5)  # MATLAB bicubic /2: LR pixel i at 2i + 0.5, like G's aim.

  def g_loss(g_params):
    g_out = _swap(gen.apply({"params": g_params}, _swap(g_in)))
    d_fake, stats = d_apply(state.d_params, state.d_stats, g_out)
    shave = (bicubic_target.shape[1] - g_out.shape[1]) // 2
    target = bicubic_target[:, shave:shave + g_out.shape[1], shave:shave + g_out.shape[2]]
    terms = kernel_terms(effective_kernel(gen.apply, g_params, size), scale=2)
    terms["bicubic"] = jnp.mean((g_out - target) ** 2)
    # Relative to what G = 0 scores: the reference's absolute test (MSE < 0.4 on [-1, 1] images)
    # is passed by G's near-zero initial output, which starts the prior's decay before G has
    # learned anything (on Set5 baby its kernel still summed to 0.02 after 3000 iterations).
    terms["bicubic_rel"] = jax.lax.stop_gradient(terms["bicubic"] / jnp.mean(target ** 2))
    terms["gan_g"] = jnp.mean(jnp.abs(d_fake - 1.0))
    total = terms["gan_g"] + sum(lam[n] * terms[n] for n in lam)  # (bicubic_rel: not a loss)
    return total, (terms, stats)

  (_, (terms, d_stats)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(state.g_params)
  g_updates, g_opt = tx.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  # --- D: real crops of the input against G's (updated) output, both with a little noise. ---
  r_real, r_fake = jax.random.split(rng)
  fake = jax.lax.stop_gradient(_swap(gen.apply({"params": g_params}, _swap(g_in))))
  fake = fake + jax.random.normal(r_fake, fake.shape) / 255.0
  real = d_in + 2.0 * jax.random.normal(r_real, d_in.shape) / 255.0

  def d_loss(d_params):
    d_fake, stats = d_apply(d_params, d_stats, fake)
    d_real, stats = d_apply(d_params, stats, real)
    return 0.5 * (jnp.mean(d_fake) + jnp.mean(jnp.abs(d_real - 1.0))), stats

  (loss_d, d_stats), d_grads = jax.value_and_grad(d_loss, has_aux=True)(state.d_params)
  d_updates, d_opt = tx.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  # --- The constraint schedule (the reference's Learner), after this iteration. ---
  below = terms["bicubic_rel"] < k.bicubic_match
  becomes_similar = ~state.similar & below & (state.counter >= 2)
  counter = jnp.where(state.similar | (iteration == 0), state.counter,
                      jnp.where(below, state.counter + 1, 0))
  decay = (state.similar & (iteration % k.lambda_update_every == 0) & (iteration > 0)
           & (lam["bicubic"] > k.lambda_bicubic_min))
  new_bic = jnp.where(decay, jnp.maximum(lam["bicubic"] / 100.0, k.lambda_bicubic_min),
                      lam["bicubic"])
  insert = decay & ~state.inserted & (new_bic < 5e-3)
  lambdas = dict(lam, bicubic=new_bic,
                 centralized=jnp.where(insert, k.lambda_centralized, lam["centralized"]),
                 sparse=jnp.where(insert, k.lambda_sparse, lam["sparse"]))
  state = GANState(g_params=g_params, g_opt=g_opt, d_params=d_params, d_stats=d_stats,
                   d_opt=d_opt, lambdas=lambdas,
                   similar=state.similar | (becomes_similar & (iteration > 0)),
                   counter=counter, inserted=state.inserted | insert)
  return state, {**terms, "gan_d": loss_d}


@functools.lru_cache(maxsize=4)
def _compiled_step(config_json: str):
  config = ml_collections.ConfigDict(json.loads(config_json))
  return jax.jit(functools.partial(gan_step, config=config), donate_argnums=0)


# ------------------------------------------------------------------------------------------------
# Per image.
# ------------------------------------------------------------------------------------------------


def estimate_kernel(lr: np.ndarray, config: ml_collections.ConfigDict, seed: int = 0,
                    progress: progress_lib.Progress = progress_lib.NULL
                    ) -> tuple[np.ndarray, dict[str, Any]]:
  """KernelGAN on one LR image (H, W, C) in [0, 1]: the kernel for config.scale (2 or 4) in
  jsr.ops.degrade's convention, and a log."""
  k, s = config.kernelgan, config.scale
  if s not in (2, 4):
    raise ValueError(f"KernelGAN estimates x2 kernels (and x4 ones from them); "
                     f"config.scale={s} is not supported")
  img = np.asarray(lr, np.float64) * 2.0 - 1.0
  if img.ndim == 3 and img.shape[-1] == 1:  # Gray: the nets are built for RGB; one kernel blurs all.
    img = np.repeat(img, 3, axis=-1)
  if k.shave_edges:  # Synthetic LR images have border artefacts from their own making.
    img = img[10:-10, 10:-10]
  img = img[: img.shape[0] - img.shape[0] % 2, : img.shape[1] - img.shape[1] % 2]
  gen, disc = make_nets(config)
  g_crop = k.crop_size
  if min(img.shape[:2]) < g_crop:
    raise ValueError(f"KernelGAN: the image ({lr.shape[0]}x{lr.shape[1]}, "
                     f"{img.shape[0]}x{img.shape[1]} after shaving) is smaller than "
                     f"config.kernelgan.crop_size={g_crop}")
  d_crop = (g_crop - gen.kernel_size) // 2 + 1  # G's output: valid convs, then stride 2.
  if d_crop <= disc.kernel_size:
    raise ValueError(f"config.kernelgan.crop_size={g_crop}: G's output ({d_crop} px) must be "
                     f"larger than D's {disc.kernel_size}x{disc.kernel_size} patches")

  rng = np.random.default_rng(seed)
  h, w = img.shape[:2]
  big = gradient_map(img)
  small = gradient_map(np.asarray(imresize(jnp.asarray(img, jnp.float32), 0.5)))
  small = np.kron(small, np.ones((2, 2)))[:h, :w]  # nearest-neighbour x2, as the reference
  g_centers = rng.choice(h * w, size=k.max_iters, p=crop_probabilities(small, g_crop))
  d_centers = rng.choice(h * w, size=k.max_iters, p=crop_probabilities(big, d_crop))

  key = jax.random.key(seed)
  state = init_gan(config, jax.random.fold_in(key, 0), g_crop)
  step = _compiled_step(config.to_json())
  img32 = img.astype(np.float32)
  t0 = time.perf_counter()
  metrics = None
  schedule = make_schedule(config)  # For the progress report only: the step has its own.
  progress.start(k.max_iters)
  for it in range(k.max_iters):
    gy, gx = top_left(g_centers[it], g_crop, h, w)
    dy, dx = top_left(d_centers[it], d_crop, h, w)
    state, metrics = step(state, img32[None, gy:gy + g_crop, gx:gx + g_crop],
                          img32[None, dy:dy + d_crop, dx:dx + d_crop],
                          jax.random.fold_in(key, it + 1), it)
    # One device sync per REPORT_EVERY iterations, and none when nobody listens.
    if progress is not progress_lib.NULL and (it + 1) % REPORT_EVERY == 0:
      m = jax.device_get(metrics)
      progress.update(it + 1, learning_rate=float(schedule(it)),
                      kernelgan_gan_g=float(m["gan_g"]), kernelgan_gan_d=float(m["gan_d"]),
                      kernelgan_sum2one=float(m["sum2one"]))
  metrics = {n: float(v) for n, v in jax.device_get(metrics).items()}
  if not all(math.isfinite(v) for v in metrics.values()):
    raise FloatingPointError(f"KernelGAN diverged: last losses {metrics}")
  w_eff = np.asarray(effective_kernel(gen.apply, state.g_params, gen.kernel_size))
  w2 = center_kernel(clean_kernel(w_eff, k.n_filtering), 2)
  kernel = to_degrade_convention(w2 if s == 2 else center_kernel(analytic_x4(w2), 4))
  return kernel, {"kernelgan_seconds": time.perf_counter() - t0,
                  "kernelgan_final": metrics,
                  "similar_to_bicubic": bool(state.similar)}


def super_resolve(lr: np.ndarray, config: ml_collections.ConfigDict, seed: int = 0,
                  progress: progress_lib.Progress = progress_lib.NULL
                  ) -> tuple[np.ndarray, dict[str, Any]]:
  """KernelGAN's kernel, then ZSSR with it. The log holds the kernel (saved by jsr.zeroshot).
  `progress` counts KernelGAN's iterations, then ZSSR's after them."""
  progress.start(config.kernelgan.max_iters + config.zssr.max_iters)
  kernel, log = estimate_kernel(
      lr, config, seed,
      progress if progress is progress_lib.NULL else progress_lib.Shifted(progress, 0))
  sr, zlog = zssr.super_resolve(lr, config, seed, kernel=kernel,
                                progress=progress_lib.Shifted(progress, config.kernelgan.max_iters))
  return sr, {**zlog, **log, "kernel": kernel}
