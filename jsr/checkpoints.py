"""Checkpoints: one orbax CheckpointManager per workdir (workdir/checkpoints/<step>/), whole-state
restores for resuming, and restores of named state fields only (inference, warm starts).

Every restore compares the checkpoint's tree with the state the code builds, leaf by leaf, and
stops with the differing leaves named (another model variant, an edited config) instead of mixing
two models.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jsr import errors

PyTree = Any


class CheckpointMismatchError(errors.UserError):
  """A checkpoint does not fit the state the configured method builds."""


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  """The training run's manager (creates workdir/checkpoints)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_handlers=ocp.PyTreeCheckpointHandler())


def open_readonly(workdir: str, step: int | None = None) -> tuple[ocp.CheckpointManager, int]:
  """(read-only manager, step) for a run's checkpoint `step` (default: its latest).

  FileNotFoundError naming the workdir when there is no such checkpoint.
  """
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"workdir {workdir} holds no checkpoint (no checkpoints/ folder): "
                            "train it first, or point at a run that has saved one")
  # Read-only and create=False: loading never creates or cleans up anything in that workdir.
  # (Orbax logs two warnings saying so; they would only confuse a CLI user.)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(create=False, read_only=True),
        item_handlers=ocp.PyTreeCheckpointHandler())
  finally:
    logging.set_verbosity(verbosity)
  steps = manager.all_steps()
  if not steps:
    manager.close()
    raise FileNotFoundError(f"workdir {workdir} holds no checkpoint (checkpoints/ is empty): "
                            "train it first, or point at a run that has saved one")
  if step is None:
    step = max(steps)
  elif step not in steps:
    manager.close()
    raise FileNotFoundError(f"workdir {workdir} has no checkpoint of step {step} "
                            f"(it has {sorted(steps)})")
  return manager, step


def _key(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def flat_shapes(tree: PyTree) -> dict[str, tuple]:
  """{"params/conv/kernel": shape} for arrays, abstract arrays and orbax's array metadata alike
  (jax's dict keys, attribute names and sequence indices all become path components, which is how
  orbax names a saved dataclass's fields)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key(k) for k in path): tuple(x.shape if hasattr(x, "shape") else np.shape(x))
          for path, x in leaves}


def describe_mismatch(saved: Mapping[str, tuple], model: Mapping[str, tuple],
                      limit: int = 8) -> str:
  """Differing shapes first (the usual cause: another variant), then missing entries."""
  lines = [f"  {k}: checkpoint {saved[k]} vs model {model[k]}"
           for k in sorted(set(saved) & set(model)) if saved[k] != model[k]]
  lines += [f"  {k}: in the checkpoint {saved[k]}, not in the model"
            for k in sorted(set(saved) - set(model))]
  lines += [f"  {k}: in the model {model[k]}, not in the checkpoint"
            for k in sorted(set(model) - set(saved))]
  more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
  return "\n".join(lines[:limit]) + more


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> dict:
  meta = manager.item_metadata(step)
  return meta.tree if hasattr(meta, "tree") else meta


def _restore_args(item: PyTree, sharding: jax.sharding.Sharding | None) -> PyTree:
  if sharding is None:
    return jax.tree.map(lambda x: ocp.RestoreArgs(restore_type=np.ndarray, dtype=x.dtype), item)
  return jax.tree.map(lambda x: ocp.ArrayRestoreArgs(dtype=x.dtype, sharding=sharding), item)


def save(manager: ocp.CheckpointManager, step: int, state: PyTree) -> None:
  manager.save(step, args=ocp.args.PyTreeSave(state))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: PyTree, hint: str,
            sharding: jax.sharding.Sharding | None = None) -> PyTree:
  """The whole state, shaped like `abstract_state` (jax.eval_shape of the method's init, or a
  concrete state), filled from checkpoint `step`; arrays put with `sharding` (None: numpy).
  CheckpointMismatchError, opening with `hint`, if the trees differ."""
  diff = describe_mismatch(flat_shapes(_saved_tree(manager, step)), flat_shapes(abstract_state))
  if diff:
    raise CheckpointMismatchError(f"{hint}\nState entries that differ:\n{diff}")
  item = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
  try:
    return manager.restore(step, args=ocp.args.PyTreeRestore(
        item, restore_args=_restore_args(item, sharding)))
  except ValueError as e:
    # Drop orbax's advice to restore partially: that would silently mix two models.
    detail = "\n".join(l for l in str(e).splitlines() if "partial_restore" not in l)
    raise CheckpointMismatchError(f"{hint}\n{detail}") from e


def restore_fields(manager: ocp.CheckpointManager, step: int, abstract_state: PyTree,
                   fields: Iterable[str], hint: str,
                   sharding: jax.sharding.Sharding | None = None) -> dict[str, PyTree]:
  """{field: subtree} for the named top-level fields of the state, read from checkpoint `step`
  without reading the rest (optimizer states, other networks).

  `abstract_state` (jax.eval_shape of the method's init) gives the expected shapes: a field whose
  leaves differ from the checkpoint's raises CheckpointMismatchError naming them. Arrays are put
  with `sharding` (None: numpy arrays on the host). Fields that are None in `abstract_state` are
  left out.
  """
  wanted = {f: getattr(abstract_state, f) for f in fields
            if getattr(abstract_state, f) is not None}
  diff = describe_mismatch(
      {k: v for k, v in flat_shapes(_saved_tree(manager, step)).items()
       if k.split("/")[0] in wanted},
      flat_shapes(wanted))
  if diff:
    raise CheckpointMismatchError(f"{hint}\nEntries that differ:\n{diff}")
  item = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), wanted)
  return manager.restore(step, args=ocp.args.PyTreeRestore(
      item, restore_args=_restore_args(item, sharding), partial_restore=True))
