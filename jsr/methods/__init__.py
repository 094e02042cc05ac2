"""Methods: how a state is made, trained one step, and used to upscale.

`jsr.train` (the engine) runs any module `jsr.methods.<config.method>`; it reads nothing of the
state but `state.step` and nothing of the method but the functions below. A method provides:

    init(config, rng, batch) -> state
        A pytree (a flax `struct.dataclass` / `TrainState`) with a scalar `step`. It may hold any
        number of networks, optimizer states and EMA copies (a GAN: G, D, two Adam states, G's EMA).
        `batch` is the first training batch, so init sees the shapes the steps will see.
    train_step(state, batch, rng, config, frozen) -> (state, {name: scalar})
        Pure, jitted by the engine. The metrics must include "loss"; learning rates are metrics
        the method reports (e.g. "lr_g", "lr_d"), not something the engine computes.
    predict(variables, lr, config) -> sr
        Pure; (N, h, w, 3) in [0, 1] -> (N, h*s, w*s, 3) float32. `variables` is a dict of Flax
        collections ({"params": ..., "batch_stats": ...}) taken from the state as
        `inference_fields` says.

and, where the defaults below do not fit:

    inference_fields(config) -> {collection: state field}
        The part of the state `predict` reads, e.g. {"params": "g_ema"} for a GAN, so that
        `jsr.predict`, `jsr.evaluate --workdir` and `jsr.interpolate` restore only that part of a
        checkpoint (not a discriminator and two Adam states). Fields that are None in the state
        are left out. Default: {"params": "params"}.
    generator_fields(config) -> {state field: collection}
        The fields that hold the network `predict` uses, and which collection of another run's
        inference variables each is a copy of: what `config.init_from` fills (warm start) and
        what `jsr.interpolate` mixes. Default: {"params": "params"}.
    load_frozen(config) -> pytree | None      (or load_frozen(config, workdir))
        Frozen pretrained parameters (a VGG feature network), or anything else fixed for the
        whole run that the step reads (a blur kernel estimated from the training set before
        training: selfsup's degradation.kernel=estimate), made once per run. The engine passes
        them to every `train_step` as the `frozen` argument (a jit argument, replicated over the
        devices): they are never part of the state, so never checkpointed, and never constants
        baked into the compiled program. A method that computes them (rather than loading a
        file) takes `workdir` too and keeps its result there, so a resumed run reads it back
        instead of recomputing it. Default: None.

`load(name)` imports a method by name (`jsr.methods.<name>`, or any module given by its dotted
path); `inference_fields`, `generator_fields` and `load_frozen`
here apply the defaults. The zero-shot engine (jsr.zeroshot) asks for one function instead,
`super_resolve(lr, config, seed)`.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

import ml_collections

from jsr import errors

TRAIN_INTERFACE = ("init", "train_step", "predict")


def load(name: str, interface: tuple[str, ...] = TRAIN_INTERFACE) -> types.ModuleType:
  """The module jsr.methods.<name> (or, for a dotted name, that module: a method of your own
  project, `my_project.my_gan`, runs without editing jsr), checked for an engine's interface (the
  training engine's by default; jsr.zeroshot asks for `super_resolve`)."""
  module_name = name if "." in name else f"jsr.methods.{name}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name and not module_name.startswith(f"{e.name}."):
      raise  # The method exists but one of its own imports failed: show that.
    where = f"jsr/methods/{name}.py" if "." not in name else f"module {name}"
    raise errors.UserError(f"config.method={name!r}: no {where}") from e
  missing = [f for f in interface if not hasattr(module, f)]
  if missing:
    raise errors.UserError(f"{module_name} lacks {missing}; this engine's methods provide "
                           f"{', '.join(interface)}")
  return module


def inference_fields(method: types.ModuleType, config: ml_collections.ConfigDict
                     ) -> dict[str, str]:
  """{Flax collection: state field} that the method's `predict` reads."""
  if hasattr(method, "inference_fields"):
    return dict(method.inference_fields(config))
  return {"params": "params"}


def generator_fields(method: types.ModuleType, config: ml_collections.ConfigDict
                     ) -> dict[str, str]:
  """{state field: Flax collection} holding the network that `predict` uses."""
  if hasattr(method, "generator_fields"):
    return dict(method.generator_fields(config))
  return {"params": "params"}


def load_frozen(method: types.ModuleType, config: ml_collections.ConfigDict,
                workdir: str | None = None) -> Any:
  """The method's frozen pretrained parameters (or per-run constants), or None."""
  if not hasattr(method, "load_frozen"):
    return None
  if len(inspect.signature(method.load_frozen).parameters) >= 2:
    return method.load_frozen(config, workdir)
  return method.load_frozen(config)


def inference_variables(method: types.ModuleType, config: ml_collections.ConfigDict,
                        state: Any) -> dict[str, Any]:
  """The dict `predict` takes, read from a (full) training state."""
  out = {}
  for collection, field in inference_fields(method, config).items():
    value = getattr(state, field)
    if value is not None:
      out[collection] = value
  return out
