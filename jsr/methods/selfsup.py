"""Self-supervised blind SR: train on LR observations only, never on HR.

The network f maps an observed LR image y to HR' = f(y). HR' is degraded with the (assumed) kernel k
and scale s, and must reproduce the observation (the consistency term):

    L = alpha * L2(y, y') + beta * (1 - SSIM(y, y')) + gamma * TV(HR') + delta * L2(f(D(y)), y),
    y' = D(f(y)) = down_s(f(y) * k)

The last term is the classical "pair" term (ZSSR-style): the observation is degraded once more and
the network learns to undo that, i.e. it learns SR one octave lower. Both can be combined; the
comparison is in docs/selfsup.md.

Blind: with `config.degradation.kernel = "estimate"` the kernel k is not given but estimated from
the LR observations themselves before training: KernelGAN (jsr/methods/kernelgan.py, the
config's `kernelgan` block) on `degradation.estimate_images` of the training images, and the
elementwise median of their kernels (renormalised). It is computed once per run, kept in
workdir/kernel_estimate.npz (a resumed run reads it back) and reaches the step as its `frozen`
argument. Why this design and not a kernel learned jointly with the network: docs/selfsup.md.

Method interface (jsr/methods/__init__.py): init / train_step / predict.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from jsr import data as data_lib
from jsr import errors
from jsr import losses
from jsr import optim
from jsr.methods import kernelgan
from jsr.models import common, selfsup_net
from jsr.ops import degrade as degrade_ops

TrainState = train_state.TrainState


def create_model(config: ml_collections.ConfigDict):
  # Workdirs written before skip/tail existed were bicubic + sub-pixel.
  skip, tail = config.model.get("skip", "cubic"), config.model.get("tail", "shuffle")
  if tail == "adjoint" and config.degradation.kernel == "estimate":
    raise errors.UserError("config.degradation.kernel=estimate does not work with "
                           "model.tail=adjoint (that network is built around a known kernel); "
                           "use model.tail=shuffle")
  return selfsup_net.Model(variant=config.model.variant, scale=config.scale,
                           skip=skip, tail=tail,
                           degrade=make_degradation(config) if tail == "adjoint" else None,
                           dtype=jnp.dtype(config.model.dtype))


def make_degradation(config: ml_collections.ConfigDict, frozen=None):
  """jnp function hr -> lr implementing down_s(hr * k) with the configured kernel and sampling;
  for kernel "estimate", the estimated kernel load_frozen made (frozen["kernel"])."""
  deg = config.degradation
  if deg.kernel != "estimate":
    return degrade_ops.degradation_fn(deg, config.scale)
  if frozen is None or "kernel" not in frozen:
    raise errors.UserError("config.degradation.kernel=estimate: the estimated kernel is made by "
                           "load_frozen(config, workdir) before training (jsr.train does this)")
  kernel = frozen["kernel"]
  return lambda x: degrade_ops.degrade(x, config.scale, kernel=kernel, mode=deg.downsample)


# ------------------------------------------------------------------------------------------------
# Kernel estimation (degradation.kernel=estimate), once per run, before training.
# ------------------------------------------------------------------------------------------------

ESTIMATE_FILE = "kernel_estimate.npz"


def combine_kernels(kernels: list[np.ndarray]) -> np.ndarray:
  """One kernel from per-image estimates of the same blur: the elementwise median (robust to an
  image whose estimate failed, e.g. one with little texture), clipped at 0 and renormalised."""
  if len({k.shape for k in kernels}) != 1:
    raise ValueError(f"combine_kernels: estimates of different sizes {[k.shape for k in kernels]}")
  k = np.clip(np.median(np.stack(kernels), axis=0), 0.0, None)
  return (k / k.sum()).astype(np.float32)


def estimate_kernel(images: list[np.ndarray], names: list[str],
                    config: ml_collections.ConfigDict) -> tuple[np.ndarray, dict[str, Any]]:
  """KernelGAN on `degradation.estimate_images` of `images` (uint8 or [0, 1] float), chosen at
  random with config.seed (largest first would bias towards one kind of photo), then combined."""
  n = min(config.degradation.estimate_images, len(images))
  if n < 1:
    raise errors.UserError("config.degradation.estimate_images must be at least 1")
  need = config.kernelgan.crop_size + (20 if config.kernelgan.shave_edges else 0)
  usable = [i for i, im in enumerate(images) if min(im.shape[:2]) >= need]
  if not usable:
    raise errors.UserError(f"config.degradation.kernel=estimate: no training image is at least "
                           f"{need}x{need} pixels (KernelGAN's crops)")
  picked = np.random.default_rng(config.seed).permutation(usable)[:n]
  kernels = []
  for j, i in enumerate(picked):
    img = images[i].astype(np.float32) / (255.0 if images[i].dtype == np.uint8 else 1.0)
    k, log = kernelgan.estimate_kernel(img, config, seed=config.seed + j)
    kernels.append(k)
    logging.info("Kernel estimate %d/%d from %s (%.0f s)", j + 1, n, names[i],
                 log["kernelgan_seconds"])
  return combine_kernels(kernels), {"names": [names[i] for i in picked],
                                    "kernels": np.stack(kernels)}


def load_frozen(config: ml_collections.ConfigDict, workdir: str | None = None):
  """The estimated kernel for degradation.kernel=estimate (None otherwise): read back from
  workdir/kernel_estimate.npz, or estimated from config.data.train and saved there."""
  if config.degradation.kernel != "estimate":
    return None
  path = os.path.join(workdir, ESTIMATE_FILE) if workdir else None
  if path and os.path.exists(path):
    with np.load(path) as f:
      kernel = f["kernel"]
    logging.info("Estimated kernel read from %s", path)
    return {"kernel": jnp.asarray(kernel)}
  images, names = data_lib.load_images(config.data.train, config.data.patch_size,
                                        config.data.tfds_data_dir or None)
  kernel, info = estimate_kernel(images, names, config)
  if path and jax.process_index() == 0:
    np.savez(path, kernel=kernel, per_image=info["kernels"], names=np.array(info["names"]))
    logging.info("Estimated kernel (median of %d KernelGAN estimates) saved to %s",
                 len(info["names"]), path)
  return {"kernel": jnp.asarray(kernel)}


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
  del rng  # The loss has no randomness.
  lr = _to_float(batch["image"])
  degrade_fn = make_degradation(config, frozen)

  def loss_fn(params):
    return loss_terms(params, state.apply_fn, lr, config, degrade_fn)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads),
             "learning_rate": optim.make_schedule(config.optim, config.total_steps)(state.step)}
  return new_state, metrics


def predict(variables, lr, config: ml_collections.ConfigDict):
  return create_model(config).apply(variables, lr.astype(jnp.float32))
