"""Image losses: pure functions of (pred, target) returning a scalar (mean over the batch).

`parse_loss("1*L1+0.001*TV")` turns the weighted-sum strings used in configs into one function that
returns (total, {term: value}) so every term is logged separately.

Perceptual and adversarial losses (SRGAN, ESRGAN) follow BasicSR's definitions, so that loss
weights from its option files mean the same here:

  perceptual(feats_sr, feats_hr, layer_weights)   sum_k w_k * crit(phi_k(SR), phi_k(HR)); crit is
      "l1" or "l2" (element means) or "fro" (Frobenius norm of the difference); with
      `style=True` the same on Gram matrices phi phi^T / (C H W) (the style term).
  discriminator_loss / generator_loss(kind, real_logits, fake_logits, relativistic)
      kind "vanilla" (BCE with logits), "lsgan" (least squares to 1 / 0), "hinge"
      (D: relu(1 - real) + relu(1 + fake); G: -fake) and "wgan"; `relativistic=True` is ESRGAN's
      relativistic average GAN: each logit is taken relative to the mean logit of the other
      side, D(x) - E[D(y)], and G's term is the mean of its two sides.
      As in BasicSR, a config's GAN weight multiplies only the generator's adversarial term;
      the discriminator's loss is not weighted.
"""

from __future__ import annotations

import re
from typing import Callable

import dm_pix as pix
import jax
import jax.numpy as jnp


def l1(pred, target):
  return jnp.mean(jnp.abs(pred - target))


def l2(pred, target):
  """Mean squared error (the 'L2' of SR papers is the MSE, not the norm)."""
  return jnp.mean((pred - target) ** 2)


def charbonnier(pred, target, eps: float = 1e-3):
  """Charbonnier penalty sqrt(d^2 + eps^2), LapSRN's robust L1 (eps = 1e-3)."""
  return jnp.mean(jnp.sqrt((pred - target) ** 2 + eps**2))


def ssim(pred, target):
  """Mean SSIM over batch and channels (Gaussian 11x11, sigma 1.5; images in [0, 1])."""
  return jnp.mean(pix.ssim(pred, target, max_val=1.0, filter_size=11, filter_sigma=1.5))


def dssim(pred, target):
  """1 - SSIM, differentiable; needs images of at least 11x11 pixels."""
  return 1.0 - ssim(pred, target)


def tv(pred, target=None):
  """Anisotropic total variation: mean |dx| + mean |dy| of NHWC images (target unused)."""
  del target
  dy = jnp.abs(pred[:, 1:, :, :] - pred[:, :-1, :, :])
  dx = jnp.abs(pred[:, :, 1:, :] - pred[:, :, :-1, :])
  return jnp.mean(dy) + jnp.mean(dx)


LOSSES: dict[str, Callable] = {
    "l1": l1, "l2": l2, "mse": l2, "charbonnier": charbonnier, "dssim": dssim, "tv": tv,
}

