r"""Network interpolation: a new workdir whose weights are (1 - alpha) * A + alpha * B.

  python -m jsr.interpolate --a=/tmp/run_psnr --b=/tmp/run_gan --alpha=0.5 --output=/tmp/run_mix
  python -m jsr.predict --workdir=/tmp/run_mix --input=photos/ --output=/tmp/mix

A and B must be runs of the same network (config.scale and config.model equal except the compute
dtype; identical parameter tree and shapes), e.g. a PSNR-trained run and its fine-tuned perceptual
or self-supervised sibling (ESRGAN's "network interpolation": A = RRDB-PSNR, B = ESRGAN). What is
mixed is A's method's generator fields (jsr/methods/__init__.py: params, EMA params and BatchNorm
statistics for the supervised method; a GAN's generator, not its discriminator). When A and B
are runs of the same method, each field is mixed with B's same field; when the methods differ
(a `supervised` run and its `gan` fine-tune), each field is mixed with the network B's `predict`
uses (its inference variables: the GAN's EMA generator if kept). Of B nothing else is read.
The new workdir holds A's config.json, one checkpoint at A's step with the mixed fields and the
rest of A's state (optimizer states), and interpolation.json saying how it was made; jsr.predict
and jsr.evaluate --workdir accept it. alpha outside [0, 1] extrapolates.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from absl import app, flags, logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from jsr import checkpoints
from jsr import inference
from jsr import methods
from jsr import workdir as workdir_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("a", None, "Workdir of run A (alpha = 0).")
  flags.DEFINE_string("b", None, "Workdir of run B (alpha = 1).")
  flags.DEFINE_float("alpha", 0.5, "Weight of B: theta = (1 - alpha) * theta_A + alpha * theta_B.")
  flags.DEFINE_string("output", None, "New workdir to write (must not exist, or be empty).")


def _model_key(config) -> dict:
  model = config.model.to_dict() if "model" in config else {}
  model.pop("dtype", None)  # Compute precision; the stored params are float32 either way.
  return {"scale": config.scale, "model": model}


def check_compatible(a: str, config_a, b: str, config_b, fields_a: dict, fields_b: dict) -> None:
  """ValueError naming both workdirs unless A and B are the same network (same config.scale and
  model block; the same generator fields with the same trees)."""
  ka, kb = _model_key(config_a), _model_key(config_b)
  for key in ka:
    if ka[key] != kb[key]:
      raise ValueError(f"{a} and {b} are runs of different models: config.{key} is "
                       f"{ka[key]!r} vs {kb[key]!r}")
  for field in fields_a:
    if field not in fields_b:
      raise ValueError(f"{a} has state.{field}, {b} does not")
    fa, fb = (checkpoints.flat_shapes(f[field]) for f in (fields_a, fields_b))
    dtypes = lambda t: {k: np.asarray(x).dtype for k, x in
                        zip(checkpoints.flat_shapes(t), jax.tree.leaves(t))}
    da, db = dtypes(fields_a[field]), dtypes(fields_b[field])
    diff = sorted(k for k in set(fa) | set(fb)
                  if fa.get(k) != fb.get(k) or da.get(k) != db.get(k))
    if diff:
      lines = "\n".join(f"  {k}: {fa.get(k, 'missing')} vs {fb.get(k, 'missing')}"
                        for k in diff[:8])
      raise ValueError(f"{a} and {b} have different {field} trees:\n{lines}")


def mix(x, y, alpha: float):
  """(1 - alpha) * x + alpha * y for float arrays; others (counters) are x's."""
  x, y = np.asarray(x), np.asarray(y)
  if not np.issubdtype(x.dtype, np.floating):
    return x
  # (1 - 0) * x + 0 * y == x and 0 * x + 1 * y == y exactly: the endpoints are the inputs.
  return ((1.0 - alpha) * x + alpha * y).astype(x.dtype)


def _generator(method, config, state) -> dict:
  return {f: getattr(state, f) for f in methods.generator_fields(method, config)
          if getattr(state, f) is not None}


def _load_generator(workdir: str):
  """(config, {field: tree}) of a run's generator fields only: no optimizer state or
  discriminator is read."""
  config = workdir_lib.read_config(workdir)
  method = methods.load(config.method)
  abstract = inference.abstract_state(method, config)
  manager, step = checkpoints.open_readonly(workdir)
  hint = (f"The checkpoint in {workdir} (step {step}) does not fit the model its config.json "
          "describes.")
  try:
    fields = list(methods.generator_fields(method, config))
    return config, checkpoints.restore_fields(manager, step, abstract, fields, hint)
  finally:
    manager.close()


def interpolate(a: str, b: str, alpha: float, output: str):
  """Writes the interpolated workdir; returns its state (numpy arrays)."""
  a, b, output = (os.path.abspath(p) for p in (a, b, output))
  if os.path.exists(output) and os.listdir(output):
    raise FileExistsError(f"--output {output} exists and is not empty; give a new folder")
  config_a, method, state_a, step = inference.load_state(a)  # A's whole state continues.
  gen_a = _generator(method, config_a, state_a)
  config_b = workdir_lib.read_config(b)
  if config_b.method == config_a.method:
    config_b, gen_b = _load_generator(b)
  else:  # A PSNR run and its GAN fine-tune: B's predict network, by Flax collection.
    config_b, _, variables_b, _ = inference.load_variables(b)
    collections = methods.generator_fields(method, config_a)
    gen_b = {f: variables_b[c] for f, c in collections.items()
             if f in gen_a and c in variables_b}
  check_compatible(a, config_a, b, config_b, gen_a, gen_b)
  updates = {f: jax.tree.map(lambda x, y: mix(x, y, alpha), gen_a[f], gen_b[f]) for f in gen_a}
  state = state_a.replace(**updates)
  os.makedirs(output, exist_ok=True)
  shutil.copyfile(os.path.join(a, "config.json"), os.path.join(output, "config.json"))
  manager = ocp.CheckpointManager(
      os.path.join(output, "checkpoints"), options=ocp.CheckpointManagerOptions(create=True),
      item_handlers=ocp.PyTreeCheckpointHandler())
  try:
    checkpoints.save(manager, step, state)
    manager.wait_until_finished()
  finally:
    manager.close()
  with open(os.path.join(output, "interpolation.json"), "w") as f:
    json.dump({"a": a, "b": b, "alpha": alpha, "step": step, "fields": sorted(updates)}, f,
              indent=2)
  return state


def _fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {argv[1:]}")
  for name in ("a", "b", "output"):
    if not getattr(FLAGS, name):
      _fail(f"--{name} is required")
  if not 0.0 <= FLAGS.alpha <= 1.0:
    print(f"note: alpha={FLAGS.alpha} is outside [0, 1]: extrapolating", file=sys.stderr)
  try:
    interpolate(FLAGS.a, FLAGS.b, FLAGS.alpha, FLAGS.output)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    _fail(str(e))
  print(f"wrote {os.path.abspath(FLAGS.output)}: (1 - {FLAGS.alpha}) * A + {FLAGS.alpha} * B",
        file=sys.stderr)


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(main)


if __name__ == "__main__":
  run()
