r"""How promptly `python -m jsr.main` exits once training is done.

    python scripts/exit_latency.py --backend=tf                      # the default job, as the README runs it
    python scripts/exit_latency.py --backend=tf --total_steps=300 --repeats=3 --out=out/exit.json

Runs the main job in a subprocess (configs/selfsup.py, fresh workdir each repeat), watches
workdir/checkpoints/ for the final step's folder, and records, from the parent's clock:

  exit_after_final_checkpoint_s  the final checkpoint folder appears -> the process has exited
                                 (includes the final evaluation, which runs after the async save)
  exit_after_last_line_s         the job's last line of output -> the process has exited (teardown:
                                 the input pipeline, orbax's background save, writers, interpreter)

With --total_steps below the default, the final evaluation also computes the bicubic baseline
(the default 3000-step job computes it at step 1000), so the first figure is a few seconds longer
than it would be for the default job. CPU model and AVX flags are recorded: 2-core machines with
and without AVX-512 differ by about 2.4x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("backend", "tf", ["tf", "numpy"], "config.data.backend of the job.")
flags.DEFINE_integer("total_steps", 0, "config.total_steps (0: the config's default, 3000).")
flags.DEFINE_integer("repeats", 1, "Runs, each in a fresh workdir.")
flags.DEFINE_string("config", "configs/selfsup.py", "Config file (with its args).")
flags.DEFINE_string("out", "", "Write the results as JSON here.")
flags.DEFINE_string("log", "", "Keep the last run's output here.")


def cpu_info() -> dict:
  model, flags_ = "", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and not model:
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags_:
          flags_ = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return {"cpu": model, "cpu_count": os.cpu_count(),
          "avx": sorted(f for f in flags_ if f.startswith(("avx", "fma")))}


def run_once(total_steps: int) -> dict:
  workdir = tempfile.mkdtemp(prefix="jsr_exit_")
  cmd = [sys.executable, "-m", "jsr.main", f"--config={FLAGS.config}", f"--workdir={workdir}",
         f"--config.data.backend={FLAGS.backend}"]
  if total_steps:
    cmd.append(f"--config.total_steps={total_steps}")
  final = str(total_steps) if total_steps else None
  lines: list[tuple[float, str]] = []
  t_start = time.monotonic()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

  def reader():
    for line in proc.stdout:
      lines.append((time.monotonic(), line))
  thread = threading.Thread(target=reader, daemon=True)
  thread.start()

  ckpt_dir = os.path.join(workdir, "checkpoints")
  seen: dict[str, float] = {}
  while proc.poll() is None:
    if os.path.isdir(ckpt_dir):
      for name in os.listdir(ckpt_dir):
        if name.isdigit() and name not in seen:
          seen[name] = time.monotonic()
    time.sleep(0.01)
  t_exit = time.monotonic()
  thread.join()
  if proc.returncode != 0:
    sys.stdout.write("".join(l for _, l in lines[-40:]))
    raise SystemExit(f"job failed with exit code {proc.returncode}")
  if final is None:
    final = max(seen, key=int)
  if FLAGS.log:
    with open(FLAGS.log, "w") as f:
      f.write("".join(f"{t - t_start:9.3f} {l}" for t, l in lines))
  t_ckpt = seen[final]
  t_last = lines[-1][0]
  return {"final_step": int(final), "wall_s": round(t_exit - t_start, 2),
          "exit_after_final_checkpoint_s": round(t_exit - t_ckpt, 2),
          "exit_after_last_line_s": round(t_exit - t_last, 2), "workdir": workdir}


def main(argv):
  del argv
  info = {"backend": FLAGS.backend, "config": FLAGS.config, "total_steps": FLAGS.total_steps,
          **cpu_info(), "runs": []}
  for i in range(FLAGS.repeats):
    r = run_once(FLAGS.total_steps)
    info["runs"].append(r)
    print(f"[{FLAGS.backend}] run {i}: {r}", flush=True)
  print(json.dumps({k: v for k, v in info.items() if k != "runs"}))
  if FLAGS.out:
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
      json.dump(info, f, indent=1)


if __name__ == "__main__":
  app.run(main)
