r"""Blind selfsup: one hidden kernel for the training observations and the test sets (issue 15).

First make the sets with one DIV2KRK-style kernel (seed 0) shared by all of them:

  for d in train/bsd68 train/sunhays80 benchmarks/Set5 benchmarks/Set14; do
    python scripts/make_degraded_set.py --data=../shared/data/$d --pipeline=kernel --one_kernel \
        --scale=2 --seed=0 --out=/tmp/blind/$(basename $d); done
  mkdir -p /tmp/blind/train_lr && cp /tmp/blind/{bsd68,sunhays80}/LR/* /tmp/blind/train_lr/

then

  python scripts/selfsup_blind_table.py --root=/tmp/blind --loss=pair --steps=4000 \
      --output=docs/runs/selfsup_blind_x2.json

trains configs/selfsup.py on root/train_lr (the LR observations; their HR is never read) three
times -- assuming MATLAB bicubic, with the true kernel (root/Set5/kernel.npy, given), and with
`degradation.kernel=estimate` (KernelGAN on 8 observations, median) -- and scores each on the
sets' given pairs (root/Set5, root/Set14: LR/ and HR/). `--zssr` adds ZSSR assuming bicubic and
KernelGAN + ZSSR (jsr's zero-shot engine on the same pairs; minutes per image on a CPU). The
table's "gap recovered" is (estimated - assumed bicubic) / (true kernel - assumed bicubic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "/tmp/blind", "Folder made as in the docstring.")
flags.DEFINE_integer("scale", 2, "Scale the sets were made for.")
flags.DEFINE_string("loss", "pair", "configs/selfsup.py loss= (pair, both).")
flags.DEFINE_string("variant", "small", "Network variant.")
flags.DEFINE_integer("steps", 4000, "Training steps per selfsup run.")
flags.DEFINE_list("runs", ["bicubic", "true", "estimate"], "Selfsup runs (kernel assumptions).")
flags.DEFINE_list("zssr", [], "Zero-shot runs: zssr_bicubic, kernelgan_zssr.")
flags.DEFINE_list("zssr_sets", ["set5"], "Sets the zero-shot runs score (set5, set14).")
flags.DEFINE_multi_string("zssr_flag", [], "Extra flags for the zero-shot runs, e.g. "
                          "--zssr_flag=--config.zssr.augment.pad=mirror (repeatable).")
flags.DEFINE_string("workdir", "/tmp/selfsup_blind", "Parent folder of the runs' workdirs.")
flags.DEFINE_string("output", None, "JSON file for the results.")

METRICS = {"psnr": "psnr_y", "ssim": "ssim_y"}


def _sets(names) -> str:
  root = Path(FLAGS.root)
  return ",".join(f"{n}=pairs:{root / d / 'LR'},{root / d / 'HR'}"
                  for n, d in (("set5", "Set5"), ("set14", "Set14")) if n in names)


def _run(name: str, cmd: list[str], workdir: Path) -> dict:
  print(" ".join(cmd), flush=True)
  t0 = time.time()
  subprocess.run(cmd, check=True)
  wall = time.time() - t0
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl") if l.strip()]
  out = {"wall_minutes": wall / 60}
  for set_name in ("set5", "set14"):
    for key, metric in METRICS.items():
      for prefix in ("", "bicubic_"):
        tag = f"eval/{set_name}_x{FLAGS.scale}/{prefix}{metric}"
        vals = [r[tag] for r in rows if tag in r]
        if vals:
          out[f"{prefix}{set_name}_{key}"] = vals[-1]
  print(name, out, flush=True)
  return out


def selfsup_cmd(kind: str, workdir: Path) -> list[str]:
  root, s = Path(FLAGS.root), FLAGS.scale
  kernel = {"bicubic": ["--config.degradation.kernel=bicubic"],
            "true": ["--config.degradation.kernel=file",
                     f"--config.degradation.kernel_file={root / 'Set5' / 'kernel.npy'}",
                     "--config.degradation.downsample=direct"],
            "estimate": ["--config.degradation.kernel=estimate",
                         "--config.degradation.downsample=direct"]}[kind]
  return [sys.executable, "-m", "jsr.main",
          f"--config=configs/selfsup.py:scale={s},loss={FLAGS.loss},variant={FLAGS.variant}",
          f"--workdir={workdir}", f"--config.data.train=folder:{root / 'train_lr'}",
          f"--config.eval.sets={_sets(('set5', 'set14'))}", f"--config.total_steps={FLAGS.steps}",
          f"--config.eval_every_steps={FLAGS.steps}", *kernel]


def zeroshot_cmd(kind: str, workdir: Path) -> list[str]:
  s = FLAGS.scale
  config = {"zssr_bicubic": f"configs/zssr.py:scale={s}",
            "kernelgan_zssr": f"configs/kernelgan.py:scale={s}"}[kind]
  return [sys.executable, "-m", "jsr.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.eval.sets={_sets(FLAGS.zssr_sets)}", *FLAGS.zssr_flag]


def main(argv):
  del argv
  results = {}
  if FLAGS.output and os.path.exists(FLAGS.output):
    results = json.loads(Path(FLAGS.output).read_text()).get("runs", {})
  kernel = np.load(Path(FLAGS.root) / "Set5" / "kernel.npy")
  params = json.loads((Path(FLAGS.root) / "Set5" / "params.json").read_text())
  todo = [(f"selfsup_{k}", selfsup_cmd, k) for k in FLAGS.runs] + \
         [(k, zeroshot_cmd, k) for k in FLAGS.zssr]
  for name, make_cmd, kind in todo:
    workdir = Path(FLAGS.workdir) / f"{name}_{FLAGS.loss}_x{FLAGS.scale}"
    results[name] = _run(name, make_cmd(kind, workdir), workdir)
    if name.startswith("selfsup_"):
      results[name].update(steps=FLAGS.steps, loss=FLAGS.loss, variant=FLAGS.variant)
      est = workdir / "kernel_estimate.npz"
      if est.exists():
        k_hat = np.load(est)["kernel"]
        pad = (np.array(k_hat.shape) - np.array(kernel.shape)) // 2
        k_true = np.pad(kernel, [(max(p, 0), max(p, 0)) for p in pad])
        k_hat = k_hat[tuple(slice(max(-p, 0), k_hat.shape[i] - max(-p, 0))
                            for i, p in enumerate(pad))]
        results[name]["kernel_sse"] = float(((k_hat - k_true) ** 2).sum())
    if FLAGS.output:
      Path(FLAGS.output).write_text(json.dumps(
          {"kernel": {k: v for k, v in next(iter(params["params"].values())).items()},
           "runs": results}, indent=1))

  print(f"\n| x{FLAGS.scale} | Set5 PSNR / SSIM | Set14 PSNR / SSIM | wall (min) |")
  print("|---|---|---|---|")
  first = next(iter(results.values()))
  print(f"| bicubic | {first.get('bicubic_set5_psnr', float('nan')):.2f} / "
        f"{first.get('bicubic_set5_ssim', float('nan')):.4f} | "
        f"{first.get('bicubic_set14_psnr', float('nan')):.2f} / "
        f"{first.get('bicubic_set14_ssim', float('nan')):.4f} | |")
  for name, r in results.items():
    cells = [f"{r[f'{n}_psnr']:.2f} / {r[f'{n}_ssim']:.4f}" if f"{n}_psnr" in r else "-"
             for n in ("set5", "set14")]
    print(f"| {name} | {cells[0]} | {cells[1]} | {r['wall_minutes']:.1f} |")
  if all(f"selfsup_{k}" in results for k in ("bicubic", "true", "estimate")):
    for n in ("set5", "set14"):
      lo, hi, est = (results[f"selfsup_{k}"][f"{n}_psnr"] for k in ("bicubic", "true", "estimate"))
      print(f"{n}: gap recovered by the estimate {(est - lo) / (hi - lo):.0%} "
            f"({est - lo:+.2f} of {hi - lo:+.2f} dB)")


if __name__ == "__main__":
  os.environ.setdefault("PYTHONUNBUFFERED", "1")
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  app.run(main)
