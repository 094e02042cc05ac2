"""CSRGAN: a U-Net GAN on a randomly degraded, pre-upsampled input that also predicts the
degradation's parameters (configs/csrgan.py).

Per sample, inside the jitted step (jsr.ops.random_degrade): HR crop -> Gaussian blur,
sigma ~ U[0, sigma_max] -> MATLAB bicubic downscale by f ~ U[scale_min, scale_max] -> Gaussian
noise, std ~ U[0, noise_max] -> bicubic back to the HR size. The generator (jsr.models.unet)
returns the restored image S (sigmoid output) and the parameters (sigma, noise, f) normalised to
[0, 1] over their ranges; the discriminator is SRGAN's VGG-style classifier (128-px crops).

  L_G = w_gan * L_GAN(D(S)) + lambda * MSE(params_hat, params) + mu * MSE(S, HR)
  L_D = the GAN loss of D on HR (real) and S (fake)

as the founding document settles on (w_gan = 1 there; `gan.weight`). lambda = 0 turns the
prediction off -- the ablation. Given pairs (`data.train=pairs:...`, equal-size LR) are used as
the input as they are; their parameters are unknown, so the prediction term is off for them.

The step's metrics include each term, D's mean logits, and the head's mean absolute error per
parameter in its own units (`err_sigma`, `err_noise` on the [0, 255] scale, `err_scale`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jsr import errors
from jsr import losses
from jsr import models
from jsr import optim
from jsr.methods import gan
from jsr.methods import supervised
from jsr.models import common
from jsr.ops import random_degrade

State = gan.State
PARAM_NAMES = ("sigma", "noise", "scale")  # the head's output order (jsr.models.unet)


def create_generator(config: ml_collections.ConfigDict):
  return models.get_model(config.model.name, variant=config.model.variant, scale=1,
                          dtype=jnp.dtype(config.model.dtype))


def param_ranges(config: ml_collections.ConfigDict) -> dict[str, tuple[float, float]]:
  d = config.degradation
  return {"sigma": (0.0, d.sigma_max), "noise": (0.0, d.noise_max),
          "scale": (d.scale_min, d.scale_max)}


def normalise(params: dict[str, Any], config) -> jax.Array:
  """{name: (B,)} -> (B, 3) in [0, 1] over each parameter's configured range."""
  cols = []
  for name in PARAM_NAMES:
    lo, hi = param_ranges(config)[name]
    cols.append((params[name] - lo) / max(hi - lo, 1e-12))
  return jnp.stack(cols, axis=-1)


def denormalise(pred: jax.Array, config) -> dict[str, jax.Array]:
  out = {}
  for i, name in enumerate(PARAM_NAMES):
    lo, hi = param_ranges(config)[name]
    out[name] = lo + pred[..., i] * (hi - lo)
  return out


def degrade(hr, rng, config):
  """(degraded input, its parameters) for a batch of HR crops, on the device."""
  d = config.degradation
  k_params, k_noise = jax.random.split(rng)
  params = random_degrade.sample_params(k_params, hr.shape[0], d.sigma_max, d.scale_min,
                                        d.scale_max, d.noise_max)
  x = random_degrade.blur_down_noise_up(hr, params, k_noise, d.sigma_max, d.quantize)
  return jax.lax.stop_gradient(x), params


