"""SRMD / SRMDNF (Zhang, Zuo, Zhang, CVPR 2018): one network for many (blur kernel, noise level)
degradations, told the degradation through input maps (jsr/models/srmd.py).

Training (per sample, on device, inside the jitted step, from the step's rng):

  * a random anisotropic Gaussian 15x15 kernel, drawn as the authors' `degradation_model.m`
    (cszn/SRMD TrainingCodes) draws it: theta = pi U, l1 = l_min + (l_max - l_min) U,
    l2 = l_min + (l1 - l_min) U, eigenvalues of the covariance in [0.1, 10] px^2
    (`config.srmd.l_min/l_max`), built by jsr.ops.kernels.kair_anisotropic_gaussian;
  * y = (x * k) downscaled by MATLAB bicubic, the paper's degradation: the blur pads the border by
    replication (`blur_padding="edge"`, MATLAB imfilter 'replicate' as the training code does), then
    `imresize(., 1/s)` on floats. `config.srmd.downsample="direct"` keeps every s-th pixel of the
    blurred image instead (phase 0, degrade_ops.downsample): the DIV2KRK / KernelGAN model
    y = (x * k)|s, the one jsr's hidden-kernel sets (scripts/make_degraded_set.py --pipeline=kernel)
    are made with, where a kernel estimate from KernelGAN is in the same convention;
  * 8-bit rounding, then white Gaussian noise of std sigma ~ U[0, noise_max] (75/255 for SRMD, 0
    for SRMDNF). The reference rounds the noise-free LR (`im2single(im2uint8(.))`) and adds the noise
    after it, unrounded: `config.srmd.quantize="before_noise"`. "after_noise" rounds the noisy LR
    instead (the supervised method's order: LR saved as an 8-bit image), "none" never rounds.
    The rounding is supervised._quantize.
  * the degradation maps: the kernel's PCA code (basis from jsr/assets/srmd_pca.npz,
    scripts/make_srmd_pca.py; code = basis @ k.flatten("F")) and, for SRMD, sigma on the [0, 1]
    scale (KAIR's `noise_level / 255.`), one (15 + 1)-vector per sample that the model stretches
    to the LR size.

The paper also trains on isotropic kernels of width [0.2, 2/3/4] and scales the anisotropic
eigenvalue range with the scale factor (0.5 to 6/8/10); the released training code (the x3 demo,
whose degradation_model.m has no scale-dependent range) draws the one distribution above, and this
method draws it for every scale (its ranges are config keys).

Loss, EMA, BatchNorm statistics and the state are the supervised method's (supervised.TrainState,
compute_loss, inference_fields, generator_fields): only the LR synthesis and the model's second
input differ.

predict(variables, lr, config) builds the maps from `config.srmd`:
  kernel "bicubic": the paper's bicubic-degradation setting, KAIR main_test_srmd.py's
    `fspecial('gaussian', 15, 0.01)`, a delta kernel (y = bicubic(x));
  "gaussian": degrade_ops.gaussian_kernel(15, sigma, sigma2 or sigma, theta), stds in HR pixels
    (the kernel blurs the HR image before the downscaling);
  "file": a .npy kernel (e.g. KernelGAN's estimate, for blind use), centre-cropped or zero-padded
    to 15x15 and renormalised;
and `noise_sigma` (std on the [0, 1] scale) for the noise channel (ignored by SRMDNF).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jsr import errors
from jsr import losses
from jsr import optim
from jsr.methods import supervised
from jsr.models import common
from jsr.ops import degrade as degrade_ops
from jsr.ops import kernels as kernel_ops
from jsr.ops.resize import imresize

# The state, the loss bookkeeping and what predict reads are the supervised method's.
TrainState = supervised.TrainState
inference_fields = supervised.inference_fields
generator_fields = supervised.generator_fields

PCA_FILE = "srmd_pca.npz"
QUANTIZE = ("before_noise", "after_noise", "none")
DOWNSAMPLE = ("bicubic", "direct")
PREDICT_KERNELS = ("bicubic", "gaussian", "file")


def default_config() -> ml_collections.ConfigDict:
  """The `config.srmd` block: the training degradations and the maps predict is given."""
  c = ml_collections.ConfigDict()
  c.pca_file = ""  # "" = jsr/assets/srmd_pca.npz (scripts/make_srmd_pca.py)
  c.kernel_size = 15
  # Training kernels: theta ~ U[0, pi), l1 ~ U[l_min, l_max], l2 ~ U[l_min, l1] (px^2).
  c.l_min = 0.1
  c.l_max = 10.0
  c.noise_max = 75.0 / 255.0  # training noise std ~ U[0, noise_max]; 0 for SRMDNF
  c.quantize = "before_noise"  # one of QUANTIZE
  c.blur_padding = "edge"  # MATLAB imfilter 'replicate'
  c.downsample = "bicubic"  # one of DOWNSAMPLE: the paper's; "direct" for DIV2KRK-style sets
  # Inference maps (predict): the kernel the LR was made with and its noise level.
  c.kernel = "bicubic"  # one of PREDICT_KERNELS
  c.sigma = 1.0  # "gaussian": std along the first axis (HR pixels) ...
  c.sigma2 = 0.0  # ... and along the second (0: isotropic)
  c.theta = 0.0  # ... rotation (radians)
  c.kernel_file = ""  # "file": a 2-D .npy kernel
  c.noise_sigma = 0.0  # noise std on the [0, 1] scale (SRMD's noise channel)
  return c


# ------------------------------------------------------------------------------------------------
# The PCA basis and the degradation maps.
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_pca_cached(path: str) -> np.ndarray:
  try:
    with np.load(path) as f:
      basis = np.asarray(f["basis"], np.float32)
  except Exception as e:  # noqa: BLE001 - re-raised with the file named and the fix.
    raise errors.UserError(
        f"SRMD PCA basis {path}: cannot read it ({type(e).__name__}: {e}); regenerate it with "
        f"`python scripts/make_srmd_pca.py --output={path}`") from e
  if basis.ndim != 2 or not np.all(np.isfinite(basis)):
    raise errors.UserError(f"SRMD PCA basis {path}: 'basis' must be a finite (t, k*k) array, got "
                           f"shape {basis.shape}; regenerate it with scripts/make_srmd_pca.py")
  k = math.isqrt(basis.shape[1])
  if k * k != basis.shape[1]:
    raise errors.UserError(f"SRMD PCA basis {path}: {basis.shape[1]} columns are not a square "
                           "kernel's k*k")
  return basis


def pca_path(config: ml_collections.ConfigDict) -> str:
  if config.srmd.pca_file:
    return os.fspath(config.srmd.pca_file)
  return os.fspath(importlib.resources.files("jsr").joinpath("assets", PCA_FILE))


def load_pca(path: str | os.PathLike | None = None) -> np.ndarray:
  """The (t, k*k) float32 basis in `path` (default jsr/assets/srmd_pca.npz); a missing or corrupt
  file raises errors.UserError naming it."""
  if path is None:
    path = importlib.resources.files("jsr").joinpath("assets", PCA_FILE)
  return _load_pca_cached(os.fspath(path))


def kernel_code(kernel, basis):
  """(..., k, k) kernels -> (..., t) PCA codes, basis @ k.flatten("F") (column-major, MATLAB's
  k(:))."""
  k = kernel.shape[-1]
  flat = jnp.swapaxes(jnp.asarray(kernel, jnp.float32), -1, -2).reshape(*kernel.shape[:-2], k * k)
  if flat.shape[-1] != basis.shape[1]:
    raise ValueError(f"kernel_code: a {k}x{k} kernel does not match the PCA basis's "
                     f"{basis.shape[1]} columns")
  return jnp.einsum("...p,tp->...t", flat, jnp.asarray(basis, jnp.float32),
                    precision=jax.lax.Precision.HIGHEST)


def fit_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
  """A kernel centre-cropped or zero-padded to size x size and renormalised to sum 1."""
  k = np.asarray(kernel, np.float64)
  out = np.zeros((size, size))
  h, w = k.shape
  # Middle pixel onto middle pixel (index (n - 1) // 2, degrade_ops.blur's centre).
  ys, yd = max((h - 1) // 2 - (size - 1) // 2, 0), max((size - 1) // 2 - (h - 1) // 2, 0)
  xs, xd = max((w - 1) // 2 - (size - 1) // 2, 0), max((size - 1) // 2 - (w - 1) // 2, 0)
  nh, nw = min(h - ys, size - yd), min(w - xs, size - xd)
  out[yd:yd + nh, xd:xd + nw] = k[ys:ys + nh, xs:xs + nw]
  if out.sum() <= 0:
    raise ValueError(f"fit_kernel: the {h}x{w} kernel has no positive mass within {size}x{size}")
  return (out / out.sum()).astype(np.float32)


def predict_kernel(config: ml_collections.ConfigDict) -> np.ndarray:
  """The (k, k) kernel `config.srmd` names for inference (see the module doc)."""
  c, k = config.srmd, config.srmd.kernel_size
  if c.kernel == "bicubic":
    # KAIR main_test_srmd.py: fspecial('gaussian', 15, 0.01), i.e. a delta kernel. Evaluated
    # now (predict runs under jit; the kernel is a constant of the config).
    with jax.ensure_compile_time_eval():
      return np.asarray(kernel_ops.fspecial_gaussian(k, 0.01), np.float32)
  if c.kernel == "gaussian":
    return degrade_ops.gaussian_kernel(k, c.sigma, c.sigma2 or None, c.theta)
  if c.kernel == "file":
    return fit_kernel(degrade_ops.load_kernel(c.kernel_file), k)
  raise ValueError(f"config.srmd.kernel must be one of {PREDICT_KERNELS}, got {c.kernel!r}")


def degradation_vector(code, sigma, noise_channel: bool):
  """(N, t) codes and (N,) noise stds -> the model's (N, t [+ 1]) degradation input."""
  if not noise_channel:
    return code
  return jnp.concatenate([code, jnp.asarray(sigma, code.dtype)[:, None]], axis=-1)


