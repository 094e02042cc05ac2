r"""SRMD on the hidden-kernel sets, non-blind (true kernel) and blind (KernelGAN's estimates) (issue 15).

The sets are those of scripts/selfsup_blind_table.py (one DIV2KRK kernel per set, direct
subsampling, root/Set5/kernel.npy the truth). SRMD is told a kernel through its PCA code; this
script scores one trained SRMD run with the kernel it is told:

  * "no blur": the delta kernel (what an SRMD user with no estimate would feed);
  * "KernelGAN per image": the kernel KernelGAN estimated on that image -- the `kernels/<set>/<image>.npy`
    files that a `configs/kernelgan.py` zero-shot run writes (--kernelgan_dir, e.g. the workdir
    of selfsup_blind_table.py's `kernelgan_zssr` row);
  * "KernelGAN set median": one kernel for the whole set, the selfsup `degradation.kernel=estimate`
    run's `kernel_estimate.npz` (--set_estimate), the median of 8 training observations' estimates;
  * "true kernel": root/<Set>/kernel.npy (non-blind).

The run must be trained for the sets' degradation (`config.srmd.downsample=direct`, noise-free for
these sets). With --steps > 0 and no checkpoint in --workdir it is trained first:

  python scripts/srmd_blind_table.py --root=/tmp/blind --workdir=/tmp/srmd_direct_x2 \
      --config="configs/srmd.py:scale=2,variant=tiny" --steps=2000 \
      --kernelgan_dir=/tmp/selfsup_blind/kernelgan_zssr_pair_x2 \
      --set_estimate=/tmp/selfsup_blind/selfsup_estimate_pair_x2/kernel_estimate.npz \
      --output=docs/runs/srmd_blind_x2.json

Scores are Y-PSNR / SSIM with a shave of `scale` (jsr.evaluate's protocol on the given pairs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("root", "/tmp/blind", "Folder of the hidden-kernel sets (root/Set5/{LR,HR,kernel.npy}).")
flags.DEFINE_list("sets", ["Set5"], "Sub-folders of --root to score.")
flags.DEFINE_string("workdir", None, "SRMD training workdir (trained first if it has no checkpoint).")
flags.DEFINE_string("config", "configs/srmd.py:scale=2,variant=tiny", "Config for training.")
flags.DEFINE_integer("steps", 0, "Training steps when --workdir has no checkpoint (0: must exist).")
flags.DEFINE_integer("batch", 16, "Training batch (HR crops).")
flags.DEFINE_integer("patch", 80, "Training HR crop size.")
flags.DEFINE_string("train", "../shared/data/train", "Folder of HR training photos.")
flags.DEFINE_list("train_overrides", [], "Extra --config.* overrides for training (key=value).")
flags.DEFINE_string("kernelgan_dir", "", "Zero-shot KernelGAN workdir holding kernels/<set>/*.npy.")
flags.DEFINE_string("set_estimate", "", "A kernel_estimate.npz (one kernel for every set).")
flags.DEFINE_string("output", "", "JSON file for the results.")


def train(workdir: str) -> float:
  cmd = [sys.executable, "-m", "jsr.main", f"--config={FLAGS.config}", f"--workdir={workdir}",
         f"--config.data.train=folder:{FLAGS.train}", "--config.data.backend=numpy",
         f"--config.data.batch_size={FLAGS.batch}", f"--config.data.patch_size={FLAGS.patch}",
         f"--config.total_steps={FLAGS.steps}", f"--config.checkpoint_every_steps={FLAGS.steps}",
         f"--config.eval_every_steps={FLAGS.steps}", "--config.log_every_steps=100",
         "--config.srmd.downsample=direct", "--config.srmd.noise_max=0.0", "--config.eval.sets=",
         *[f"--config.{kv}" for kv in FLAGS.train_overrides]]
  print(" ".join(cmd), flush=True)
  t0 = time.time()
  subprocess.run(cmd, check=True)
  return time.time() - t0


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jsr import evaluate
  from jsr import inference
  from jsr import io as jio
  from jsr.methods import srmd
  from jsr.ops import degrade as degrade_ops

  workdir = os.path.abspath(FLAGS.workdir)
  train_seconds = None
  if not (Path(workdir) / "checkpoints").exists():
    if FLAGS.steps <= 0:
      raise app.UsageError(f"{workdir} holds no checkpoint; give --steps to train one")
    train_seconds = train(workdir)
  config, method, variables, step = inference.load_variables(workdir)
  if config.method != "srmd":
    raise app.UsageError(f"{workdir} is a {config.method!r} run, not srmd")
  if config.srmd.downsample != "direct":
    print(f"warning: {workdir} was trained with downsample={config.srmd.downsample!r}; the sets "
          "are directly subsampled", flush=True)
  model = srmd.create_model(config)
  basis = srmd.load_pca(srmd.pca_path(config))
  size, s = config.srmd.kernel_size, config.scale

  @jax.jit
  def run(variables, lr, deg):
    return model.apply(variables, lr, deg, train=False).astype(jnp.float32)

  def sr_fn_for(kernel):
    code = srmd.kernel_code(srmd.fit_kernel(kernel, size), basis)[None]
    deg = srmd.degradation_vector(code, jnp.zeros((1,)), model.noise_channel)
    return lambda lr: run(variables, jnp.asarray(lr, jnp.float32), deg)

  delta = np.zeros((size, size), np.float32)
  delta[(size - 1) // 2, (size - 1) // 2] = 1.0
  set_median = np.load(FLAGS.set_estimate)["kernel"] if FLAGS.set_estimate else None
  rows = {}
  for set_dir in FLAGS.sets:
    root = Path(FLAGS.root) / set_dir
    pairs = jio.match_pairs(jio.list_images(str(root / "LR")), jio.list_images(str(root / "HR")),
                            str(root / "LR"), str(root / "HR"))
    truth = degrade_ops.load_kernel(root / "kernel.npy")
    per_image = []
    for pair in pairs:
      stem = Path(evaluate.hr_path(pair)).stem
      kernels = {"no blur": delta, "true kernel": truth}
      if set_median is not None:
        kernels["KernelGAN set median"] = set_median
      if FLAGS.kernelgan_dir:
        path = Path(FLAGS.kernelgan_dir) / "kernels" / set_dir.lower() / f"{stem}.npy"
        if not path.exists():
          raise FileNotFoundError(f"{path}: no KernelGAN estimate for {set_dir}/{stem} "
                                  f"(run configs/kernelgan.py on root/{set_dir} first)")
        kernels["KernelGAN per image"] = degrade_ops.load_kernel(path)
      row = {"image": stem}
      bic = evaluate.evaluate_images(evaluate.interpolation_fn("bicubic", s), [pair], s,
                                     log=None, metric_names=("psnr", "ssim"))["per_image"][0]
      row["bicubic"] = [bic["psnr_y"], bic["ssim_y"]]
      for name, k in kernels.items():
        r = evaluate.evaluate_images(sr_fn_for(k), [pair], s, log=None,
                                     metric_names=("psnr", "ssim"))["per_image"][0]
        row[name] = [r["psnr_y"], r["ssim_y"]]
      print(set_dir, row, flush=True)
      per_image.append(row)
    names = [k for k in per_image[0] if k != "image"]
    rows[set_dir] = {"per_image": per_image,
                     "mean": {n: [float(np.mean([r[n][i] for r in per_image])) for i in (0, 1)]
                              for n in names}}

  print(f"\n| SRMD `{Path(workdir).name}` (step {step}) x{s} | "
        + " | ".join(f"{d} PSNR / SSIM" for d in FLAGS.sets) + " |")
  print("|---|" + "---|" * len(FLAGS.sets))
  for n in rows[FLAGS.sets[0]]["mean"]:
    print(f"| {n} | " + " | ".join(f"{rows[d]['mean'][n][0]:.2f} / {rows[d]['mean'][n][1]:.4f}"
                                   for d in FLAGS.sets) + " |")
  if FLAGS.output:
    out = {"command": " ".join(sys.argv), "workdir": workdir, "step": step,
           "config": FLAGS.config, "train_seconds": train_seconds,
           "srmd": config.srmd.to_dict(), "sets": rows}
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(out, indent=1))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  os.environ.setdefault("PYTHONUNBUFFERED", "1")
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  app.run(main)
