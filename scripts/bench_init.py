r"""Parameter init: `jax.jit(model.init)` (compile + run) against op-by-op `model.init`, which
every jsr method uses (jsr.models.common.init_variables).

  python scripts/bench_init.py --model=rcan --scale=4 [--output=docs/runs/bench_init_cpu.json]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import platform
import sys
import time

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "rcan", "A jsr.models family.")
flags.DEFINE_string("variant", "", "Its variant (default: the family's default).")
flags.DEFINE_integer("scale", 4, "Scale.")
flags.DEFINE_integer("lr_size", 12, "Side of the dummy LR input init traces with.")
flags.DEFINE_string("output", "", "JSON file for the results.")


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  from jsr.models import get_model

  kw = {"variant": FLAGS.variant} if FLAGS.variant else {}
  model = get_model(FLAGS.model, scale=FLAGS.scale, **kw)
  x = jnp.zeros((1, FLAGS.lr_size, FLAGS.lr_size, 3))
  t0 = time.perf_counter()
  eager = model.init(jax.random.key(0), x)
  jax.block_until_ready(eager)
  eager_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  jitted = jax.jit(model.init)(jax.random.key(0), x)
  jax.block_until_ready(jitted)
  jit_s = time.perf_counter() - t0
  result = {"model": FLAGS.model, "variant": FLAGS.variant, "scale": FLAGS.scale,
            "params": len(jax.tree.leaves(eager)), "op_by_op_s": eager_s, "jit_s": jit_s,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "jax": jax.__version__, "device": jax.devices()[0].device_kind}
  for k, v in result.items():
    print(f"{k:>12s}: {v}")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main)