# ------------------------------------------------------------------------------------------------
# Per-sample random degradation.
# ------------------------------------------------------------------------------------------------


def create_model(config: ml_collections.ConfigDict):
  return supervised.create_model(config)


def _downsample(config: ml_collections.ConfigDict) -> str:
  # Runs saved before the key existed (their config.json lacks it) were trained with bicubic.
  return config.srmd.get("downsample", "bicubic")


def _check(config: ml_collections.ConfigDict, model) -> None:
  c = config.srmd
  if c.quantize not in QUANTIZE:
    raise ValueError(f"config.srmd.quantize must be one of {QUANTIZE}, got {c.quantize!r}")
  if _downsample(config) not in DOWNSAMPLE:
    raise ValueError(f"config.srmd.downsample must be one of {DOWNSAMPLE}, got "
                     f"{_downsample(config)!r}")
  if not 0 < c.l_min <= c.l_max:
    raise ValueError(f"config.srmd: need 0 < l_min <= l_max, got {c.l_min}, {c.l_max}")
  if not model.noise_channel and c.noise_max > 0:
    raise ValueError(f"config.srmd.noise_max={c.noise_max}: the model (variant "
                     f"{config.model.variant!r}, SRMDNF) has no noise channel; set it to 0")


def random_kernels(rng, batch: int, config: ml_collections.ConfigDict):
  """(B, k, k) kernels drawn as degradation_model.m draws them (module doc)."""
  c = config.srmd
  k_theta, k_l1, k_l2 = jax.random.split(rng, 3)
  theta = math.pi * jax.random.uniform(k_theta, (batch,))
  l1 = c.l_min + (c.l_max - c.l_min) * jax.random.uniform(k_l1, (batch,))
  l2 = c.l_min + (l1 - c.l_min) * jax.random.uniform(k_l2, (batch,))
  return kernel_ops.kair_anisotropic_gaussian(c.kernel_size, theta, l1, l2)


