"""The training engine: `train_and_evaluate(config, workdir)` for any method in jsr/methods.

The engine does not know which method it runs: it loads `jsr.methods.<config.method>` and calls
its `init`, `train_step` and `predict` (the interface is in jsr/methods/__init__.py), reading
nothing of the state but `state.step`. Around them it adds what every run needs: one jitted,
donated step over a 1-D device mesh (jsr.mesh), per-step RNG `fold_in(base, step)`, orbax
checkpoints with automatic resume (jsr.checkpoints; the input pipeline is a pure function of the
step, so a resumed run equals a straight one), warm starts from another run (`init_from`), a
refusal to resume with a changed config, clu metric writers (jsr.writers), a NaN/Inf guard on the
metrics and the state, and periodic evaluation with PNG grids (jsr.reporting).

Workdir layout: config.json, checkpoints/<step>/, metrics.jsonl, TensorBoard events,
images/step_<N>/<set>_<image>.png.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import types
from typing import Any, Callable, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jsr import checkpoints
from jsr import data as data_lib
from jsr import evaluate
from jsr import inference
from jsr import mesh as mesh_lib
from jsr import methods
from jsr import reporting
from jsr import workdir as workdir_lib
from jsr import writers

PyTree = Any


class NonFiniteError(FloatingPointError):
  """A training metric or the state became NaN or Inf; the message names the step."""


# ------------------------------------------------------------------------------------------------
# Steps: the method's pure functions, jitted with shardings.
# ------------------------------------------------------------------------------------------------


def _all_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(method: types.ModuleType, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh, base_rng: jax.Array) -> Callable:
  """(state, batch, frozen) -> (state, metrics, state_is_finite), jitted.

  `frozen` (the method's pretrained parts, or None) is an argument, not a closure: it is neither
  baked into the program as constants nor part of the donated state.
  """

  def step_fn(state, batch, frozen):
    # fold_in on the state's own step: resumed runs draw exactly what straight runs draw.
    rng = jax.random.fold_in(base_rng, state.step)
    new_state, metrics = method.train_step(state, batch, rng, config, frozen)
    return new_state, metrics, _all_finite(new_state)

  rep = mesh_lib.replicated(mesh)
  # Donate the state: the old params/opt_state buffers are reused, halving peak memory.
  return jax.jit(step_fn, in_shardings=(rep, mesh_lib.batch_sharding(mesh), rep),
                 out_shardings=(rep, rep, rep), donate_argnums=0)


def make_predict(method: types.ModuleType, config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> Callable:
  """(variables, lr) -> sr, jitted once per run (it compiles once per eval image shape)."""
  rep = mesh_lib.replicated(mesh)
  return jax.jit(lambda variables, lr: method.predict(variables, lr, config),
                 in_shardings=(rep, rep), out_shardings=rep)


def _start_eval_precompile(sr_fns, items, scale: int, metric_names) -> threading.Thread:
  """evaluate.precompile in a daemon thread; a failure there is only logged (the evaluation then
  compiles what is missing itself)."""

  def run():
    try:
      info = evaluate.precompile(sr_fns, items, scale, metric_names)
      logging.info("Evaluation precompiled: %d programs for %d image shapes in %.1f s.",
                   info["programs"], info["shapes"], info["seconds"])
    except Exception as e:  # noqa: BLE001 - an optimisation; the evaluation does without it.
      logging.warning("Evaluation precompile failed (%s: %s); the first evaluation compiles as "
                      "it goes.", type(e).__name__, e)

  thread = threading.Thread(target=run, name="eval-precompile", daemon=True)
  thread.start()
  return thread


def check_finite(pending: list[tuple[int, dict[str, Any], Any]]
                 ) -> list[tuple[int, dict[str, float]]]:
  """Fetch per-step metrics to the host; NonFiniteError at the first step with a NaN/Inf metric
  or state."""
  host = jax.device_get(pending)
  for step, metrics, state_ok in host:
    bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    if bad or not state_ok:
      what = (", ".join(f"{k}={float(np.mean(metrics[k]))}" for k in bad) if bad
              else "the metrics are finite but the state (parameters or optimizer) is not")
      raise NonFiniteError(f"Training diverged at step {step}: {what}. This state was not "
                           "saved; the last good checkpoint is kept. Lower config.optim.lr or "
                           "set config.optim.grad_clip_norm.")
  return [(step, metrics) for step, metrics, _ in host]


def mean_metrics(rows: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
  return {f"train/{k}": float(np.mean([np.mean(m[k]) for _, m in rows])) for k in rows[0][1]}


# ------------------------------------------------------------------------------------------------
# State: resume, else warm start, else fresh.
# ------------------------------------------------------------------------------------------------


def parse_init_from(spec: str) -> tuple[str, int | None]:
  """"WORKDIR" or "WORKDIR:STEP" -> (workdir, step or None)."""
  m = re.fullmatch(r"(.*):(\d+)", spec)
  return (m.group(1), int(m.group(2))) if m else (spec, None)


def batch_norm_crop_warning(source_config: ml_collections.ConfigDict,
                            config: ml_collections.ConfigDict, variables: dict) -> str | None:
  """A warning when a warm start copies BatchNorm statistics learnt on other crops.

  A BN generator trains on batch statistics, which depend on the crop size (the zero-padded
  border, for one, is a larger share of a small crop): SRResNet-MSE trained on 64-px crops loses
  2.1 dB on 128-px crops in train-mode BN against its running statistics (scripts/bn_crop_shift.py,
  docs/perceptual.md), so its fine-tune starts 2 dB down before any update.
  """
  if "batch_stats" not in variables:
    return None
  before = source_config.get("data", {}).get("patch_size")
  now = config.get("data", {}).get("patch_size")
  if before is None or now is None or before == now:
    return None
  return (f"config.init_from={config.init_from!r} was trained on {before}-px crops and this run "
          f"uses {now}-px crops: its model has BatchNorm, whose batch statistics change with the "
          "crop size, so the warm-started network starts from other activations than it was "
          "trained with (SRResNet-MSE 64 -> 128 px: -2.1 dB at step 0). Train the start on the "
          "same crops, or use a variant without BatchNorm.")


def warm_start(state: PyTree, method: types.ModuleType, config: ml_collections.ConfigDict
               ) -> PyTree:
  """`state` with the method's generator fields taken from the run `config.init_from`.

  The other run is read as inference reads it (its predict variables only); each generator field
  must match the collection it copies leaf for leaf, else a CheckpointMismatchError names the
  leaves that differ.
  """
  source, step = parse_init_from(config.init_from)
  source_config, _, variables, step = inference.load_variables(source, step)
  warning = batch_norm_crop_warning(source_config, config, variables)
  if warning:
    logging.warning("%s", warning)
  filled = []
  for field, collection in methods.generator_fields(method, config).items():
    target = getattr(state, field)
    if target is None:
      continue
    if collection not in variables:
      raise checkpoints.CheckpointMismatchError(
          f"config.init_from={config.init_from!r}: that run's predict variables have "
          f"{sorted(variables)}, but state.{field} is a copy of {collection!r}")
    diff = checkpoints.describe_mismatch(checkpoints.flat_shapes(variables[collection]),
                                         checkpoints.flat_shapes(target))
    if diff:
      raise checkpoints.CheckpointMismatchError(
          f"config.init_from={config.init_from!r} (step {step}) does not fit state.{field} "
          f"of this config's model:\n{diff}")
    value = jax.tree.map(lambda v, t: jnp.asarray(v, t.dtype), variables[collection], target)
    state = state.replace(**{field: value})
    filled.append(field)
  logging.info("Warm start: %s from %s (step %d).", ", ".join(filled), source, step)
  return state


def restore_or_init(method: types.ModuleType, config: ml_collections.ConfigDict, workdir: str,
                    manager: ocp.CheckpointManager, rng: jax.Array, mesh: jax.sharding.Mesh
                    ) -> tuple[PyTree, Iterator]:
  """The state (resumed from workdir's latest checkpoint, else warm-started from
  config.init_from, else fresh) and this host's batches that follow it."""
  start_step = manager.latest_step() or 0
  train_set = data_lib.load_train_set(config)
  # Batches are a function of the step: resuming is starting the range at start_step. (A finished
  # run still reads one batch, the last, for init's shapes.)
  train_iter = data_lib.get_train_iterator(
      config, min(start_step, config.total_steps - 1), train_set,
      rows=mesh_lib.host_rows(mesh, config.data.batch_size))
  first_batch, train_iter = _peek(train_iter)  # init sees the shapes the steps will see.
  if start_step:
    abstract = jax.eval_shape(lambda r: method.init(config, r, first_batch), rng)
    hint = (f"Workdir {workdir} holds a checkpoint (step {start_step}) of a different model or "
            "optimizer. Use a new --workdir, or remove the old one if it is no longer needed.")
    state = checkpoints.restore(manager, start_step, abstract, hint,
                                sharding=mesh_lib.replicated(mesh))
    logging.info("Resumed from %s at step %d.", manager.directory, start_step)
    if int(jax.device_get(state.step)) != start_step:
      raise checkpoints.CheckpointMismatchError(
          f"Checkpoint {start_step} in {workdir} holds state.step="
          f"{int(jax.device_get(state.step))}")
    return state, train_iter
  state = method.init(config, rng, first_batch)
  if config.init_from:
    state = warm_start(state, method, config)
  return jax.device_put(state, mesh_lib.replicated(mesh)), train_iter


def _peek(it: Iterator) -> tuple[Any, Iterator]:
  first = next(it)
  return first, itertools.chain([first], it)


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> PyTree:
  """Train `config.method` to config.total_steps, resuming from workdir; returns the state."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  method = methods.load(config.method)
  mesh_lib.check_batch_size(config.data.batch_size)
  mesh = mesh_lib.make_mesh()
  eval_sets = reporting.parse_eval_sets(config.eval.sets)  # Fail on a bad path now, not later.
  eval_metrics = evaluate.parse_metrics(config.eval.metrics)  # And on an unknown metric.
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))

  with contextlib.ExitStack() as stack:
    manager = checkpoints.make_manager(workdir, config)
    stack.callback(manager.close)
    # Let an in-flight save finish even when we stop on an error: it is the last good state.
    stack.callback(manager.wait_until_finished)
    changed = []
    if manager.latest_step():
      # Resume first, always; but a changed config must not continue silently.
      changed = workdir_lib.check_unchanged(config, workdir, allow=config.allow_config_change)
    state, train_iter = restore_or_init(method, config, workdir, manager, init_rng, mesh)
    if hasattr(train_iter, "close"):
      stack.callback(train_iter.close)  # Stops the prefetching threads at once.
    start_step = int(jax.device_get(state.step))
    if start_step >= config.total_steps:
      logging.info("Already trained to step %d >= config.total_steps.", start_step)
      return state
    # After the checks and the restore: a failed resume changes nothing.
    if changed:
      logging.warning("Config changed at step %d (allow_config_change): %s; the old one is kept "
                      "as config.%d.json", start_step, "; ".join(changed), start_step)
    workdir_lib.save_config(config, workdir, keep_old_as_step=start_step if changed else None)
    writer = writers.make_writer(workdir)
    stack.callback(writer.close)
    clu = writers.import_clu()
    if clu is not None:
      clu.parameter_overview.log_parameter_overview(
          methods.inference_variables(method, config, state))
    frozen = jax.device_put(methods.load_frozen(method, config, workdir),
                            mesh_lib.replicated(mesh))
    train_step = make_train_step(method, config, mesh, train_rng)
    predict = make_predict(method, config, mesh)
    rows = mesh_lib.host_rows(mesh, config.data.batch_size)

    report = writers.make_progress(config.total_steps, writer)
    # The evaluation's programs (per image shape: LR synthesis, bicubic, the model, the metrics)
    # compile in threads while the first eval_every_steps train; the first evaluation waits for
    # them instead of compiling one after the other (on a GPU, the host's cores are idle then).
    precompiling = None
    if eval_sets:
      precompiling = _start_eval_precompile(
          [evaluate.interpolation_fn("bicubic", config.scale),
           reporting.make_sr_fn(predict, mesh, methods.inference_variables(method, config, state))],
          [item for items in eval_sets.values() for item in items], config.scale, eval_metrics)
    bicubic: dict[str, Any] | None = None
    pending: list[tuple[int, dict, Any]] = []  # Device metrics not yet checked for NaN.
    to_log: list[tuple[int, dict]] = []        # Checked host metrics since the last log line.
    for step, batch in zip(range(start_step + 1, config.total_steps + 1), train_iter):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        batch = mesh_lib.shard_batch(batch, mesh, config.data.batch_size, rows)
        state, metrics, finite = train_step(state, batch, frozen)
      pending.append((step, metrics, finite))
      report(step)
      is_last = step == config.total_steps
      do_log = step % config.log_every_steps == 0 or is_last
      do_ckpt = step % config.checkpoint_every_steps == 0 or is_last
      do_eval = step % config.eval_every_steps == 0 or is_last
      if do_log or do_ckpt or do_eval:
        # Syncs with the device, so only here: every state we save or evaluate is checked.
        to_log += check_finite(pending)
        pending = []
      if do_log:
        writer.write_scalars(step, mean_metrics(to_log))
        to_log = []
      if do_ckpt:
        checkpoints.save(manager, step, state)
      if do_eval and eval_sets:
        with report.timed("eval"):
          if precompiling is not None:
            precompiling.join()
            precompiling = None
          if bicubic is None:
            bicubic = reporting.run_bicubic_baseline(eval_sets, config.scale, writer, step,
                                                     eval_metrics)
          variables = methods.inference_variables(method, config, state)
          reporting.run_eval(reporting.make_sr_fn(predict, mesh, variables), eval_sets,
                             config.scale, writer, step, workdir, bicubic, eval_metrics)
    writer.flush()
  return state

