"""Per-image progress of zero-shot runs (jsr/progress.py): the ETA arithmetic on a fake clock,
throttled log lines, the curves a real run writes, and methods that do not report."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from PIL import Image

from jsr import progress as progress_lib
from jsr import zeroshot
from tests.test_zssr import load_config, photo


class FakeWriter:

  def __init__(self):
    self.rows = []

  def write_scalars(self, step, scalars):
    self.rows.append((step, dict(scalars)))


class Clock:

  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def reporter(total_images: int, set_name: str, image: str, iterations: int):
  """A Reporter on a fake clock and writer, logging into a list, with its first image started."""
  clock, writer, lines = Clock(), FakeWriter(), []
  r = progress_lib.Reporter(writer, total_images=total_images, every_secs=10.0, clock=clock,
                            log=lambda fmt, *a: lines.append(fmt % a))
  r.begin_image(1, set_name, image)
  r.start(iterations)
  return r, clock, writer, lines


def test_eta_from_the_current_image_then_from_finished_ones():
  r, clock, writer, lines = reporter(3, "set5", "baby.png", 100)
  assert r.eta_seconds() is None  # Nothing done yet: no estimate.
  clock.t = 20.0
  r.update(50, learning_rate=1e-3, rec_mse=2e-4)
  # Half of image 1 in 20 s: 20 s left for it, and 2 more images at 40 s each.
  assert r.eta_seconds() == pytest.approx(20.0 + 2 * 40.0)
  clock.t = 40.0
  r.end_image()
  r.begin_image(2, "set5", "bird.png")
  r.start(100)
  # Before image 2 reports: itself and image 3 at the finished images' mean (40 s).
  assert r.eta_seconds() == pytest.approx(2 * 40.0)
  clock.t = 50.0
  r.update(25, learning_rate=1e-4, rec_mse=1e-4)
  # A quarter in 10 s: 30 s left for image 2, and image 3 at the mean of finished ones (40 s).
  assert r.eta_seconds() == pytest.approx(30.0 + 40.0)
  assert writer.rows == [(50, {"zeroshot/set5/baby.png/learning_rate": 1e-3,
                               "zeroshot/set5/baby.png/rec_mse": 2e-4}),
                         (25, {"zeroshot/set5/bird.png/learning_rate": 1e-4,
                               "zeroshot/set5/bird.png/rec_mse": 1e-4})]
  assert any("[image 2/3] set5/bird.png: iteration 25/100" in l and "rec_mse 0.0001" in l
             and "run ETA 1m10s" in l for l in lines), lines


def test_log_lines_are_throttled_but_every_update_is_written():
  r, clock, writer, lines = reporter(1, "s", "a.png", 1000)
  for i in range(1, 101):  # 100 updates over 50 s: a line every 10 s, not 100 lines.
    clock.t = 0.5 * i
    r.update(i, loss=1.0 / i)
  r.end_image()
  assert len(writer.rows) == 100
  assert len(lines) == 1 + 5 + 1  # start, one per 10 s, end
  assert "done, 100 iterations" in lines[-1]


def test_shifted_phase_counts_after_the_first():
  writer = FakeWriter()
  r = progress_lib.Reporter(writer, total_images=1, log=lambda *a: None)
  r.begin_image(1, "s", "a.png")
  r.start(30)
  progress_lib.Shifted(r, 20).start(10)  # A second phase does not reset the total.
  progress_lib.Shifted(r, 20).update(5, loss=0.5)
  assert writer.rows == [(25, {"zeroshot/s/a.png/loss": 0.5})]
  assert "iteration 25/30" in r.line()


def test_zssr_run_writes_its_curves_and_a_silent_method_still_runs(tmp_path, monkeypatch):
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  Image.fromarray(np.round(photo(40, 44) * 255).astype(np.uint8)).save(hr_dir / "cat.png")
  config = load_config()
  config.eval.sets = f"tiny={hr_dir}"
  rows = zeroshot.run(config, str(tmp_path / "w"))
  metrics = [json.loads(l) for l in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
  key = "zeroshot/tiny/cat.png/rec_mse"
  curve = [(m["step"], m[key]) for m in metrics if key in m]
  z = config.zssr
  assert [s for s, _ in curve] == list(range(z.test_every, z.max_iters + 1, z.test_every))
  np.testing.assert_allclose([v for _, v in curve], [v for _, v in rows[0]["rec_mse"]], rtol=1e-6)

  # A user's own method whose super_resolve takes no `progress` runs as before.
  pkg = tmp_path / "mine"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "nearest.py").write_text(textwrap.dedent("""
      import numpy as np
      def super_resolve(lr, config, seed):
        return np.kron(lr, np.ones((config.scale, config.scale, 1))), {"iterations": 0}
  """))
  monkeypatch.syspath_prepend(str(tmp_path))
  config.method = "mine.nearest"
  (row,) = zeroshot.run(config, str(tmp_path / "w2"))
  assert row["iterations"] == 0 and row["psnr_y"] < row["bicubic_psnr_y"]