def degrade(hr, kernels, sigma, rng, config: ml_collections.ConfigDict):
  """y = down_s(hr_i * k_i) (+ n_i), per sample, rounded as config.srmd.quantize says; down_s is
  MATLAB bicubic or direct subsampling (config.srmd.downsample).

  hr (B, H, W, C) float in [0, 1], kernels (B, k, k), sigma (B,) noise stds; no gradient.
  """
  c = config.srmd
  blurred = jax.vmap(lambda x, k: degrade_ops.blur(x[None], k, c.blur_padding)[0])(hr, kernels)
  if _downsample(config) == "direct":
    lr = degrade_ops.downsample(blurred, config.scale)
  else:
    lr = imresize(blurred, 1.0 / config.scale)
  if c.quantize == "before_noise":
    lr = supervised._quantize(lr)  # noqa: SLF001 - the supervised method's 8-bit rounding.
  lr = lr + sigma[:, None, None, None] * jax.random.normal(rng, lr.shape, lr.dtype)
  if c.quantize == "after_noise":
    lr = supervised._quantize(lr)  # noqa: SLF001
  return jax.lax.stop_gradient(lr)


# ------------------------------------------------------------------------------------------------
# init / train_step / predict.
# ------------------------------------------------------------------------------------------------


def init(config: ml_collections.ConfigDict, rng, batch) -> TrainState:
  patch = batch["image"].shape[1]
  supervised.check_patch(config, patch)
  losses.parse_loss(config.loss)  # An unknown term fails here, before anything compiles.
  model = create_model(config)
  _check(config, model)
  load_pca(pca_path(config))  # A missing basis fails here, naming the file.
  lr_size = patch // config.scale
  dummy = jnp.zeros((1, lr_size, lr_size, 3), jnp.float32)
  variables = common.init_variables(model, rng, dummy, jnp.zeros((1, model.map_channels)))
  params = variables["params"]
  tx = optim.make_optimizer(config.optim, config.total_steps)
  ema = jax.tree.map(jnp.copy, params) if config.ema_decay > 0 else None
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats=variables.get("batch_stats"), ema_params=ema)


