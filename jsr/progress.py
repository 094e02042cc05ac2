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


class Progress:
  """The interface (and the no-op implementation)."""

  def start(self, total_iterations: int) -> None:
    del total_iterations

  def update(self, iteration: int, **scalars: float) -> None:
    del iteration, scalars


NULL = Progress()
