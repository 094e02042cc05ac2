"""The training engine: `train_and_evaluate(config, workdir)` for any method in jsr/methods.

The engine does not know which method it runs. It imports `jsr.methods.<config.method>`, which
provides three functions:

    init(config, rng, batch) -> state          # a pytree with `step` and `params` (TrainState)
    train_step(state, batch, rng, config) -> (state, {name: scalar})   # pure; "loss" required
    predict(state, lr, config) -> sr           # pure; (N, h, w, C) in [0, 1] -> (N, h*s, w*s, C)

and feeds them batches {"image": uint8 (B, P, P, 3)} from jsr.data. Around them it adds what every
run needs: a 1-D device mesh ("data") with the batch sharded and the state replicated, per-step
RNG `fold_in(base, step)`, orbax checkpoints with automatic resume (the input pipeline is a pure
function of the step, so a resumed run equals a straight one), clu metric writers, a NaN/Inf guard,
and periodic evaluation on benchmark folders with PNG grids for a person to look at.

Workdir layout: config.json, checkpoints/<step>/, metrics.jsonl, TensorBoard events,
images/step_<N>/<set>_<image>.png.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import json
import os
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jsr import io as jio



def import_clu() -> types.SimpleNamespace | None:
  """clu's metric_writers, periodic_actions and parameter_overview, or None where they cannot be
  imported (clu's writers import TensorFlow and TensorBoard, absent on the GPU machines).

  Imported on first use, not at module import, so the engine's helpers (checkpoints, meshes,
  method loading) serve jsr.inference without pulling in TensorFlow.
  """
  try:
    from clu import metric_writers, parameter_overview, periodic_actions
  except ImportError:
    return None
  return types.SimpleNamespace(metric_writers=metric_writers, periodic_actions=periodic_actions,
                               parameter_overview=parameter_overview)

PyTree = Any


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or Inf; the message names the step and the metrics."""


class CheckpointMismatchError(ValueError):
  """The workdir's checkpoint does not fit the configured model/optimizer."""