_TERM = re.compile(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_loss(spec: str) -> Callable:
  """'1*L1+0.001*TV' -> fn(pred, target) -> (total, {"l1": ..., "tv": ...}).

  Terms are separated by '+'; a weight is optional (default 1). Names are case-insensitive and
  must be one of LOSSES; anything else is an error naming the term.
  """
  terms = []
  # Split on '+' except the exponent sign of a weight like 1e+3 (a digit or '.' then e/E before it).
  for part in re.split(r"(?<![0-9.][eE])\+", spec):
    m = _TERM.match(part)
    if not m or m.group(2).lower() not in LOSSES:
      raise ValueError(f"loss spec {spec!r}: cannot parse term {part!r}; terms look like "
                       f"'0.5*L1' with names from {sorted(LOSSES)}")
    terms.append((float(m.group(1) or 1.0), m.group(2).lower()))
  if not terms:
    raise ValueError(f"loss spec {spec!r} has no terms")

  def loss_fn(pred, target):
    values = {name: LOSSES[name](pred, target) for _, name in terms}
    total = sum(w * values[name] for w, name in terms)
    return total, values

  return loss_fn


# ------------------------------------------------------------------------------------------------
# Perceptual (feature) and adversarial losses.
# ------------------------------------------------------------------------------------------------

FEATURE_CRITERIA = ("l1", "l2", "fro")
GAN_KINDS = ("vanilla", "lsgan", "hinge", "wgan")


def _criterion(name: str, a, b):
  if name == "l1":
    return jnp.mean(jnp.abs(a - b))
  if name == "l2":
    return jnp.mean((a - b) ** 2)
  if name == "fro":
    return jnp.sqrt(jnp.sum((a - b) ** 2))
  raise ValueError(f"feature criterion must be one of {FEATURE_CRITERIA}, got {name!r}")


def gram(features):
  """(N, H, W, C) -> (N, C, C): F^T F / (C H W), the style representation (Gatys et al.)."""
  n, h, w, c = features.shape
  f = features.reshape(n, h * w, c).astype(jnp.float32)
  return jnp.einsum("npc,npd->ncd", f, f) / (c * h * w)


def perceptual(feats_sr: dict, feats_hr: dict, layer_weights: dict, criterion: str = "l1",
               style: bool = False):
  """sum_k layer_weights[k] * criterion(feats_sr[k], feats_hr[k]) (of Gram matrices if `style`).

  The HR features are data: no gradient flows into them.
  """
  total = 0.0
  for name, weight in layer_weights.items():
    a, b = feats_sr[name], jax.lax.stop_gradient(feats_hr[name])
    if style:
      a, b = gram(a), gram(b)
    total += weight * _criterion(criterion, a.astype(jnp.float32), b.astype(jnp.float32))
  return total


def _gan_term(kind: str, logits, target_is_real: bool, for_discriminator: bool):
  """BasicSR's GANLoss(kind)(logits, target_is_real, is_disc), unweighted."""
  logits = logits.astype(jnp.float32)
  if kind == "vanilla":  # BCE with logits against 1 (real) or 0 (fake).
    return jnp.mean(jax.nn.softplus(-logits) if target_is_real else jax.nn.softplus(logits))
  if kind == "lsgan":
    return jnp.mean((logits - (1.0 if target_is_real else 0.0)) ** 2)
  if kind == "wgan":
    return -jnp.mean(logits) if target_is_real else jnp.mean(logits)
  if kind == "hinge":
    if not for_discriminator:  # The generator's hinge term is -E[D(fake)].
      return -jnp.mean(logits)
    return jnp.mean(jax.nn.relu(1.0 - logits) if target_is_real else jax.nn.relu(1.0 + logits))
  raise ValueError(f"GAN loss kind must be one of {GAN_KINDS}, got {kind!r}")


def discriminator_loss(kind: str, real_logits, fake_logits, relativistic: bool = False):
  """D's loss on a batch of real and generated images (fake_logits of stop-gradient images).

  Standard: term(real, real) + term(fake, fake). Relativistic average (ESRGAN):
  0.5 * term(D(real) - E[D(fake)], real) + 0.5 * term(D(fake) - E[D(real)], fake), the mean of the
  other side treated as a constant, as BasicSR's ESRGANModel detaches it.
  """
  if not relativistic:
    return (_gan_term(kind, real_logits, True, True) + _gan_term(kind, fake_logits, False, True))
  sg = jax.lax.stop_gradient
  real_rel = real_logits - jnp.mean(sg(fake_logits))
  fake_rel = fake_logits - jnp.mean(sg(real_logits))
  return 0.5 * (_gan_term(kind, real_rel, True, True) + _gan_term(kind, fake_rel, False, True))


def generator_loss(kind: str, real_logits, fake_logits, relativistic: bool = False):
  """G's adversarial term, unweighted (the config's GAN weight multiplies it).

  Standard: term(D(G(x)), real). Relativistic average (ESRGAN): the mean of
  term(D(real) - E[D(fake)], fake) and term(D(fake) - E[D(real)], real), with D(real) a constant.
  """
  if not relativistic:
    return _gan_term(kind, fake_logits, True, False)
  real = jax.lax.stop_gradient(real_logits)
  real_rel = real - jnp.mean(fake_logits)
  fake_rel = fake_logits - jnp.mean(real)
  return 0.5 * (_gan_term(kind, real_rel, False, False) + _gan_term(kind, fake_rel, True, False))
