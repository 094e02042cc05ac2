"""Per-image progress of a zero-shot method: what a method reports while it trains on one image.

A zero-shot method trains for minutes per image (jsr/zeroshot.py). Its `super_resolve(lr, config,
seed, progress=NULL)` receives a `Progress` and calls

    progress.start(total_iterations)          # once, the most iterations it may run
    progress.update(iteration, **scalars)     # e.g. learning_rate=1e-3, rec_mse=2e-4, loss=0.01

whenever it has new numbers (a method reports at its own pace, e.g. every reconstruction test);
`update` must be cheap to call and may receive Python floats only (the method converts device
values it already fetched; it never forces a device sync just to report). The engine passes an
implementation that logs iteration, learning rate, error, images done / left and an ETA, and writes
the per-image curves to TensorBoard; `NULL` does nothing (tests, direct calls).
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable

from absl import logging


class Progress:
  """The interface (and the no-op implementation)."""

  def start(self, total_iterations: int) -> None:
    del total_iterations

  def update(self, iteration: int, **scalars: float) -> None:
    del iteration, scalars


NULL = Progress()


class Shifted(Progress):
  """A later phase of one image's run (ZSSR after KernelGAN): its iterations count after `offset`
  and its own `start` does not reset the total the first phase announced."""

  def __init__(self, inner: Progress, offset: int):
    self._inner, self._offset = inner, offset

  def start(self, total_iterations: int) -> None:
    del total_iterations

  def update(self, iteration: int, **scalars: float) -> None:
    self._inner.update(iteration + self._offset, **scalars)


class Reporter(Progress):
  """The engine's implementation, one per run: logs each image's iteration / total, its latest
  scalars (learning rate, reconstruction error, ...), images done / left and an ETA, at most every
  `every_secs` seconds (and at each image's start and end), and writes the image's curves to
  `writer` as zeroshot/<set>/<image>/<name>, keyed by iteration (TensorBoard shows one curve per
  image and quantity).

  ETA: the current image's remaining time, from its elapsed time over the fraction of its
  iteration budget done, plus the images after it at the mean time of the finished ones (or, before
  any has finished, at the current image's own projected time). Methods that stop early (ZSSR's
  learning-rate policy) make it pessimistic, never optimistic.
  """

  def __init__(self, writer, total_images: int, *, every_secs: float = 10.0,
               clock: Callable[[], float] = time.monotonic,
               log: Callable[..., None] = logging.info):
    self._writer, self._total_images = writer, total_images
    self._every, self._clock, self._log = every_secs, clock, log
    self._finished_seconds: list[float] = []
    self._name, self._image_index = "", 0
    self._t0 = self._last_log = 0.0
    self._total_iterations, self._iteration = 0, 0
    self._scalars: dict[str, float] = {}

  # --- The engine's side. ---

  def begin_image(self, index: int, set_name: str, image: str) -> None:
    """Image number `index` (1-based, over the whole run) of set `set_name` starts."""
    self._image_index, self._name = index, f"{set_name}/{image}"
    self._t0 = self._last_log = self._clock()
    self._total_iterations, self._iteration, self._scalars = 0, 0, {}

  def end_image(self, skipped: bool = False) -> None:
    """The current image is done (or was already done in results.jsonl: `skipped`, not timed)."""
    if not skipped:
      self._finished_seconds.append(self._clock() - self._t0)
      self._log("%s", self.line(final=True))

  def eta_seconds(self) -> float | None:
    """Seconds left for the whole run, or None before anything can be estimated."""
    elapsed = self._clock() - self._t0
    fraction = (self._iteration / self._total_iterations) if self._total_iterations else 0.0
    current_total = elapsed / fraction if fraction > 0 else None
    per_image = (sum(self._finished_seconds) / len(self._finished_seconds)
                 if self._finished_seconds else current_total)
    if per_image is None:
      return None
    current_left = (current_total - elapsed) if current_total is not None else per_image
    after = self._total_images - self._image_index
    return max(current_left, 0.0) + after * per_image

  def line(self, final: bool = False) -> str:
    eta = self.eta_seconds()
    scalars = ", ".join(f"{k} {v:.4g}" for k, v in self._scalars.items())
    it = (f"done, {self._iteration} iterations" if final
          else f"iteration {self._iteration}/{self._total_iterations}")
    return (f"[image {self._image_index}/{self._total_images}] {self._name}: {it}"
            + (f", {scalars}" if scalars else "")
            + f", {self._clock() - self._t0:.0f} s; run ETA "
            + ("?" if eta is None else _duration(eta)))

  # --- The method's side (Progress). ---

  def start(self, total_iterations: int) -> None:
    self._total_iterations = int(total_iterations)
    self._log("%s", self.line())

  def update(self, iteration: int, **scalars: float) -> None:
    self._iteration = int(iteration)
    self._scalars.update({k: float(v) for k, v in scalars.items()})
    if scalars:
      self._writer.write_scalars(self._iteration, {f"zeroshot/{self._name}/{k}": float(v)
                                                   for k, v in scalars.items()})
    now = self._clock()
    if now - self._last_log >= self._every:
      self._last_log = now
      self._log("%s", self.line())


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def accepts_progress(fn: Callable[..., Any]) -> bool:
  """Whether a method's super_resolve takes `progress` (a user's own method may not)."""
  params = inspect.signature(fn).parameters
  return "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