def load_method(name: str, interface: tuple[str, ...] = ("init", "train_step", "predict")
                ) -> types.ModuleType:
  """The module jsr.methods.<name>, checked for an engine's interface (this engine's by default;
  jsr.zeroshot asks for `super_resolve`)."""
  try:
    module = importlib.import_module(f"jsr.methods.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"jsr.methods.{name}":
      raise  # The method exists but one of its own imports failed: show that.
    raise ValueError(f"config.method={name!r}: no module jsr/methods/{name}.py") from e
  missing = [f for f in interface if not hasattr(module, f)]
  if missing:
    raise ValueError(f"jsr.methods.{name} lacks {missing}; this engine's methods provide "
                     f"{', '.join(interface)}")
  return module


# ------------------------------------------------------------------------------------------------
# Devices: one 1-D mesh over all devices; batch sharded along "data", state replicated.
# ------------------------------------------------------------------------------------------------


def make_mesh() -> jax.sharding.Mesh:
  return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def check_batch_size(batch_size: int) -> None:
  n = jax.device_count()
  if batch_size % n:
    raise ValueError(f"config.data.batch_size={batch_size} must be divisible by the number of "
                     f"devices ({n}, over {jax.process_count()} host(s))")


def shard_batch(batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """This host's rows -> global arrays sharded along "data" (multi-host safe)."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

  def put(x):
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)

  return {k: put(v) for k, v in batch.items()}


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


# ------------------------------------------------------------------------------------------------
# Steps: the method's pure functions, jitted with shardings.
# ------------------------------------------------------------------------------------------------


def make_train_step(method: types.ModuleType, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh, base_rng: jax.Array) -> Callable:
  """(state, batch) -> (state, metrics), jitted; the RNG is derived from the step on device."""

  def step_fn(state, batch):
    # fold_in on the state's own step: resumed runs draw exactly what straight runs draw.
    rng = jax.random.fold_in(base_rng, state.step)
    return method.train_step(state, batch, rng, config)

  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  # Donate the state: the old params/opt_state buffers are reused, halving peak memory.
  return jax.jit(step_fn, in_shardings=(replicated(mesh), batch_sharding),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)


def make_predict(method: types.ModuleType, config: ml_collections.ConfigDict,
                 mesh: jax.sharding.Mesh) -> Callable:
  """(state, lr) -> sr, jitted once per run (it compiles once per eval image shape)."""
  return jax.jit(functools.partial(method.predict, config=config),
                 in_shardings=(replicated(mesh), replicated(mesh)),
                 out_shardings=replicated(mesh))


def make_sr_fn(predict: Callable, mesh: jax.sharding.Mesh, state: PyTree) -> Callable:
  """lr (1, h, w, C) -> sr (1, h*s, w*s, C) with `state`; gray images go through the RGB model
  as three equal channels and come back as their mean."""

  def sr_fn(lr):
    gray = lr.shape[-1] == 1
    lr = jax.device_put(jnp.repeat(lr, 3, axis=-1) if gray else lr, replicated(mesh))
    sr = predict(state, lr)
    return jnp.mean(sr, axis=-1, keepdims=True) if gray else sr

  return sr_fn


# ------------------------------------------------------------------------------------------------
# Checkpoints: one orbax CheckpointManager; resume first, always.
# ------------------------------------------------------------------------------------------------


def make_checkpoint_manager(workdir: str, config: ml_collections.ConfigDict
                            ) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_handlers=ocp.StandardCheckpointHandler())


def _flat_shapes(tree: PyTree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p, simple=True, separator="/"): tuple(np.shape(x))
          for p, x in leaves}


def _describe_mismatch(saved: dict[str, tuple], model: dict[str, tuple], limit: int = 8) -> str:
  """Differing shapes first (the usual cause: another variant), then missing entries."""
  lines = [f"  {k}: checkpoint {saved[k]} vs model {model[k]}"
           for k in sorted(set(saved) & set(model)) if saved[k] != model[k]]
  lines += [f"  {k}: in the checkpoint {saved[k]}, not in the model"
            for k in sorted(set(saved) - set(model))]
  lines += [f"  {k}: in the model {model[k]}, not in the checkpoint"
            for k in sorted(set(model) - set(saved))]
  more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
  return "\n".join(lines[:limit]) + more


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, state: PyTree,
                       workdir: str, hint: str | None = None) -> PyTree:
  """`state` with the arrays of checkpoint `step`; CheckpointMismatchError if they do not fit.

  `hint` opens the error message; the default speaks to a training run resuming in `workdir`.
  """
  hint = hint or (f"Workdir {workdir} holds a checkpoint (step {step}) of a different model or "
                  "optimizer. Use a new --workdir, or remove the old one if it is no longer needed.")
  tree = manager.item_metadata(step).tree
  if isinstance(tree, Mapping) and "params" in tree:
    # Params are nested dicts on both sides, so their paths compare directly.
    diff = _describe_mismatch(_flat_shapes(tree["params"]), _flat_shapes(state.params))
    if diff:
      raise CheckpointMismatchError(f"{hint}\nParameters that differ:\n{diff}")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except ValueError as e:  # Optimizer state or other fields of a different shape.
    # Drop orbax's advice to restore partially: that would silently mix two models.
    detail = "\n".join(l for l in str(e).splitlines() if "partial_restore" not in l)
    raise CheckpointMismatchError(f"{hint}\n{detail}") from e


# ------------------------------------------------------------------------------------------------
# Metrics: clu writers, plus metrics.jsonl so scripts can read results without TensorFlow.
# ------------------------------------------------------------------------------------------------


class JsonlWriter:
  """Appends {"step": n, name: value, ...} lines to a file; a clu MetricWriter for scalars (the
  other kinds are ignored)."""

  def __init__(self, path: str, also_log: bool = False):
    self._path = path
    self._also_log = also_log  # Stands in for clu's console writer when clu is unavailable.

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(self._path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._also_log:
      logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in row.items()
                                              if k != "step"))

  def __getattr__(self, name: str):
    if name.startswith("write_") or name in ("flush", "close"):
      return lambda *args, **kwargs: None
    raise AttributeError(name)


class _Progress:
  """clu's ReportProgress, reduced to steps/s in the log (used when clu is unavailable)."""

  def __init__(self, num_train_steps: int, every_secs: float = 60.0):
    self._total, self._every = num_train_steps, every_secs
    self._last_t, self._last_step = None, None

  def __call__(self, step: int) -> None:
    now = time.time()
    if self._last_t is None:
      self._last_t, self._last_step = now, step
    elif now - self._last_t >= self._every or step == self._total:
      rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
      logging.info("Step %d/%d, %.2f steps/s", step, self._total, rate)
      self._last_t, self._last_step = now, step

  def timed(self, name: str):
    del name
    return contextlib.nullcontext()


def make_writer(workdir: str):
  """clu's default writer (TensorBoard + console), plus workdir/metrics.jsonl on host 0."""
  jsonl = os.path.join(workdir, "metrics.jsonl")
  clu = import_clu()
  if clu is None:
    logging.warning("clu.metric_writers unavailable (needs TensorFlow and TensorBoard): "
                    "metrics go to the log and %s only.", jsonl)
    return JsonlWriter(jsonl if jax.process_index() == 0 else os.devnull, also_log=True)
  if jax.process_index() > 0:
    return clu.metric_writers.create_default_writer(workdir, just_logging=True)
  return clu.metric_writers.MultiWriter([clu.metric_writers.create_default_writer(workdir),
                                     JsonlWriter(jsonl)])


def make_progress(num_train_steps: int, writer) -> Any:
  clu = import_clu()
  if clu is None:
    return _Progress(num_train_steps)
  return clu.periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer)


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """The rows of workdir/metrics.jsonl (tests and scripts)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def check_finite(pending: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, float]]]:
  """Fetch per-step metrics to the host; NonFiniteError at the first step with a NaN/Inf."""
  host = jax.device_get(pending)
  for step, metrics in host:
    bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    if bad:
      values = ", ".join(f"{k}={float(np.mean(metrics[k]))}" for k in bad)
      raise NonFiniteError(f"Training diverged at step {step}: {values}. This state was not "
                           "saved; the last good checkpoint is kept. Lower config.optim.lr or "
                           "set config.optim.grad_clip_norm.")
  return host


def mean_metrics(rows: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
  return {f"train/{k}": float(np.mean([np.mean(m[k]) for _, m in rows])) for k in rows[0][1]}


# ------------------------------------------------------------------------------------------------
# Evaluation: benchmark folders with the papers' protocol (jsr.evaluate), PNG grids.
# ------------------------------------------------------------------------------------------------


def parse_eval_sets(spec: str) -> dict[str, list[str]]:
  """"set5=/data/Set5,set14=/data/Set14" or "samples:eval" -> {name: image paths}."""
  sets = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, sep, path = item.partition("=")
    if not sep:
      path = item
      name = "samples" if item.startswith("samples") else Path(item).name.lower()
    try:
      sets[name] = jio.list_images(path)
    except FileNotFoundError as e:
      raise ValueError(f"config.eval.sets {spec!r}: {e}") from e
  return sets


def _center_crop_box(h: int, w: int, scale: int, size: int = 192) -> tuple[int, int, int]:
  c = min(h, w, size)
  c -= c % scale
  return ((h - c) // 2) // scale * scale, ((w - c) // 2) // scale * scale, c


def save_grid(path: str, lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray,
              scale: int) -> None:
  """LR (nearest) | bicubic | output | HR, the same centre crop of each, side by side."""
  y, x, c = _center_crop_box(hr.shape[0], hr.shape[1], scale)
  crop = lambda a: np.clip(a[y:y + c, x:x + c], 0.0, 1.0)
  lr_c = lr[y // scale:(y + c) // scale, x // scale:(x + c) // scale]
  nearest = np.repeat(np.repeat(lr_c, scale, axis=0), scale, axis=1)
  gap = np.ones((c, 4, hr.shape[-1]), np.float32)
  panels = [np.clip(nearest, 0.0, 1.0), gap, crop(bicubic), gap, crop(sr), gap, crop(hr)]
  jio.save_image(path, np.concatenate(panels, axis=1))


def evaluate_sets(sr_fn: Callable, sets: dict[str, list[str]], scale: int
                  ) -> tuple[dict[str, float], dict[str, list]]:
  """{"eval/<set>_x<s>/psnr_y": ...} and the per-set (lr, sr, hr) images."""
  from jsr import evaluate  # The lead's protocol implementation, shared with the CLI.
  scalars, outputs = {}, {}
  for name, paths in sets.items():
    r = evaluate.evaluate_images(sr_fn, paths, scale, log=None, keep_outputs=True)
    for k, v in r["mean"].items():
      scalars[f"eval/{name}_x{scale}/{k}"] = v
    outputs[name] = [(row["image"], out) for row, out in zip(r["per_image"], r["outputs"])]
  return scalars, outputs


def run_bicubic_baseline(sets: dict[str, list[str]], scale: int, writer,
                         step: int) -> dict[str, Any]:
  """Bicubic scores (logged once per run start) and images (for the grids)."""
  from jsr import evaluate
  scalars, outputs = evaluate_sets(evaluate.interpolation_fn("bicubic", scale), sets, scale)
  writer.write_scalars(step, {k.replace("/psnr_y", "/bicubic_psnr_y")
                              .replace("/ssim_y", "/bicubic_ssim_y"): v
                              for k, v in scalars.items()})
  return outputs


def run_eval(sr_fn: Callable, sets: dict[str, list[str]], scale: int, writer, step: int,
             workdir: str, bicubic: dict[str, Any]) -> dict[str, float]:
  """Scores of the current model (logged) and a grid per image under workdir/images/step_N."""
  scalars, outputs = evaluate_sets(sr_fn, sets, scale)
  writer.write_scalars(step, scalars)
  if jax.process_index() == 0:
    for name, items in outputs.items():
      for (image_name, (lr, sr, hr)), (_, (_, bic, _)) in zip(items, bicubic[name]):
        path = os.path.join(workdir, "images", f"step_{step}",
                            f"{name}_{Path(image_name).stem}.png")
        save_grid(path, lr, bic, sr, hr, scale)
  return scalars


# ------------------------------------------------------------------------------------------------
# The loop.
# ------------------------------------------------------------------------------------------------


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def _peek(it: Iterator) -> tuple[Any, Iterator]:
  first = next(it)
  return first, itertools.chain([first], it)


def restore_or_init(method: types.ModuleType, config: ml_collections.ConfigDict, workdir: str,
                    manager: ocp.CheckpointManager, rng: jax.Array) -> tuple[PyTree, Iterator]:
  """The state (restored from the latest checkpoint, else fresh) and the batches that follow it."""
  from jsr import data as data_lib  # Lazily: decoding needs PIL, tfds sources need TensorFlow.
  start_step = manager.latest_step() or 0
  images, _ = data_lib.load_images(config.data.train, config.data.patch_size,
                                   config.data.tfds_data_dir)
  # Batches are a function of the step: resuming is starting the range at start_step. (A finished
  # run still reads one batch, the last, for init's shapes.)
  train_iter = data_lib.get_train_iterator(
      config, min(start_step, config.total_steps - 1), images)
  first_batch, train_iter = _peek(train_iter)  # init sees the shapes the steps will see.
  state = method.init(config, rng, first_batch)
  if start_step:
    state = restore_checkpoint(manager, start_step, state, workdir)
    logging.info("Resumed from %s at step %d.", manager.directory, start_step)
    if int(jax.device_get(state.step)) != start_step:
      raise CheckpointMismatchError(f"Checkpoint {start_step} in {workdir} holds state.step="
                                    f"{int(jax.device_get(state.step))}")
  return state, train_iter


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> PyTree:
  """Train `config.method` to config.total_steps, resuming from workdir; returns the state."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  method = load_method(config.method)
  check_batch_size(config.data.batch_size)
  mesh = make_mesh()
  eval_sets = parse_eval_sets(config.eval.sets)  # Fail on a bad path now, not hours later.
  lr_schedule = None
  if "optim" in config:  # Methods with one optimizer use jsr.optim; log its learning rate.
    from jsr import optim
    lr_schedule = optim.make_schedule(config.optim, config.total_steps)

  manager = make_checkpoint_manager(workdir, config)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  try:
    state, train_iter = restore_or_init(method, config, workdir, manager, init_rng)
  except BaseException:
    manager.close()
    raise
  state = jax.device_put(state, replicated(mesh))
  start_step = int(jax.device_get(state.step))
  if start_step >= config.total_steps:
    logging.info("Already trained to step %d >= config.total_steps.", start_step)
    manager.close()
    return state
  save_config(config, workdir)  # After the checkpoint check: a failed resume changes nothing.
  writer = make_writer(workdir)
  clu = import_clu()
  if clu is not None:
    clu.parameter_overview.log_parameter_overview(state.params)
  train_step = make_train_step(method, config, mesh, train_rng)
  predict = make_predict(method, config, mesh)

  # --- Loop. ---
  report = make_progress(config.total_steps, writer)
  bicubic: dict[str, Any] | None = None
  pending: list[tuple[int, dict]] = []   # Device metrics not yet checked for NaN.
  to_log: list[tuple[int, dict]] = []    # Checked host metrics since the last log line.
  try:
    for step, batch in zip(range(start_step + 1, config.total_steps + 1), train_iter):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, metrics = train_step(state, shard_batch(batch, mesh))
      pending.append((step, metrics))
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
        scalars = mean_metrics(to_log)
        if lr_schedule is not None:
          scalars["train/learning_rate"] = float(lr_schedule(step - 1))
        writer.write_scalars(step, scalars)
        to_log = []
      if do_ckpt:
        manager.save(step, args=ocp.args.StandardSave(state))
      if do_eval and eval_sets:
        with report.timed("eval"):
          if bicubic is None:
            bicubic = run_bicubic_baseline(eval_sets, config.scale, writer, step)
          run_eval(make_sr_fn(predict, mesh, state), eval_sets, config.scale, writer,
                   step, workdir, bicubic)
  finally:
    # Let an in-flight save finish even when we stop on an error: it is the last good state.
    manager.wait_until_finished()
    manager.close()
    writer.flush()
  return state
