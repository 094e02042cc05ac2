"""Supervised SR: learn LR -> HR from pairs synthesised on the fly from HR photo crops.

The batch's `image` is an HR crop (P x P, P divisible by the scale). The LR input is made from it on
device, inside the step, in jnp:

  * `degradation.kernel="bicubic"` (default): MATLAB `imresize(hr, 1/s)`, rounded to 8 bits after
    each axis pass (`degradation.quantize`) exactly as the LR images saved by the papers' MATLAB
    scripts are -- the benchmark protocol's LR, so train and test inputs come from one process.
  * `"gaussian"` / `"file"`: blur with that kernel, then `degradation.downsample` ("direct":
    every s-th pixel, or "bicubic"), as in jsr.ops.degrade (the same block as configs/selfsup.py).
  * `degradation.noise_sigma` > 0 adds white Gaussian noise (std on the [0, 1] scale) drawn from the
    step's rng; `quantize` then rounds the noisy LR to 8 bits.
  * `degradation.pipeline="realesrgan"` / `"bsrgan"`: a random real-world chain per sample (blur,
    resize, noise, JPEG; jsr.ops.realworld) with the parameters of `degradation.<pipeline>`,
    instead of all of the above. Several joined by "+" (`"bsrgan+realesrgan"`) train on a
    mixture: each batch draws one of the chains with equal probability (`jax.lax.switch`, so only
    that chain runs).

`degradation.sharpen.targets` ("pixel", Real-ESRGAN's l1_gt_usm) makes the loss compare with the
unsharp-masked HR crop (BasicSR's USMSharp) instead of the crop itself.

LR synthesis is wrapped in stop_gradient: it is data, not part of the model (and the rounding has
no useful gradient anyway).

Given pairs (`data.train=pairs:LR_DIR,HR_DIR` or a prepared set of pairs) bring their own LR in
`batch["lr"]`; it is used as it is, and the degradation block is not applied. An LR upsampled to
the HR size beforehand (equal-size pairs, e.g. RealSR's) is brought back to the LR size by MATLAB
bicubic 1/s (8-bit rounded) on the device, since every model here maps LR -> x s.

Loss: `config.loss` is a weighted sum like "1*L1+0.001*TV" (jsr.losses.parse_loss). Multi-level
models (LapSRN, lapres) return one image per x2 pyramid level; the loss is applied to every level
against the HR crop downscaled by MATLAB bicubic (8-bit rounded, like the input) to that level's
size, and the levels' losses are summed, as in LapSRN. Per-level terms are logged as
`<term>_x<level scale>`.

Options: `ema_decay` > 0 keeps an exponential moving average of the weights (updated after every
step: ema <- d_t * ema + (1 - d_t) * params, d_t = min(ema_decay, (1 + t) / (10 + t)), TF's
warm-up (jsr.optim.ema_decay_at); `predict` then uses it). `model.dtype="bfloat16"` computes
in bfloat16 while params, gradients, optimizer state and losses stay float32 (the models cast their
outputs to float32). Models with BatchNorm (SRResNet) train on batch statistics and keep the
running ones in `state.batch_stats`.

Method interface (jsr/methods/__init__.py): init / train_step / predict, and inference_fields /
generator_fields (predict reads the EMA weights when kept, and the BatchNorm statistics).
"""

from __future__ import annotations

from typing import Any

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jsr import losses
from jsr import models
from jsr import optim
from jsr.models import common
from jsr.ops import degrade as degrade_ops
from jsr.ops import realworld
from jsr.ops.resize import imresize


class TrainState(train_state.TrainState):
  """TrainState plus the running BatchNorm statistics and the EMA weights.

  Both are None when unused (no BatchNorm / ema_decay = 0); None is an empty pytree node, so the
  checkpoint holds exactly the arrays the configured run has.
  """
  batch_stats: Any = None
  ema_params: Any = None


# ------------------------------------------------------------------------------------------------
# Model and LR synthesis.
# ------------------------------------------------------------------------------------------------


def create_model(config: ml_collections.ConfigDict):
  return models.get_model(config.model.name, variant=config.model.variant, scale=config.scale,
                          dtype=jnp.dtype(config.model.dtype))


def _quantize(x):
  return jnp.clip(jnp.round(x * 255.0), 0.0, 255.0) / 255.0


PIPELINES = ("classical",) + realworld.PIPELINES


def _pipeline(deg) -> str:
  """config.degradation.pipeline, checked: "classical", one of realworld.PIPELINES, or several of
  them joined by "+" (a mixture: each batch draws one chain, e.g. "bsrgan+realesrgan")."""
  names = str(deg.pipeline).split("+")
  ok = (deg.pipeline in PIPELINES or
        (len(names) > 1 and len(set(names)) == len(names) and
         all(n in realworld.PIPELINES for n in names)))
  if not ok:
    raise ValueError(f"config.degradation.pipeline must be one of {PIPELINES}, or several of "
                     f"{realworld.PIPELINES} joined by '+' (e.g. 'bsrgan+realesrgan'), "
                     f"got {deg.pipeline!r}")
  return deg.pipeline


