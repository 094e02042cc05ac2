r"""Train and evaluate: python -m jsr.main --config=configs/selfsup.py:scale=2 --workdir=/tmp/run.

Any config key can be overridden, e.g. `--config.total_steps=1000`; unknown keys are an error.
"""

from absl import app
from absl import flags
from absl import logging
import sys

import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/<method>.py[:args]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and images go here; a run resumes from "
                    "the latest checkpoint in it.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a one-line error instead of a traceback for an unknown config key."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    while e.args and isinstance(e.args[0], BaseException):  # ml_collections nests its KeyError.
      e = e.args[0]
    msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    print(f"error: a --config.* override names a key the config does not define: {msg}\n"
          f"  overrides: {overrides}", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if config.distributed:
    jax.distributed.initialize()  # Multi-host: coordinator and process ids from the environment.
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    # TF only writes summaries / reads tfds here; it must not take GPU memory that JAX needs.
    tf.config.set_visible_devices([], "GPU")
  except ImportError:
    pass  # The GPU machines have no TensorFlow; nothing in training needs it.
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  if "engine" in config and config.engine == "zeroshot":  # One training per test image.
    from jsr import zeroshot  # pylint: disable=g-import-not-at-top
    zeroshot.run(config, FLAGS.workdir)
    return
  from jsr import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
