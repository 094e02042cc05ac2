r"""Network interpolation: a new workdir whose weights are (1 - alpha) * A + alpha * B.

  python -m jsr.interpolate --a=/tmp/run_psnr --b=/tmp/run_gan --alpha=0.5 --output=/tmp/run_mix
  python -m jsr.predict --workdir=/tmp/run_mix --input=photos/ --output=/tmp/mix

A and B must be runs of the same model (config.method, config.scale and config.model equal except
the compute dtype; identical parameter tree and shapes), e.g. a PSNR-trained run and its fine-tuned
perceptual or self-supervised sibling (ESRGAN's "network interpolation"). The new workdir holds
A's config.json, one checkpoint at A's step with the interpolated params (and EMA params and
BatchNorm statistics, when the method keeps them) and A's optimizer state, and interpolation.json saying how it was made;
jsr.predict and jsr.evaluate --workdir accept it. alpha outside [0, 1] extrapolates.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("a", None, "Workdir of run A (alpha = 0).")
  flags.DEFINE_string("b", None, "Workdir of run B (alpha = 1).")
  flags.DEFINE_float("alpha", 0.5, "Weight of B: theta = (1 - alpha) * theta_A + alpha * theta_B.")
  flags.DEFINE_string("output", None, "New workdir to write (must not exist, or be empty).")


def _weight_fields(state) -> list[str]:
  """State fields that are part of the network: params, EMA copies of them, BatchNorm statistics
  (interpolated too, as ESRGAN does with whole state dicts); not the optimizer state."""
  names = [f.name for f in dataclasses.fields(state)] if dataclasses.is_dataclass(state) else []
  return [n for n in names if n == "params" or (
      ("ema" in n or n == "batch_stats") and getattr(state, n) is not None)]


def _model_key(config) -> dict:
  model = config.model.to_dict() if "model" in config else {}
  model.pop("dtype", None)  # Compute precision; the stored params are float32 either way.
  return {"method": config.method, "scale": config.scale, "model": model}


def check_compatible(a: str, config_a, state_a, b: str, config_b, state_b) -> None:
  """ValueError naming both workdirs unless A and B are the same model."""
  import jax
  import numpy as np
  ka, kb = _model_key(config_a), _model_key(config_b)
  for key in ka:
    if ka[key] != kb[key]:
      raise ValueError(f"{a} and {b} are runs of different models: config.{key} is "
                       f"{ka[key]!r} vs {kb[key]!r}")
  for field in _weight_fields(state_a):
    flat = lambda s: {jax.tree_util.keystr(p): (np.shape(x), np.asarray(x).dtype)
                      for p, x in jax.tree_util.tree_flatten_with_path(getattr(s, field))[0]}
    if not hasattr(state_b, field) or getattr(state_b, field) is None:
      raise ValueError(f"{a} has state.{field}, {b} does not")
    fa, fb = flat(state_a), flat(state_b)
    diff = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    if diff:
      lines = "\n".join(f"  {k}: {fa.get(k, 'missing')} vs {fb.get(k, 'missing')}"
                        for k in diff[:8])
      raise ValueError(f"{a} and {b} have different {field} trees:\n{lines}")


def interpolate_states(state_a, state_b, alpha: float):
  """A's state with each weight field replaced by (1 - alpha) * A + alpha * B (floats only)."""
  import jax
  import jax.numpy as jnp

  def mix(x, y):
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
      return x
    # (1 - 0) * x + 0 * y == x and 0 * x + 1 * y == y exactly: the endpoints are the inputs.
    return ((1.0 - alpha) * x + alpha * y).astype(x.dtype)

  updates = {f: jax.tree.map(mix, getattr(state_a, f), getattr(state_b, f))
             for f in _weight_fields(state_a)}
  return state_a.replace(**updates)


def interpolate(a: str, b: str, alpha: float, output: str):
  """Writes the interpolated workdir; returns its state."""
  import jax
  import orbax.checkpoint as ocp
  from jsr import inference

  a, b, output = (os.path.abspath(p) for p in (a, b, output))
  if os.path.exists(output) and os.listdir(output):
    raise FileExistsError(f"--output {output} exists and is not empty; give a new folder")
  config_a, _, state_a = inference.load_state(a)
  config_b, _, state_b = inference.load_state(b)
  check_compatible(a, config_a, state_a, b, config_b, state_b)
  state = interpolate_states(state_a, state_b, alpha)
  os.makedirs(output, exist_ok=True)
  shutil.copyfile(os.path.join(a, "config.json"), os.path.join(output, "config.json"))
  step = int(jax.device_get(state.step))
  manager = ocp.CheckpointManager(
      os.path.join(output, "checkpoints"), options=ocp.CheckpointManagerOptions(create=True),
      item_handlers=ocp.StandardCheckpointHandler())
  try:
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
  finally:
    manager.close()
  with open(os.path.join(output, "interpolation.json"), "w") as f:
    json.dump({"a": a, "b": b, "alpha": alpha, "step": step,
               "fields": _weight_fields(state)}, f, indent=2)
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
