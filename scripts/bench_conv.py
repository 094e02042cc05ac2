r"""One 3x3 convolution (EDSR's 64 -> 64 at batch 16, 48x48, float32): XLA:CPU against PyTorch.

    python scripts/bench_conv.py                       # every formulation x every XLA flag set
    python scripts/bench_conv.py --flag_sets=default,onednn --batch=2 --size=12 --iters=3  # smoke

jax formulations (each forward, and forward+backward = value_and_grad of sum(y * g) w.r.t. the
input and the kernel, what a train step runs):
  nhwc      lax.conv_general_dilated NHWC/HWIO (what flax nn.Conv emits)
  nchw      the same conv NCHW/OIHW
  im2col    the 9 shifted copies concatenated on channels, one (B*H*W, 9*Cin) @ (9*Cin, Cout) dot
  shift9    the sum of 9 (B*H*W, Cin) @ (Cin, Cout) dots over the shifted inputs
torch: NCHW and channels_last, eager, `torch.set_num_threads(--torch_threads or default)`.

Each XLA flag set runs in its own process (XLA_FLAGS is read once, at backend start); a flag this
jaxlib does not know makes that process fail, which the table shows. Only flags listed by
`strings libjax_common.so | grep ^xla_cpu_` of the installed jaxlib are used. Outputs of every
variant are compared with `nhwc` under the default flags (max relative error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 16, "Batch.")
flags.DEFINE_integer("size", 48, "Height = width.")
flags.DEFINE_integer("cin", 64, "Input channels.")
flags.DEFINE_integer("cout", 64, "Output channels.")
flags.DEFINE_integer("iters", 20, "Timed iterations (median of them is reported).")
flags.DEFINE_list("variants", ["nhwc", "nchw", "im2col", "shift9"], "jax formulations.")
flags.DEFINE_list("flag_sets", None, "Names from FLAG_SETS (default: all).")
flags.DEFINE_bool("torch", True, "Also time PyTorch.")
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: default).")
flags.DEFINE_string("output", "", "JSON file for all results.")
flags.DEFINE_string("worker", "", "Internal: 'jax' or 'torch'.")

# Candidate XLA:CPU options of jaxlib 0.10 (names checked in the library's strings).
FLAG_SETS = {
    # jaxlib 0.10.2 routes convolutions (forward and both gradients) to YNNPACK by default
    # (`__ynn_fusion` in the compiled HLO, although the flag's help calls its default list empty);
    # removing the type falls back to XLA's Eigen convolution.
    "default": "",
    "eigen_conv": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "eigen_conv_onednn": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution "
                         "--xla_cpu_use_onednn=true",
    "onednn": "--xla_cpu_use_onednn=true",  # oneDNN thunks for matmul/conv fusions
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "onednn_dot": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_conv": "--xla_cpu_use_xnnpack=true "
                "--xla_cpu_experimental_xnn_fusion_type=+individual_convolution",
    "xnn_graph": "--xla_cpu_use_xnnpack=true "
                 "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynn_conv": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "vector512": "--xla_cpu_prefer_vector_width=512",
    "legacy_runtime": "--xla_cpu_use_thunk_runtime=false",
    "one_thread": "--xla_cpu_multi_thread_eigen=false",  # diagnostic: what the 2nd core buys
}


def _median_time(fn, iters):
  fn()  # warm-up (compile)
  fn()
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2]


def run_jax() -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax import lax

  b, s, ci, co = FLAGS.batch, FLAGS.size, FLAGS.cin, FLAGS.cout
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((b, s, s, ci), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, ci, co), np.float32) / np.sqrt(9 * ci))
  g = jnp.asarray(rng.standard_normal((b, s, s, co), np.float32))

  def shifts(x):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [xp[:, i:i + s, j:j + s, :] for i in range(3) for j in range(3)]

  convs = {
      "nhwc": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC")),
      # Layout changes are part of the cost a model would pay at its boundaries only; here the
      # transposes sit outside the timed function (inputs prepared in NCHW).
      "nchw": None,
      "im2col": lambda x, w: jnp.concatenate(shifts(x), -1).reshape(-1, 9 * ci).dot(
          w.reshape(9 * ci, co)).reshape(b, s, s, co),
      "shift9": lambda x, w: sum(p.reshape(-1, ci).dot(w[i // 3, i % 3])
                                 for i, p in enumerate(shifts(x))).reshape(b, s, s, co),
  }
  out = {"jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""), "variants": {}}
  flops = 2 * b * s * s * ci * co * 9
  ref = np.asarray(convs["nhwc"](x, w))
  for name in FLAGS.variants:
    if name == "nchw":
      xn, wn, gn = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), g.transpose(0, 3, 1, 2)
      f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                dimension_numbers=("NCHW", "OIHW", "NCHW"))
      args, back = (xn, wn, gn), lambda y: np.asarray(y).transpose(0, 2, 3, 1)
    else:
      f, args, back = convs[name], (x, w, g), np.asarray
    fwd = jax.jit(f)
    train = jax.jit(jax.value_and_grad(lambda x, w, g: jnp.sum(f(x, w) * g), argnums=(0, 1)))
    err = float(np.max(np.abs(back(fwd(*args[:2])) - ref)) / np.max(np.abs(ref)))
    hlo = train.lower(*args).compile().as_text()  # which library runs the convolutions
    ops = {"ynn_fusion": hlo.count('"__ynn_fusion"'), "xnn_fusion": hlo.count('"__xnn_fusion"'),
           "convolution": hlo.count(" convolution("), "dot": hlo.count(" dot("),
           "custom_call": hlo.count("custom-call(")}
    t_f = _median_time(lambda: jax.block_until_ready(fwd(*args[:2])), FLAGS.iters)
    t_t = _median_time(lambda: jax.block_until_ready(train(*args)), FLAGS.iters)
    out["variants"][name] = {"fwd_ms": 1e3 * t_f, "fwd_gflops": flops / t_f / 1e9,
                             "train_ms": 1e3 * t_t, "train_gflops": 3 * flops / t_t / 1e9,
                             "max_rel_err": err, "train_hlo_ops": ops}
  return out


def run_torch() -> dict:
  import numpy as np
  import torch
  if FLAGS.torch_threads:
    torch.set_num_threads(FLAGS.torch_threads)
  b, s, ci, co = FLAGS.batch, FLAGS.size, FLAGS.cin, FLAGS.cout
  rng = np.random.default_rng(0)
  flops = 2 * b * s * s * ci * co * 9
  out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "variants": {}}
  for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
    conv = torch.nn.Conv2d(ci, co, 3, padding=1).to(memory_format=fmt)
    x = torch.from_numpy(rng.standard_normal((b, ci, s, s), np.float32)).contiguous(
        memory_format=fmt)
    xg = x.clone().requires_grad_(True)
    g = torch.from_numpy(rng.standard_normal((b, co, s, s), np.float32)).contiguous(
        memory_format=fmt)

    def fwd():
      with torch.no_grad():
        conv(x)

    def train():
      conv.zero_grad(set_to_none=True)
      xg.grad = None
      conv(xg).backward(g)

    t_f, t_t = _median_time(fwd, FLAGS.iters), _median_time(train, FLAGS.iters)
    out["variants"][name] = {"fwd_ms": 1e3 * t_f, "fwd_gflops": flops / t_f / 1e9,
                             "train_ms": 1e3 * t_t, "train_gflops": 3 * flops / t_t / 1e9}
  return out


def spawn(worker: str, xla_flags: str = "") -> dict:
  env = dict(os.environ)
  if xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
  argv = [sys.executable, os.path.abspath(__file__), f"--worker={worker}"] + [
      f"--{k}={FLAGS[k].value}" for k in ("batch", "size", "cin", "cout", "iters",
                                           "torch_threads")] + [
      f"--variants={','.join(FLAGS.variants)}"]
  p = subprocess.run(argv, env=env, capture_output=True, text=True)
  lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
  if p.returncode or not lines:
    err = [l for l in p.stderr.strip().splitlines() if l.strip()] or ["?"]
    return {"error": f"exit {p.returncode}: {err[-1][:200]}"}
  return json.loads(lines[-1])


def main(argv):
  del argv
  if FLAGS.worker == "jax":
    print(json.dumps(run_jax()))
    return
  if FLAGS.worker == "torch":
    print(json.dumps(run_torch()))
    return
  sets = FLAGS.flag_sets or list(FLAG_SETS)
  results = {}
  for name in sets:
    results[f"jax[{name}]"] = spawn("jax", FLAG_SETS[name])
    print(name, json.dumps(results[f"jax[{name}]"]), flush=True)
  if FLAGS.torch:
    results["torch"] = spawn("torch")
    print("torch", json.dumps(results["torch"]), flush=True)
  print(f"\nconv {FLAGS.cin}->{FLAGS.cout} 3x3, batch {FLAGS.batch}, {FLAGS.size}x{FLAGS.size}, "
        f"float32, {os.cpu_count()} CPUs; median of {FLAGS.iters}; GFLOP/s (train = fwd+bwd, 3x)")
  print(f"{'impl':34s} {'fwd ms':>8s} {'fwd GF/s':>9s} {'train ms':>9s} {'train GF/s':>10s} "
        f"{'rel err':>8s}  train HLO ops")
  for impl, r in results.items():
    if "error" in r:
      print(f"{impl:34s} ERROR {r['error']}")
      continue
    for v, m in r["variants"].items():
      print(f"{impl + ' ' + v:34s} {m['fwd_ms']:8.2f} {m['fwd_gflops']:9.1f} {m['train_ms']:9.2f} "
            f"{m['train_gflops']:10.1f} {m.get('max_rel_err', 0):8.1e}  "
            + " ".join(f"{k}={v}" for k, v in m.get("train_hlo_ops", {}).items() if v))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"flags": {k: FLAGS[k].value for k in ("batch", "size", "cin", "cout", "iters")},
                 "cpu_count": os.cpu_count(), "flag_sets": {k: FLAG_SETS[k] for k in sets},
                 "results": results}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