def _realworld_lr(hr, rng, deg, scale: int):
  """LR by the pipeline (or the mixture: one of its chains per batch, uniformly) deg names."""
  names = deg.pipeline.split("+")
  if len(names) == 1:
    return realworld.degrade(hr, rng, deg[names[0]], scale, deg.sharpen)[0]
  pick, rng = jax.random.split(rng)

  def chain(name):
    return lambda x, key: realworld.degrade(x, key, deg[name], scale, deg.sharpen)[0]

  branches = [chain(n) for n in names]
  return jax.lax.switch(jax.random.randint(pick, (), 0, len(names)), branches, hr, rng)


def sharpen_targets(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The loss terms that compare with the unsharp-masked HR (config.degradation.sharpen.targets)."""
  names = tuple(t.strip() for t in config.degradation.sharpen.targets.split(",") if t.strip())
  for t in names:
    if t not in ("pixel", "perceptual"):
      raise ValueError(f"config.degradation.sharpen.targets={config.degradation.sharpen.targets!r}:"
                       f" {t!r} is not one of pixel, perceptual")
  return names


def synthesize_lr(hr, config: ml_collections.ConfigDict, rng=None, kernel=None):
  """HR (N, P, P, C) float in [0, 1] -> LR (N, P/s, P/s, C), no gradient.

  `kernel` is degrade_ops.kernel_from_config(config.degradation), passed in so it is built (or loaded) once.
  """
  deg, s = config.degradation, config.scale
  if _pipeline(deg) != "classical":
    if rng is None:
      raise ValueError(f"config.degradation.pipeline={deg.pipeline!r} needs the step's rng")
    return jax.lax.stop_gradient(_realworld_lr(hr, rng, deg, s))
  if deg.kernel == "bicubic":
    # MATLAB's uint8 path rounds after each axis pass; quantize=True reproduces it bit for bit.
    lr = imresize(hr, 1.0 / s, quantize=deg.quantize)
  else:
    if kernel is None:
      kernel = degrade_ops.kernel_from_config(deg)
    lr = degrade_ops.degrade(hr, s, kernel=kernel, mode=deg.downsample)
  if deg.noise_sigma > 0:
    if rng is None:
      raise ValueError("config.degradation.noise_sigma > 0 needs the step's rng")
    lr = lr + deg.noise_sigma * jax.random.normal(rng, lr.shape, lr.dtype)
  if deg.quantize:
    # Idempotent on the already rounded bicubic LR; rounds blurred / noisy LR like a saved PNG.
    lr = _quantize(lr)
  return jax.lax.stop_gradient(lr)


def batch_lr(batch, hr, config: ml_collections.ConfigDict, rng=None, kernel=None):
  """The step's LR input: the batch's given LR (pairs), else synthesize_lr(hr)."""
  if "lr" not in batch:
    return synthesize_lr(hr, config, rng, kernel)
  lr = _to_float(batch["lr"])
  if lr.shape[-3] == hr.shape[-3] and config.scale > 1:  # Pre-upsampled pairs.
    lr = imresize(lr, 1.0 / config.scale, quantize=True)
  return jax.lax.stop_gradient(lr)


def sharpened(hr, config: ml_collections.ConfigDict):
  """The unsharp-masked HR crop (config.degradation.sharpen), no gradient."""
  sh = config.degradation.sharpen
  return jax.lax.stop_gradient(realworld.usm_sharp(hr, sh.weight, sh.radius, sh.threshold))


def level_targets(hr, outputs) -> list:
  """For each model output, the HR crop at that output's size (MATLAB bicubic, 8-bit rounded);
  the full-size output gets the HR crop itself."""
  targets = []
  for out in outputs:
    size = out.shape[-3:-1]
    if tuple(size) == tuple(hr.shape[-3:-1]):
      targets.append(hr)
    else:
      targets.append(imresize(hr, out_shape=size, quantize=True))
  return [jax.lax.stop_gradient(t) for t in targets]


def _as_list(out) -> list:
  return list(out) if isinstance(out, (list, tuple)) else [out]


# ------------------------------------------------------------------------------------------------
# init / train_step / predict.
# ------------------------------------------------------------------------------------------------


def check_patch(config: ml_collections.ConfigDict, patch: int) -> None:
  s = config.scale
  if patch % s:
    raise ValueError(f"config.data.patch_size={patch} (the HR crop) must be divisible by "
                     f"config.scale={s}; e.g. {patch - patch % s or s} or {patch - patch % s + s}")


def init(config: ml_collections.ConfigDict, rng, batch) -> TrainState:
  patch = batch["image"].shape[1]
  check_patch(config, patch)
  losses.parse_loss(config.loss)  # An unknown term fails here, before anything compiles.
  _pipeline(config.degradation)
  sharpen_targets(config)
  model = create_model(config)
  dummy = jnp.zeros((1, patch // config.scale, patch // config.scale, 3), jnp.float32)
  variables = common.init_variables(model, rng, dummy)
  params = variables["params"]
  if "dssim" in config.loss.lower():
    shapes = jax.eval_shape(lambda v: model.apply(v, dummy), variables)
    smallest = min(min(o.shape[1:3]) for o in _as_list(shapes))
    if smallest < 11:
      raise ValueError(f"config.data.patch_size={patch}: the smallest output level is "
                       f"{smallest}px, but DSSIM (11x11 window) needs at least 11")
  tx = optim.make_optimizer(config.optim, config.total_steps)
  ema = jax.tree.map(jnp.copy, params) if config.ema_decay > 0 else None
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats=variables.get("batch_stats"), ema_params=ema)


def _to_float(image):
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 255.0
  return image.astype(jnp.float32)


def _psnr(sr, hr):
  mse = jnp.mean((jnp.clip(sr, 0.0, 1.0) - hr) ** 2)
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


def compute_loss(outputs, hr, loss_fn, scale: int) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Sum over levels of loss_fn(level output, HR at that level's size), and the logged terms.

  One output: its terms as they are ("l1", ...). Several (a pyramid): "<term>_x<level scale>",
  the level scale being the output size over the LR size.
  """
  outputs = _as_list(outputs)
  targets = level_targets(hr, outputs)
  lr_size = hr.shape[-3] // scale
  total, terms = 0.0, {}
  for out, target in zip(outputs, targets):
    level_total, level_terms = loss_fn(out, target)
    total += level_total
    if len(outputs) == 1:
      terms.update(level_terms)
    else:
      tag = f"x{out.shape[-3] // lr_size}"
      terms.update({f"{k}_{tag}": v for k, v in level_terms.items()})
  return total, terms


def apply_train(state: TrainState, params, *inputs):
  """The model in training mode: (output, {"batch_stats": new statistics} or {})."""
  variables = {"params": params}
  if state.batch_stats is None:
    return state.apply_fn(variables, *inputs, train=True), {}
  variables["batch_stats"] = state.batch_stats
  return state.apply_fn(variables, *inputs, train=True, mutable=["batch_stats"])


def apply_update(state: TrainState, grads, updates, config: ml_collections.ConfigDict) -> TrainState:
  """One optimizer step, then the new BatchNorm statistics (`updates` from a mutable apply) and
  the EMA weights, where the state keeps them."""
  new_state = state.apply_gradients(grads=grads)
  if state.batch_stats is not None:
    new_state = new_state.replace(batch_stats=updates["batch_stats"])
  if state.ema_params is not None:
    d = optim.ema_decay_at(config.ema_decay, state.step)
    new_state = new_state.replace(ema_params=jax.tree.map(
        lambda e, p: d * e + (1.0 - d) * p, state.ema_params, new_state.params))
  return new_state


def train_step(state: TrainState, batch, rng, config: ml_collections.ConfigDict, frozen=None):
  del frozen  # No pretrained parts.
  hr = _to_float(batch["image"])
  noise_rng = None if rng is None else jax.random.fold_in(rng, 0)
  lr = batch_lr(batch, hr, config, noise_rng, degrade_ops.kernel_from_config(config.degradation))
  target = sharpened(hr, config) if "pixel" in sharpen_targets(config) else hr
  loss_fn = losses.parse_loss(config.loss)

  def objective(params):
    out, updates = apply_train(state, params, lr)
    total, terms = compute_loss(out, target, loss_fn, config.scale)
    return total, (terms, _as_list(out)[-1], updates)

  (loss, (terms, sr, updates)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state = apply_update(state, grads, updates, config)
  metrics = {"loss": loss, **terms, "psnr": _psnr(sr, hr), "grad_norm": optax.tree.norm(grads),
             "learning_rate": optim.make_schedule(config.optim, config.total_steps)(state.step)}
  return new_state, metrics


def inference_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  """predict reads the EMA weights when they are kept, and the BatchNorm statistics (if any)."""
  return {"params": "ema_params" if config.ema_decay > 0 else "params",
          "batch_stats": "batch_stats"}


def generator_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  del config
  return {"params": "params", "ema_params": "params", "batch_stats": "batch_stats"}


def predict(variables, lr, config: ml_collections.ConfigDict):
  """LR (N, h, w, C) in [0, 1] -> SR (N, h*s, w*s, C) float32."""
  out = create_model(config).apply(variables, lr.astype(jnp.float32), train=False)
  return _as_list(out)[-1].astype(jnp.float32)
