"""Image losses: pure functions of (pred, target) returning a scalar (mean over the batch).

`parse_loss("1*L1+0.001*TV")` turns the weighted-sum strings used in configs into one function that
returns (total, {term: value}) so every term is logged separately.
"""

from __future__ import annotations

import re
from typing import Callable

import dm_pix as pix
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
