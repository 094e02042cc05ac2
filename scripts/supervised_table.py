r"""Train one supervised config on the shared HR photos, evaluate on Set5/Set14, print a table row.

  python scripts/supervised_table.py --config=configs/espcn.py:scale=3 --minutes=30 \
      --workdir=/tmp/sup_table --output=docs/supervised_espcn_x3.json
  python scripts/supervised_table.py --config=configs/edsr.py:scale=2 --steps=20000 \
      --data_backend=numpy -- --config.model.dtype=bfloat16

Training is `python -m jsr.main --config=<config>` in a subprocess (run from the repository
root) with `data.train=folder:<--train>` (HR photos; LR is synthesised from them by MATLAB bicubic)
and `eval.sets=set5=...,set14=...`, so the numbers come from the engine's own evaluation (the
papers' protocol, with the bicubic baseline logged next to the model's).

  --steps=N     trains N steps and evaluates at the end.
  --minutes=M   trains against the clock: the run gets the config's total_steps (its learning-rate
                schedule unchanged) with a checkpoint every --checkpoint_every steps; after M
                minutes it is interrupted, and a second run resumes the last checkpoint, trains one
                more step and evaluates. Work after the last checkpoint is discarded; the reported
                steps are the ones the evaluated model has, the wall time is the whole.
Extra overrides for the run go after `--`. `--data_backend=numpy` runs without TensorFlow (GPU
machines). Prints one markdown row per set pair: bicubic and the model, Y-PSNR / SSIM, and
LPIPS / NIQE where the run's config.eval.metrics has them. Any method trains this way: a GAN
fine-tune is `--config=configs/srgan.py --name=srgan -- --config.init_from=<SRResNet workdir>`.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]

flags.DEFINE_string("config", None, "configs/<model>.py[:args], as for jsr.main.")
flags.DEFINE_integer("steps", None, "Train this many steps (exclusive with --minutes).")
flags.DEFINE_float("minutes", None, "Train for this long, then evaluate the last checkpoint.")
flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint interval in --minutes mode.")
flags.DEFINE_string("train", "../shared/data/train", "Folder of HR training photos.")
flags.DEFINE_string("benchmarks", "../shared/data/benchmarks", "Folder with Set5/ and Set14/.")
flags.DEFINE_string("workdir", "/tmp/supervised_table", "Parent folder of the runs' workdirs.")
flags.DEFINE_string("data_backend", None, "data.backend override: tf, numpy or auto.")
flags.DEFINE_string("output", None, "JSON file for the results.")
flags.DEFINE_string("name", None, "Workdir name under --workdir (default <model>_x<s>_<variant>); "
                    "give one when two configs train the same network (SRResNet, SRGAN).")
flags.mark_flag_as_required("config")
FLAGS = flags.FLAGS

SETS = ("set5", "set14")


def load_config(spec: str, overrides: list[str] = ()):
  """The ConfigDict that `--config=spec` and the `--config.key=value` overrides give jsr.main
  (for its scale, model and steps); other arguments are ignored here."""
  path, _, arg = spec.partition(":")
  sys.path.insert(0, str(ROOT))
  module = importlib.import_module("configs." + Path(path).stem)
  config = module.get_config(arg or None)
  for o in overrides:
    key, sep, value = o.removeprefix("--config.").partition("=")
    if not o.startswith("--config.") or not sep:
      continue
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    old = node[leaf]
    node[leaf] = (value.lower() in ("1", "true")) if isinstance(old, bool) else type(old)(value)
  return config


def _last(rows, key):
  vals = [r[key] for r in rows if key in r]
  return vals[-1] if vals else float("nan")


def latest_checkpoint(workdir: Path) -> int:
  steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
  return max(steps, default=0)


def run(cmd: list[str], deadline: float | None = None) -> None:
  """Runs `cmd` from the repository root; with a deadline, interrupts it then (like Ctrl-C, so
  an in-flight checkpoint is finished)."""
  print(" ".join(cmd), flush=True)
  # SIGINT back to its default in the child: a shell starts background jobs (`... &`, nohup) with
  # SIGINT ignored, and Python then never raises KeyboardInterrupt, so the deadline's interrupt
  # would be ignored and the run would go on past its budget.
  proc = subprocess.Popen(cmd, cwd=ROOT,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  try:
    while proc.poll() is None:
      if deadline is not None and time.time() > deadline:
        print("Time is up: interrupting the run.", flush=True)
        proc.send_signal(signal.SIGINT)
        proc.wait()
        return
      time.sleep(1.0)
  except BaseException:
    proc.kill()
    raise
  if proc.returncode:
    raise SystemExit(f"{cmd[2]} failed with exit code {proc.returncode}")


def main(argv):
  extra = argv[1:]
  if (FLAGS.steps is None) == (FLAGS.minutes is None):
    raise app.UsageError("give exactly one of --steps or --minutes")
  config = load_config(FLAGS.config, extra)
  s, name = config.scale, config.model.name
  workdir = Path(FLAGS.workdir).resolve() / (FLAGS.name or f"{name}_x{s}_{config.model.variant}")
  sets = ",".join(f"{n}={Path(FLAGS.benchmarks).resolve() / n.replace('set', 'Set')}"
                  for n in SETS)
  base = [sys.executable, "-m", "jsr.main", f"--config={FLAGS.config}", f"--workdir={workdir}",
          f"--config.data.train=folder:{Path(FLAGS.train).resolve()}",
          f"--config.eval.sets={sets}"]
  if FLAGS.data_backend:
    base.append(f"--config.data.backend={FLAGS.data_backend}")

  t0 = time.time()
  if FLAGS.steps is not None:
    steps = FLAGS.steps
    run(base + [f"--config.total_steps={steps}", f"--config.eval_every_steps={steps}",
                f"--config.checkpoint_every_steps={steps}", *extra])
  else:
    total = config.total_steps
    run(base + [f"--config.total_steps={total}", f"--config.eval_every_steps={total}",
                f"--config.checkpoint_every_steps={FLAGS.checkpoint_every}", *extra],
        deadline=t0 + 60 * FLAGS.minutes)
    last = latest_checkpoint(workdir)
    steps = last + 1
    if last >= total:
      steps = total  # Finished inside the budget (and evaluated).
    else:
      # Resume, one more step, evaluate. Step-decay / constant schedules are unchanged by the
      # shorter total (a cosine one would end one step early: negligible).
      # The shortened total is a config change the engine refuses unless told (the old
      # config.json is kept as config.<step>.json).
      run(base + [f"--config.total_steps={steps}", f"--config.eval_every_steps={steps}",
                  f"--config.checkpoint_every_steps={steps}", "--config.allow_config_change=True",
                  *extra])
  wall = (time.time() - t0) / 60

  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl") if l.strip()]
  result = {"config": FLAGS.config, "model": name, "variant": config.model.variant, "scale": s,
            "steps": steps, "wall_minutes": wall, "extra": extra}
  for n in SETS:
    for m in ("psnr_y", "ssim_y", "lpips", "lpips_alex", "niqe"):  # Those config.eval.metrics has.
      if m in ("psnr_y", "ssim_y") or any(f"eval/{n}_x{s}/{m}" in r for r in rows):
        result[f"{n}_{m}"] = _last(rows, f"eval/{n}_x{s}/{m}")
        result[f"{n}_bicubic_{m}"] = _last(rows, f"eval/{n}_x{s}/bicubic_{m}")

  r = result
  print(f"\n| model | x | Set5 PSNR / SSIM (bicubic) | Set14 PSNR / SSIM (bicubic) | steps "
        f"| wall (min) |")
  print("|---|---|---|---|---|---|")
  cells = [f"{r[f'{n}_psnr_y']:.2f} / {r[f'{n}_ssim_y']:.4f} "
           f"({r[f'{n}_bicubic_psnr_y']:.2f} / {r[f'{n}_bicubic_ssim_y']:.4f})"
           + "".join(f", {m} {r[f'{n}_{m}']:.4f} ({r[f'{n}_bicubic_{m}']:.4f})"
                     for m in ("lpips", "lpips_alex", "niqe") if f"{n}_{m}" in r)
           for n in SETS]
  print(f"| {name} {config.model.variant} | {s} | {cells[0]} | {cells[1]} | {steps} | "
        f"{wall:.1f} |")
  if FLAGS.output:
    Path(FLAGS.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
  os.environ.setdefault("PYTHONUNBUFFERED", "1")
  app.run(main)