def _check(config: ml_collections.ConfigDict, patch: int) -> None:
  d = config.degradation
  if config.scale != 1:
    raise errors.UserError(f"config.scale={config.scale}: CSRGAN restores a pre-upsampled input "
                           "at its own size; the scale is drawn per sample (degradation.scale_min/"
                           "max), so config.scale must be 1")
  if not 1.0 <= d.scale_min <= d.scale_max <= random_degrade.MAX_FACTOR:
    raise errors.UserError(f"config.degradation scale_min={d.scale_min}, scale_max={d.scale_max}: "
                           f"need 1 <= scale_min <= scale_max <= {random_degrade.MAX_FACTOR}")
  if d.sigma_max < 0 or d.noise_max < 0:
    raise errors.UserError("config.degradation sigma_max and noise_max must be >= 0")
  if 2 * int(-(-3 * d.sigma_max // 1)) + 1 > patch:
    raise errors.UserError(f"config.degradation.sigma_max={d.sigma_max} needs a blur kernel wider "
                           f"than the {patch}-px crop")
  if config.gan.kind not in losses.GAN_KINDS:
    raise errors.UserError(f"config.gan.kind must be one of {losses.GAN_KINDS}, got "
                           f"{config.gan.kind!r}")


def init(config: ml_collections.ConfigDict, rng, batch) -> State:
  patch = batch["image"].shape[1]
  _check(config, patch)
  if "lr" in batch and batch["lr"].shape[1:3] != batch["image"].shape[1:3]:
    raise errors.UserError(f"data.train={config.data.train!r}: CSRGAN takes pre-upsampled LR "
                           f"images of the HR size; these pairs are x{config.scale}")
  g_rng, d_rng = jax.random.split(rng)
  x = jnp.zeros((1, patch, patch, 3), jnp.float32)
  g_vars = common.init_variables(create_generator(config), g_rng, x)
  d_vars = common.init_variables(gan.create_discriminator(config), d_rng, x)
  tx_g, tx_d = gan._optimizers(config)  # pylint: disable=protected-access
  g, d = g_vars["params"], d_vars["params"]
  return State(step=jnp.zeros((), jnp.int32), g_params=g, g_batch_stats=None,
               g_ema=jax.tree.map(jnp.copy, g) if config.ema_decay > 0 else None,
               g_opt=tx_g.init(g), d_params=d, d_batch_stats=d_vars.get("batch_stats"),
               d_opt=tx_d.init(d))


def train_step(state: State, batch, rng, config: ml_collections.ConfigDict, frozen=None):
  del frozen
  hr = supervised._to_float(batch["image"])  # pylint: disable=protected-access
  if "lr" in batch:  # Given pairs: no parameters to predict.
    x, params, pred_on = supervised._to_float(batch["lr"]), None, 0.0  # pylint: disable=protected-access
  else:
    x, params = degrade(hr, jax.random.fold_in(rng, 0), config)
    pred_on = 1.0
  g_net, d_net = create_generator(config), gan.create_discriminator(config)
  apply_d = lambda p, s, img: gan._apply(d_net, p, s, img, train=True)  # pylint: disable=protected-access
  d_real_for_g = None
  if config.gan.relativistic:
    d_real_for_g, _ = apply_d(state.d_params, state.d_batch_stats, hr)

  def g_objective(g_params):
    sr, p_hat = g_net.apply({"params": g_params}, x, train=True)
    terms = {"l_mse": jnp.mean((sr - hr) ** 2)}
    total = config.mse_weight * terms["l_mse"]
    if params is not None:
      terms["l_pred"] = jnp.mean((p_hat - normalise(params, config)) ** 2)
      total += pred_on * config.pred_weight * terms["l_pred"]
    if config.gan.weight:
      d_fake, _ = apply_d(state.d_params, state.d_batch_stats, sr)
      terms["l_g_gan"] = losses.generator_loss(config.gan.kind, d_real_for_g, d_fake,
                                               config.gan.relativistic)
      total += config.gan.weight * terms["l_g_gan"]
    return total, (terms, sr, p_hat)

  (g_loss, (g_terms, sr, p_hat)), g_grads = jax.value_and_grad(
      g_objective, has_aux=True)(state.g_params)
  fake = jax.lax.stop_gradient(sr)

  def d_objective(d_params):
    real, stats = apply_d(d_params, state.d_batch_stats, hr)
    fake_logits, stats = apply_d(d_params, stats, fake)
    total = losses.discriminator_loss(config.gan.kind, real, fake_logits, config.gan.relativistic)
    return total, ({"d_real": jnp.mean(real), "d_fake": jnp.mean(fake_logits)}, stats)

  (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(
      d_objective, has_aux=True)(state.d_params)

  new_state, _ = gan.update_networks(state, config, g_grads, None, d_grads, d_stats)

  metrics = {"loss": g_loss, **g_terms, "l_d": d_loss, **d_parts,
             "psnr": supervised._psnr(sr, hr),  # pylint: disable=protected-access
             "psnr_input": supervised._psnr(x, hr),  # pylint: disable=protected-access
             "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads),
             "lr_g": optim.make_schedule(config.optim_g, config.total_steps)(state.step),
             "lr_d": optim.make_schedule(config.optim_d, config.total_steps)(state.step)}
  if params is not None:
    est = denormalise(p_hat, config)
    for name in PARAM_NAMES:
      err = jnp.mean(jnp.abs(est[name] - params[name]))
      metrics[f"err_{name}"] = err * 255.0 if name == "noise" else err
  return new_state, metrics


def inference_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  return {"params": "g_ema" if config.ema_decay > 0 else "g_params"}


def generator_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  del config
  return {"g_params": "params", "g_ema": "params"}


def predict(variables, lr, config: ml_collections.ConfigDict):
  """Degraded, pre-upsampled input (N, H, W, C) -> restored (N, H, W, C)."""
  image, _ = create_generator(config).apply(variables, lr.astype(jnp.float32), train=False)
  return image.astype(jnp.float32)


def estimate(variables, x, config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """The head's (sigma, noise on [0, 1], scale) estimates for inputs x (N, H, W, C)."""
  _, p_hat = create_generator(config).apply(variables, x.astype(jnp.float32), train=False)
  return denormalise(p_hat, config)
