r"""A method with two networks and two optimizers, for the engine's tests (tests/test_engine.py).

It has what a GAN brings to the engine, at toy size: a generator G (x2) with an EMA copy, a
discriminator D, two Adam states with their own schedules, and a frozen "feature network" (a fixed
random conv) that the engine passes to the step as `frozen`. It lives outside jsr/methods and is
loaded by its dotted name (config.method = "tests.two_net_method"), as a user's own method would be.

  python -m jsr.main --config=tests/two_net_method.py --workdir=/tmp/two_nets

It also reports one uniform draw from the step's RNG ("rng_draw"), so tests can see the per-step
RNG, and can poison G's parameters at a given step with finite metrics (`nan_params_at_step`), so
tests can see the NaN guard look at the state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


class Generator(nn.Module):
  features: int = 8

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(self.features, (3, 3))(x))
    h = nn.Conv(12, (3, 3), kernel_init=nn.initializers.normal(1e-2))(h)
    n, hh, ww, _ = h.shape
    h = h.reshape(n, hh, ww, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * hh, 2 * ww, 3)
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2) + h


class Discriminator(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.leaky_relu(nn.Conv(8, (3, 3), strides=(2, 2))(x), 0.2)
    return nn.Dense(1)(jnp.mean(h, axis=(1, 2)))[:, 0]


@struct.dataclass
class State:
  step: jax.Array
  g_params: Any
  d_params: Any
  g_opt: Any
  d_opt: Any
  g_ema: Any


def _schedules(config):
  g = optax.cosine_decay_schedule(config.optim_g.lr, max(config.total_steps, 1))
  d = optax.constant_schedule(config.optim_d.lr)
  return g, d


def _txs(config):
  g, d = _schedules(config)
  return optax.adam(g), optax.adam(d)


def _downscale(hr):
  n, h, w, c = hr.shape
  return hr.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def init(config, rng, batch) -> State:
  patch = batch["image"].shape[1]
  g_rng, d_rng = jax.random.split(rng)
  lr = jnp.zeros((1, patch // 2, patch // 2, 3))
  g = Generator(config.model.g_features).init(g_rng, lr)["params"]
  d = Discriminator().init(d_rng, jnp.zeros((1, patch, patch, 3)))["params"]
  tx_g, tx_d = _txs(config)
  return State(step=jnp.zeros((), jnp.int32), g_params=g, d_params=d, g_opt=tx_g.init(g),
               d_opt=tx_d.init(d), g_ema=jax.tree.map(jnp.copy, g))


def load_frozen(config):
  # Stands in for pretrained VGG weights: fixed, never trained, never checkpointed.
  w = np.random.default_rng(config.frozen_seed).normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32)
  return {"w": w}


def _features(frozen, x):
  return jax.lax.conv_general_dilated(x, frozen["w"], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def train_step(state: State, batch, rng, config, frozen):
  hr = batch["image"].astype(jnp.float32) / 255.0
  lr = _downscale(hr)
  g_net, d_net = Generator(config.model.g_features), Discriminator()
  tx_g, tx_d = _txs(config)
  sched_g, sched_d = _schedules(config)
  fake = g_net.apply({"params": state.g_params}, lr)

  def d_loss_fn(d):
    real_logit = d_net.apply({"params": d}, hr)
    fake_logit = d_net.apply({"params": d}, jax.lax.stop_gradient(fake))
    return jnp.mean(jax.nn.softplus(-real_logit) + jax.nn.softplus(fake_logit))

  d_loss, d_grads = jax.value_and_grad(d_loss_fn)(state.d_params)
  d_updates, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(g):
    sr = g_net.apply({"params": g}, lr)
    pixel = jnp.mean(jnp.abs(sr - hr))
    feature = jnp.mean(jnp.abs(_features(frozen, sr) - _features(frozen, hr)))
    adv = jnp.mean(jax.nn.softplus(-d_net.apply({"params": d_params}, sr)))
    return pixel + config.feature_weight * feature + config.adv_weight * adv, (pixel, adv)

  (g_loss, (pixel, adv)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
  g_updates, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  poison = (state.step + 1) == config.nan_params_at_step
  g_params = jax.tree.map(lambda p: jnp.where(poison, jnp.nan, p), g_params)
  d = config.ema_decay
  g_ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.g_ema, g_params)
  new_state = State(step=state.step + 1, g_params=g_params, d_params=d_params, g_opt=g_opt,
                    d_opt=d_opt, g_ema=g_ema)
  metrics = {"loss": g_loss, "d_loss": d_loss, "l1": pixel, "adv": adv,
             "lr_g": sched_g(state.step), "lr_d": sched_d(state.step),
             "rng_draw": jax.random.uniform(rng)}
  return new_state, metrics


def inference_fields(config):
  del config
  return {"params": "g_ema"}


def generator_fields(config):
  del config
  return {"g_params": "params", "g_ema": "params"}


def predict(variables, lr, config):
  return Generator(config.model.g_features).apply(variables, lr.astype(jnp.float32))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.method = "tests.two_net_method"
  c.engine = "train"
  c.scale = 2
  c.seed = 0
  c.distributed = False
  c.init_from = ""
  c.allow_config_change = False
  c.model = ml_collections.ConfigDict(dict(g_features=8))
  c.optim_g = ml_collections.ConfigDict(dict(lr=1e-3))
  c.optim_d = ml_collections.ConfigDict(dict(lr=5e-4))
  c.feature_weight = 0.1
  c.adv_weight = 1e-2
  c.ema_decay = 0.5
  c.frozen_seed = 7
  c.nan_params_at_step = 0
  c.data = ml_collections.ConfigDict(dict(
      train="samples:train", tfds_data_dir="", patch_size=16, batch_size=4, augment=True,
      backend="numpy"))
  c.eval = ml_collections.ConfigDict(dict(sets="", metrics="psnr,ssim"))
  c.total_steps = 4
  c.log_every_steps = 1
  c.eval_every_steps = 4
  c.checkpoint_every_steps = 2
  c.keep_checkpoints = 5
  return c
