r"""Time one ZSSR update (the paper's net, 128-px father, batch 1) and one KernelGAN step, as
jsr runs them (one jitted call per step) and, for ZSSR, as a `lax.scan` over 10 updates.

  python scripts/bench_zeroshot.py [--steps=20] [--output=docs/runs/bench_zeroshot_cpu.json]
  JSR_XLA_DEFAULTS=0 python scripts/bench_zeroshot.py ...   # XLA:CPU's own convolution choice

Prints seconds per step; synthetic crops, so no data is read.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
import platform
import sys
import time

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after one compiling step).")
flags.DEFINE_bool("scan", True, "Also time ZSSR updates inside a lax.scan of 10.")
flags.DEFINE_string("output", "", "JSON file for the results.")


def _time(fn, n):
  import jax
  out = fn()
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / n


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np
  from configs import kernelgan as kernelgan_config
  from configs import zssr as zssr_config
  from jsr.methods import kernelgan, zssr

  rng = np.random.default_rng(0)
  result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "jax": jax.__version__, "device": jax.devices()[0].device_kind,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "steps": FLAGS.steps}

  config = zssr_config.get_config("")
  degrade_fn = zssr.make_degradation(config)
  fathers = jnp.asarray(rng.random((1, 128, 128, 3), np.float32))
  step = jax.jit(functools.partial(zssr.train_step, degrade_fn=degrade_fn, noise_std=0.0),
                 donate_argnums=0)
  holder = {"s": zssr.init_state(config, jax.random.key(0), 3, 128)}

  def one():
    holder["s"], loss = step(holder["s"], fathers, jax.random.key(1))
    return loss

  result["zssr_step_s"] = _time(one, FLAGS.steps)

  if FLAGS.scan:
    def chunk(state, fs):
      return jax.lax.scan(lambda st, f: zssr.train_step(st, f, jax.random.key(1), degrade_fn, 0.0),
                          state, fs)

    scanned = jax.jit(chunk, donate_argnums=0)
    ten = jnp.broadcast_to(fathers, (10,) + fathers.shape)

    def ten_steps():
      holder["s"], losses = scanned(holder["s"], ten)
      return losses

    result["zssr_scan_step_s"] = _time(ten_steps, max(FLAGS.steps // 10, 2)) / 10

  kconfig = kernelgan_config.get_config("")
  kstate = {"s": kernelgan.init_gan(kconfig, jax.random.key(0), 64)}
  kstep = kernelgan._compiled_step(kconfig.to_json())  # pylint: disable=protected-access
  g_in = jnp.asarray(rng.random((1, 64, 64, 3), np.float32) * 2 - 1)
  d_in = jnp.asarray(rng.random((1, 26, 26, 3), np.float32) * 2 - 1)

  def kone():
    kstate["s"], m = kstep(kstate["s"], g_in, d_in, jax.random.key(2), 5)
    return m

  result["kernelgan_step_s"] = _time(kone, FLAGS.steps)
  for k, v in result.items():
    print(f"{k:>20s}: {v}")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)
