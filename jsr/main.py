r"""Train and evaluate: python -m jsr.main --config=configs/selfsup.py:scale=2 --workdir=/tmp/run.

Any config key can be overridden, e.g. `--config.total_steps=1000`; unknown keys are an error.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/<method>.py[:args]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and images go here; a run resumes from "
                    "the latest checkpoint in it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if config.distributed:
    jax.distributed.initialize()  # Multi-host: coordinator and process ids from the environment.
  # Hide GPUs/TPUs from TensorFlow (input pipeline only) before anything imports it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  from jsr import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
