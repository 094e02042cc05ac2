"""Optimizers and learning-rate schedules from a config block.

The block (`config.optim` in the method configs) holds:
  name: "adam" | "adamw" | "adamax" | "sgd"
  lr: peak learning rate; b1, b2, eps: Adam moments (b1 is the momentum for sgd, 0 = none)
  weight_decay: decoupled for adamw; an L2 term added to the gradient for the others (PyTorch's
    `weight_decay`), 0 = off
  schedule: "constant" | "cosine" (to 0 at total_steps) | "step" (multiply by decay_factor every
    decay_steps, EDSR's halving) | "multistep" (multiply by decay_factor at each step in
    `milestones`, PyTorch's MultiStepLR: ESRGAN's halvings at 50k, 100k, 200k, 300k), each after a
    linear warmup of warmup_steps from 0
  grad_clip_norm: clip the global gradient norm first, 0 = off
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "adamax", "sgd")
SCHEDULES = ("constant", "cosine", "step", "multistep")


def make_schedule(optim_config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (also what the engine logs)."""
  c = optim_config
  if c.schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {c.schedule!r}")
  warmup = int(c.warmup_steps)
  if warmup < 0 or warmup > total_steps:
    raise ValueError(f"optim.warmup_steps must be in [0, total_steps={total_steps}], got {warmup}")
  if c.schedule == "constant":
    main = optax.constant_schedule(c.lr)
  elif c.schedule == "cosine":
    main = optax.cosine_decay_schedule(c.lr, decay_steps=max(total_steps - warmup, 1))
  elif c.schedule == "multistep":
    milestones = sorted(int(m) for m in c.milestones)
    if not milestones or milestones[0] <= 0:
      raise ValueError(f"optim.milestones must be positive steps for the multistep schedule, got "
                       f"{tuple(c.milestones)}")
    # Counted from the end of the warmup, like the other schedules; MultiStepLR's lr at step t
    # is lr * factor ** (number of milestones <= t).
    main = optax.piecewise_constant_schedule(c.lr, {m: c.decay_factor for m in milestones})
  else:
    if c.decay_steps <= 0:
      raise ValueError(f"optim.decay_steps must be > 0 for the step schedule, got {c.decay_steps}")
    main = optax.exponential_decay(c.lr, transition_steps=c.decay_steps,
                                   decay_rate=c.decay_factor, staircase=True)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, c.lr, warmup), main], [warmup])


def make_optimizer(optim_config: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformation:
  """The optax transformation the config describes (clip -> L2 -> optimizer)."""
  c = optim_config
  if c.name not in OPTIMIZERS:
    raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {c.name!r}")
  lr = make_schedule(c, total_steps)
  chain = []
  if c.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(c.grad_clip_norm))
  if c.weight_decay > 0 and c.name != "adamw":
    # Coupled L2 (added to the gradient before the moments), as PyTorch's Adam/SGD do.
    chain.append(optax.add_decayed_weights(c.weight_decay))
  if c.name == "adam":
    chain.append(optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps))
  elif c.name == "adamw":
    chain.append(optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay))
  elif c.name == "adamax":
    chain.append(optax.adamax(lr, b1=c.b1, b2=c.b2, eps=c.eps))
  else:
    chain.append(optax.sgd(lr, momentum=c.b1 or None))
  return optax.chain(*chain)


def default_config() -> ml_collections.ConfigDict:
  """Every key `make_optimizer` reads, with EDSR-like values; configs copy and override it."""
  return ml_collections.ConfigDict(dict(
      name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
      schedule="constant", warmup_steps=0, decay_steps=200_000, decay_factor=0.5, milestones=(),
      grad_clip_norm=0.0))


def ema_decay_at(decay: float, step):
  """The EMA decay used at `step` (0-based, before the update): min(decay, (1 + t) / (10 + t)).

  TensorFlow's ExponentialMovingAverage `num_updates` warm-up: the first updates average fast, so
  the EMA never keeps much of the random initialisation. Without it an EMA of 0.999 still holds
  0.999^1200 = 30% of the initial weights after 1,200 steps, which can wreck a short run's model
  (an RRDBNet at 1,200 steps: 13.9 dB on Set5 with that EMA, 25.8 dB with the raw weights). The
  warm-up reaches `decay` at t = (10 decay - 1) / (1 - decay) (8,991 steps for 0.999), a rounding
  error for the papers' 400k-1M-step runs, which BasicSR starts from pretrained weights anyway.
  """
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))
