"""Metric writers: clu's (TensorBoard + console) plus workdir/metrics.jsonl, which scripts and tests
read without TensorFlow; a logging-only fallback where clu's writers cannot import (they need
TensorFlow and TensorBoard, absent on the GPU machines and without the `tf` extra).

Only host 0 writes files; the other hosts log to the console.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import types
from typing import Any, Mapping

from absl import logging
import jax


def import_clu() -> types.SimpleNamespace | None:
  """clu's metric_writers, periodic_actions and parameter_overview, or None where they cannot be
  imported (clu's writers import TensorFlow and TensorBoard, absent on the GPU machines).

  Imported on first use, not at module import: importing jsr must not pull in TensorFlow.
  """
  try:
    import tensorflow as tf  # clu's writers import it; it must not take GPU memory JAX needs.
    tf.config.set_visible_devices([], "GPU")
  except ImportError:
    return None
  try:
    from clu import metric_writers, parameter_overview, periodic_actions
  except ImportError:
    return None
  return types.SimpleNamespace(metric_writers=metric_writers, periodic_actions=periodic_actions,
                               parameter_overview=parameter_overview)


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


def make_writer(workdir: str, console: bool = True):
  """clu's default writer (TensorBoard + console), plus workdir/metrics.jsonl on host 0.
  `console=False`: TensorBoard and metrics.jsonl only (curves too dense to log line by line)."""
  jsonl = os.path.join(workdir, "metrics.jsonl")
  clu = import_clu()
  if clu is None:
    if console:
      logging.warning("clu.metric_writers unavailable (needs TensorFlow and TensorBoard): "
                      "metrics go to the log and %s only.", jsonl)
    return JsonlWriter(jsonl if jax.process_index() == 0 else os.devnull, also_log=console)
  if jax.process_index() > 0:
    return clu.metric_writers.create_default_writer(workdir, just_logging=True)
  mw = clu.metric_writers
  tensorboard = (mw.create_default_writer(workdir) if console
                 else mw.AsyncWriter(mw.SummaryWriter(workdir)))
  return mw.MultiWriter([tensorboard, JsonlWriter(jsonl)])


def make_progress(num_train_steps: int, writer) -> Any:
  clu = import_clu()
  if clu is None:
    return _Progress(num_train_steps)
  return clu.periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer)


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """The rows of workdir/metrics.jsonl (tests and scripts)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
