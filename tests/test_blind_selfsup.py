"""Blind selfsup (degradation.kernel=estimate): the per-image estimates' combination, one
estimation per run kept in the workdir, and what cannot be combined with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jsr import errors
from jsr import train
from jsr.methods import kernelgan, selfsup
from jsr.ops import degrade
from tests.test_train import make_config, make_dirs


def test_combined_kernel_is_the_normalised_median_and_shrugs_off_failed_estimates():
  rng = np.random.default_rng(0)
  truth = degrade.gaussian_kernel(13, 1.6, 0.9, 0.7)
  good = [np.clip(truth * (1 + rng.uniform(-0.3, 0.3, truth.shape)), 0, None) for _ in range(5)]
  good = [k / k.sum() for k in good]
  bad = [np.full((13, 13), 1 / 169.0), np.eye(13) / 13.0]  # two images whose estimate failed
  estimates = good + bad
  combined = selfsup.combine_kernels(estimates)
  med = np.median(np.stack(estimates), axis=0)  # the definition, elementwise
  np.testing.assert_allclose(combined, med / med.sum(), rtol=1e-5, atol=1e-7)
  assert combined.sum() == pytest.approx(1.0, abs=1e-6)
  mean = np.mean(np.stack(estimates), axis=0)
  assert np.sum((combined - truth) ** 2) < 0.25 * np.sum((mean - truth) ** 2)
  with pytest.raises(ValueError, match="different sizes"):
    selfsup.combine_kernels([np.ones((13, 13)), np.ones((11, 11))])


def test_estimate_once_per_run_saved_and_read_back_on_resume(tmp_path, monkeypatch):
  train_dir, _ = make_dirs(tmp_path)
  config = make_config(train_dir, **{"degradation.kernel": "estimate",
                                     "degradation.estimate_images": 2})
  calls = []
  real = kernelgan.estimate_kernel
  monkeypatch.setattr(kernelgan, "estimate_kernel",
                      lambda *a, **k: (calls.append(1), real(*a, **k))[1])
  workdir = tmp_path / "w"
  train.train_and_evaluate(config, str(workdir))
  assert len(calls) == 2  # KernelGAN on two of the three observations
  with np.load(workdir / selfsup.ESTIMATE_FILE) as f:
    kernel, per_image, names = f["kernel"], f["per_image"], list(f["names"])
  assert per_image.shape[0] == 2
  assert {Path(n).name for n in names} <= {"t0.png", "t1.png", "t2.png"}
  assert kernel.shape == per_image.shape[1:] and kernel.sum() == pytest.approx(1.0, abs=1e-5)
  assert (kernel >= 0).all()

  # Resume for two more steps: the kernel is read back, KernelGAN does not run again.
  config.total_steps += 2
  config.allow_config_change = True
  train.train_and_evaluate(config, str(workdir))
  assert len(calls) == 2
  frozen = selfsup.load_frozen(config, str(workdir))
  np.testing.assert_array_equal(np.asarray(frozen["kernel"]), kernel)


def test_estimate_needs_the_shuffle_tail_and_big_enough_images(tmp_path):
  config = make_config(tmp_path, **{"degradation.kernel": "estimate",
                                    "model.tail": "adjoint"})
  with pytest.raises(errors.UserError, match="model.tail=adjoint"):
    selfsup.create_model(config)
  config.model.tail = "shuffle"
  small = [np.zeros((10, 10, 3), np.uint8)]
  with pytest.raises(errors.UserError, match="at least"):
    selfsup.estimate_kernel(small, ["s.png"], config)
