r"""Train and evaluate: python -m jsr.main --config=configs/selfsup.py:scale=2 --workdir=/tmp/run.

Any config key can be overridden, e.g. `--config.total_steps=1000`; unknown keys are an error.

Several hosts: start one process per host with `--config.distributed=True`. On SLURM (srun), Cloud
TPU and other clusters JAX finds the coordinator, process count and id itself; elsewhere give
them: `--coordinator_address=HOST0:PORT --num_processes=N --process_id=I` (or the environment
variable JAX_COORDINATOR_ADDRESS). The run's config and workdir must be the same on every host,
on a filesystem they share.
"""

import atexit
import logging as std_logging
import os
import sys


_finished = False  # Set when main() returns: the run is complete and everything is written.


def _skip_interpreter_teardown() -> None:
  """Ends a finished `python -m jsr.main` as soon as every exit handler has run.

  Registered before jax (and TensorFlow, imported lazily by the input pipeline) exist, so it runs
  after all their exit handlers: jax's (backends cleared, jax.distributed shut down), orbax's and
  logging's. What would follow is only the interpreter unloading its modules, which with
  TensorFlow loaded takes about 2 s of a finished process's life (scripts/exit_latency.py). The
  training loop has already waited for the last checkpoint and closed its writers. Any other
  ending (an error, an uncaught exception) exits the ordinary way.
  """
  if _finished:
    std_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
  atexit.register(_skip_interpreter_teardown)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jsr import errors
from jsr import train
from jsr import zeroshot

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/<method>.py[:args]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics and images go here; a run resumes from "
                    "the latest checkpoint in it.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0 (default: "
                    "from the cluster environment or JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Multi-host: the number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's id, 0 .. num_processes - 1.")
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


def initialize_distributed() -> None:
  """jax.distributed.initialize with this command line's launch flags (None: JAX detects)."""
  # CPU hosts exchange gradients through gloo; GPUs use NCCL whatever this says.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                             num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if config.distributed or FLAGS.coordinator_address or FLAGS.num_processes:
    initialize_distributed()
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    if config.engine == "zeroshot":  # One training per test image.
      zeroshot.run(config, FLAGS.workdir)
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except (errors.UserError, FileNotFoundError, FloatingPointError) as e:
    # The user's input (or a diverged run): the message says what and where; no traceback.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  global _finished
  _finished = True


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
