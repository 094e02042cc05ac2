"""Self-supervised blind SR: train on LR observations only, never on HR.

The network f maps an observed LR image y to HR' = f(y). HR' is degraded with the (assumed) kernel k
and scale s, and must reproduce the observation (the consistency term):

    L = alpha * L2(y, y') + beta * (1 - SSIM(y, y')) + gamma * TV(HR') + delta * L2(f(D(y)), y),
    y' = D(f(y)) = down_s(f(y) * k)

The last term is the classical "pair" term (ZSSR-style): the observation is degraded once more and
the network learns to undo that, i.e. it learns SR one octave lower. Both can be combined; the
comparison is in docs/selfsup.md.

Method interface (jsr/methods/__init__.py): init / train_step / predict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from jsr import errors
from jsr import losses
from jsr import optim
from jsr.models import common, selfsup_net
from jsr.ops import degrade as degrade_ops

TrainState = train_state.TrainState


def create_model(config: ml_collections.ConfigDict):
  # Workdirs written before skip/tail existed were bicubic + sub-pixel.
  skip, tail = config.model.get("skip", "cubic"), config.model.get("tail", "shuffle")
  return selfsup_net.Model(variant=config.model.variant, scale=config.scale,
                           skip=skip, tail=tail,
                           degrade=make_degradation(config) if tail == "adjoint" else None,
                           dtype=jnp.dtype(config.model.dtype))


def make_degradation(config: ml_collections.ConfigDict):
  """jnp function hr -> lr implementing down_s(hr * k) with the configured kernel and sampling."""
  return degrade_ops.degradation_fn(config.degradation, config.scale)


def _check(config, patch: int):
  s = config.scale
  if patch % s:
    raise ValueError(f"config.data.patch_size={patch} must be a multiple of config.scale={s}")
  inner = patch - 2 * config.loss.margin
  if config.loss.beta > 0 and inner < 11:
    raise ValueError(f"config.data.patch_size={patch} minus 2*config.loss.margin leaves {inner} "
                     "pixels; SSIM needs at least 11")
  if config.loss.delta > 0 and patch // s < 4:
    raise ValueError(f"config.data.patch_size={patch} is too small for the pair term at x{s}")


def init(config: ml_collections.ConfigDict, rng, batch) -> TrainState:
  if "lr" in batch:
    raise errors.UserError(
        f"data.train={config.data.train!r} gives LR/HR pairs, but selfsup learns from LR images "
        "alone (its `image` is the observation); train it on folder:LR_DIR, or use a supervised "
        "config for pairs")
  patch = batch["image"].shape[1]
  _check(config, patch)
  model = create_model(config)
  dummy = jnp.zeros((1, patch, patch, 3), jnp.float32)
  params = common.init_variables(model, rng, dummy)["params"]
  tx = optim.make_optimizer(config.optim, config.total_steps)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _to_float(image):
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 255.0
  return image.astype(jnp.float32)


def _crop(x, m: int):
  return x if m == 0 else x[:, m:-m, m:-m, :]


def loss_terms(params, apply_fn, lr, config, degrade_fn):
  """All loss terms for a batch of LR observations; returns (total, {term: value})."""
  c = config.loss
  terms = {}
  total = 0.0
  if c.alpha > 0 or c.beta > 0 or c.gamma > 0:
    hr_pred = apply_fn({"params": params}, lr)
    lr_pred = degrade_fn(hr_pred)
    # The observation's border pixels depend on HR pixels outside the patch; leave them out.
    y, y_pred = _crop(lr, c.margin), _crop(lr_pred, c.margin)
    if c.alpha > 0:
      terms["l2"] = losses.l2(y_pred, y)
      total += c.alpha * terms["l2"]
    if c.beta > 0:
      terms["dssim"] = losses.dssim(y_pred, y)
      total += c.beta * terms["dssim"]
    if c.gamma > 0:
      terms["tv"] = losses.tv(hr_pred)
      total += c.gamma * terms["tv"]
  if c.delta > 0:
    # Degrade the observation once more and learn to undo it (one octave lower).
    lr_down = degrade_fn(lr)
    terms["pair_l2"] = losses.l2(apply_fn({"params": params}, lr_down), lr)
    total += c.delta * terms["pair_l2"]
  return total, terms


def train_step(state: TrainState, batch, rng, config: ml_collections.ConfigDict, frozen=None):
  del rng, frozen  # The loss has no randomness and no pretrained parts.
  lr = _to_float(batch["image"])
  degrade_fn = make_degradation(config)

  def loss_fn(params):
    return loss_terms(params, state.apply_fn, lr, config, degrade_fn)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads),
             "learning_rate": optim.make_schedule(config.optim, config.total_steps)(state.step)}
  return new_state, metrics


def predict(variables, lr, config: ml_collections.ConfigDict):
  return create_model(config).apply(variables, lr.astype(jnp.float32))