def train_step(state: TrainState, batch, rng, config: ml_collections.ConfigDict, frozen=None):
  del frozen  # Nothing pretrained; the PCA basis is a small constant of the config.
  model = create_model(config)
  hr = supervised._to_float(batch["image"])  # noqa: SLF001
  n = hr.shape[0]
  k_kernel, k_sigma, k_noise = jax.random.split(jax.random.fold_in(rng, 0), 3)
  kernels = random_kernels(k_kernel, n, config)
  noise_max = config.srmd.noise_max if model.noise_channel else 0.0
  sigma = noise_max * jax.random.uniform(k_sigma, (n,))
  lr = degrade(hr, kernels, sigma, k_noise, config)
  basis = load_pca(pca_path(config))
  deg = jax.lax.stop_gradient(
      degradation_vector(kernel_code(kernels, basis), sigma, model.noise_channel))
  loss_fn = losses.parse_loss(config.loss)

  def objective(params):
    out, updates = supervised.apply_train(state, params, lr, deg)
    total, terms = supervised.compute_loss(out, hr, loss_fn, config.scale)
    return total, (terms, out, updates)

  (loss, (terms, sr, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state = supervised.apply_update(state, grads, updates, config)
  metrics = {"loss": loss, **terms, "psnr": supervised._psnr(sr, hr),  # noqa: SLF001
             "grad_norm": optax.tree.norm(grads), "noise_sigma": jnp.mean(sigma),
             "learning_rate": optim.make_schedule(config.optim, config.total_steps)(state.step)}
  return new_state, metrics


def predict_degradation(config: ml_collections.ConfigDict, batch: int, noise_channel: bool):
  """The (batch, t [+ 1]) degradation input for `config.srmd`'s kernel and noise level."""
  code = kernel_code(predict_kernel(config), load_pca(pca_path(config)))
  code = jnp.broadcast_to(code, (batch, code.shape[-1]))
  return degradation_vector(code, jnp.full((batch,), config.srmd.noise_sigma, jnp.float32),
                            noise_channel)


def predict(variables, lr, config: ml_collections.ConfigDict):
  """LR (N, h, w, 3) in [0, 1] -> SR (N, h*s, w*s, 3) float32, for config.srmd's degradation."""
  model = create_model(config)
  deg = predict_degradation(config, lr.shape[0], model.noise_channel)
  return model.apply(variables, lr.astype(jnp.float32), deg, train=False).astype(jnp.float32)
