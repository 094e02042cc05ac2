r"""Train-step throughput of jsr against the same networks in PyTorch (scripts/torch_peers.py).

    python scripts/bench_train.py --models=edsr_baseline_x2,rcan_x4,selfsup_x2 --batch=16 \
        --patch=48 --steps=20 --dtype=float32 --torch_modes=eager,compile --output=out/bench.json
    python scripts/bench_train.py --check      # peers: equal parameter counts, outputs, losses

Models: `<family>[_<variant>]_x<scale>`: edsr_baseline_x2, edsr_baseline_x4, rcan_x4 (the paper's
variant), selfsup_x2 (variant small). EDSR/RCAN train with L1 and Adam (lr 1e-4) on float32
(LR, HR) patch pairs; selfsup runs jsr.methods.selfsup (configs/selfsup.py: L2 + 0.01 DSSIM of the
re-degraded output + the pair L2, Adamax with its cosine schedule) on uint8 LR patches, and its
peer the same loss with torch.optim.Adamax (constant lr: the schedule costs nothing per step).

The jsr side is the engine's real path: `jsr.train.make_train_step` (jax.jit with the batch
sharded over the 1-D "data" mesh, the state replicated and donated), batches put on the devices
each step with `jsr.mesh.shard_batch` from host numpy arrays, as the training loop does. The
torch side is idiomatic PyTorch: NCHW (channels_last on GPU), `cudnn.benchmark`, fused Adam on
GPU, bf16 `torch.autocast` for --dtype=bfloat16 (jsr: the models' `dtype`, params float32),
eager and `torch.compile` of model + loss (backward through AOTAutograd). Batches are synthetic
(random numpy, a few distinct ones cycled); each (model, side) runs in its own process, so peak
memory (CPU: max RSS; GPU: jax `peak_bytes_in_use`, `torch.cuda.max_memory_allocated`) and thread
pools are its own. `--mode=infer` times forward passes and reports output megapixels/s; the input
pipeline alone (`jsr.data.benchmark`, numpy backend unless --data_backend) is measured for the
patches each step consumes (HR crops of patch*scale for EDSR/RCAN, LR patches for selfsup).

FLOPs: the torch peer counts its conv FLOPs from shapes (2 per MAC) for one forward of the loss;
jsr reports XLA's cost_analysis of the same forward. A step is taken as 3x that. MFU divides by
--peak_tflops (default 989, H100 SXM dense bf16; use ~495 for TF32 float32 runs).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # jsr, configs
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_peers

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["edsr_baseline_x2", "rcan_x4", "selfsup_x2"], "Models to time.")
flags.DEFINE_integer("batch", 16, "Global batch (LR patches per step).")
flags.DEFINE_integer("patch", 48, "LR patch size.")
flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (the first one compiles).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
flags.DEFINE_list("sides", ["jsr", "torch"], "Which implementations to time.")
flags.DEFINE_list("torch_modes", ["eager", "compile"], "eager and/or compile.")
flags.DEFINE_enum("mode", "train", ["train", "infer", "both"], "What to time.")
flags.DEFINE_integer("infer_batch", 0, "Inference batch (0: --batch).")
flags.DEFINE_integer("infer_patch", 0, "Inference LR size (0: --patch).")
flags.DEFINE_string("data", "samples:train", "data.train source for the input-pipeline figure "
                    "('' to skip).")
flags.DEFINE_string("data_backend", "numpy", "data.backend for the input-pipeline figure.")
flags.DEFINE_integer("data_batches", 50, "Batches timed for the input pipeline.")
flags.DEFINE_float("peak_tflops", 989.0, "Peak of the GPU for MFU (dense bf16; H100 SXM 989).")
flags.DEFINE_string("xla_flags", "", "Extra XLA_FLAGS for the jsr processes.")
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: torch's default).")
flags.DEFINE_string("output", "", "Write all results to this JSON file.")
flags.DEFINE_bool("check", False, "Check the peers against jsr (params, outputs, loss) and exit.")
flags.DEFINE_bool("block_tf", True, "Make `import tensorflow` fail in the workers, as on the GPU "
                  "machines (jsr.train's clu writers would import it: +0.4 GB RSS, slower start).")
flags.DEFINE_string("worker", "", "Internal: run one measurement (jsr | torch:MODE | data).")


# ------------------------------------------------------------------------------------------------
# Models.
# ------------------------------------------------------------------------------------------------

DEFAULT_VARIANT = {"edsr": "baseline", "rcan": "paper", "selfsup": "small"}


def parse_model(name: str) -> tuple[str, str, int]:
  """"edsr_baseline_x2" -> ("edsr", "baseline", 2); "rcan_x4" -> ("rcan", "paper", 4)."""
  parts = name.split("_")
  if len(parts) < 2 or not parts[-1].startswith("x") or parts[0] not in DEFAULT_VARIANT:
    raise ValueError(f"model {name!r}: expected <edsr|rcan|selfsup>[_variant]_x<scale>")
  family = parts[0]
  variant = "_".join(parts[1:-1]) or DEFAULT_VARIANT[family]
  return family, variant, int(parts[-1][1:])


def variant_kw(family: str, variant: str) -> dict:
  if family == "selfsup":
    from jsr.models import selfsup_net
    return dict(selfsup_net.VARIANTS[variant])
  import importlib
  return dict(importlib.import_module(f"jsr.models.{family}").VARIANTS[variant])


def synthetic_batches(family: str, scale: int, batch: int, patch: int, n: int = 4, seed: int = 0):
  import numpy as np
  rng = np.random.default_rng(seed)
  if family == "selfsup":
    return [{"image": rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)}
            for _ in range(n)]
  return [{"lr": rng.random((batch, patch, patch, 3), dtype=np.float32),
           "hr": rng.random((batch, patch * scale, patch * scale, 3), dtype=np.float32)}
          for _ in range(n)]


# ------------------------------------------------------------------------------------------------
# jsr side.
# ------------------------------------------------------------------------------------------------


def jsr_method_and_config(family: str, variant: str, scale: int, dtype: str):
  """(method module or namespace, config) for the engine's make_train_step."""
  import types
  import ml_collections
  if family == "selfsup":
    from configs import selfsup as selfsup_config
    from jsr.methods import selfsup
    config = selfsup_config.get_config(f"scale={scale},variant={variant}")
    config.model.dtype = dtype
    return selfsup, config

  import jax
  import jax.numpy as jnp
  from flax.training import train_state
  from jsr import losses, optim
  from jsr.models import common, get_model

  config = ml_collections.ConfigDict(dict(scale=scale, total_steps=10**6,
                                          optim=optim.default_config()))  # Adam 1e-4, constant

  def init(config, rng, batch):
    model = get_model(family, variant=variant, scale=scale, dtype=jnp.dtype(dtype))
    params = common.init_variables(model, rng, jnp.asarray(batch["lr"][:1]))["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                         tx=optim.make_optimizer(config.optim, config.total_steps))

  def train_step(state, batch, rng, config, frozen=None):
    del rng, config, frozen

    def loss_fn(params):
      return losses.l1(state.apply_fn({"params": params}, batch["lr"]), batch["hr"])

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), {"loss": loss}

  def predict(variables, lr, config):
    del config
    return get_model(family, variant=variant, scale=scale, dtype=jnp.dtype(dtype)).apply(
        variables, lr)

  return types.SimpleNamespace(init=init, train_step=train_step, predict=predict), config


def jsr_forward_loss(family, method, config, state):
  """The loss forward (params, batch) -> scalar, for cost_analysis FLOPs."""
  from jsr import losses
  if family == "selfsup":
    from jsr.methods import selfsup as m
    deg = m.make_degradation(config)
    return lambda p, b: m.loss_terms(p, state.apply_fn, m._to_float(b["image"]), config, deg)[0]
  return lambda p, b: losses.l1(state.apply_fn({"params": p}, b["lr"]), b["hr"])


def device_peak_bytes(dev) -> int | None:
  try:
    stats = dev.memory_stats()
  except Exception:  # noqa: BLE001 (CPU clients may not implement it)
    return None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def _rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_jsr(model_name: str) -> dict:
  import jax
  import numpy as np
  from jsr import mesh as mesh_lib
  from jsr import train as engine
  rss_imports = _rss()

  family, variant, scale = parse_model(model_name)
  method, config = jsr_method_and_config(family, variant, scale, FLAGS.dtype)
  mesh = mesh_lib.make_mesh()
  mesh_lib.check_batch_size(FLAGS.batch)
  rows = mesh_lib.host_rows(mesh, FLAGS.batch)
  shard = lambda b: mesh_lib.shard_batch(b, mesh, FLAGS.batch, rows)
  batches = synthetic_batches(family, scale, FLAGS.batch, FLAGS.patch)
  out = {"side": "jsr", "mode": "jit", "jax": jax.__version__, "devices": jax.device_count(),
         "rss_after_imports": rss_imports, "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "platform": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind}

  t0 = time.perf_counter()
  state = jax.device_put(method.init(config, jax.random.key(0), batches[0]),
                         mesh_lib.replicated(mesh))
  jax.block_until_ready(state)
  out["init_s"] = time.perf_counter() - t0
  out["params"] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))

  try:
    fwd = jsr_forward_loss(family, method, config, state)
    cost = jax.jit(fwd).lower(state.params, batches[0]).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out["fwd_flops_xla"] = float(cost["flops"])
  except Exception as e:  # noqa: BLE001
    out["fwd_flops_xla_error"] = repr(e)

  if FLAGS.mode in ("train", "both"):
    step = engine.make_train_step(method, config, mesh, jax.random.key(1))
    t0 = time.perf_counter()
    state, metrics, _ = step(state, shard(batches[0]), None)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t0
    for i in range(1, FLAGS.warmup):
      state, metrics, _ = step(state, shard(batches[i % len(batches)]), None)
    jax.block_until_ready((state, metrics))
    t0 = time.perf_counter()
    for i in range(FLAGS.steps):
      state, metrics, _ = step(state, shard(batches[i % len(batches)]), None)
    jax.block_until_ready((state, metrics))
    dt = (time.perf_counter() - t0) / FLAGS.steps
    out["train"] = {"step_s": dt, "patches_per_s": FLAGS.batch / dt, "first_step_s": first,
                    "compile_s": max(first - dt, 0.0), "loss": float(metrics["loss"])}

  if FLAGS.mode in ("infer", "both"):
    ib, ip = FLAGS.infer_batch or FLAGS.batch, FLAGS.infer_patch or FLAGS.patch
    lr = np.random.default_rng(1).random((ib, ip, ip, 3), dtype=np.float32)
    predict = engine.make_predict(method, config, mesh)
    x = jax.device_put(lr, mesh_lib.replicated(mesh))
    variables = {"params": state.params}
    t0 = time.perf_counter()
    jax.block_until_ready(predict(variables, x))
    first = time.perf_counter() - t0
    for _ in range(2):
      jax.block_until_ready(predict(variables, x))
    n = max(FLAGS.steps, 3)
    t0 = time.perf_counter()
    for _ in range(n):
      y = predict(variables, x)
    jax.block_until_ready(y)
    dt = (time.perf_counter() - t0) / n
    out["infer"] = {"batch": ib, "lr_size": ip, "call_s": dt, "first_call_s": first,
                    "out_mpix_per_s": ib * (ip * scale) ** 2 / dt / 1e6}
  out["device_peak_bytes"] = device_peak_bytes(jax.devices()[0])
  return out


# ------------------------------------------------------------------------------------------------
# torch side.
# ------------------------------------------------------------------------------------------------


def run_torch(model_name: str, tmode: str) -> dict:
  import torch
  import torch.nn.functional as F
  import torch_peers
  rss_imports = _rss()

  family, variant, scale = parse_model(model_name)
  cuda = torch.cuda.is_available()
  device = torch.device("cuda" if cuda else "cpu")
  if FLAGS.torch_threads:
    torch.set_num_threads(FLAGS.torch_threads)
  if cuda:
    torch.backends.cudnn.benchmark = True
  fmt = torch.channels_last if cuda else torch.contiguous_format
  torch.manual_seed(0)
  net = torch_peers.build(family, variant_kw(family, variant), scale, FLAGS.patch)
  net = net.to(device, memory_format=fmt)
  bf16 = FLAGS.dtype == "bfloat16"
  out = {"side": "torch", "mode": tmode, "platform": device.type,
         "device_kind": torch.cuda.get_device_name() if cuda else platform.processor(),
         "torch": torch.__version__, "threads": torch.get_num_threads(),
         "rss_after_imports": rss_imports,
         "params": torch_peers.count_params(net)}

  if family == "selfsup":
    crit = torch_peers.SelfSupLoss(scale, FLAGS.patch).to(device)
    loss_fn = lambda lr, hr: crit(net, lr)
    opt = torch.optim.Adamax(net.parameters(), lr=1e-3, foreach=True)
  else:
    loss_fn = lambda lr, hr: F.l1_loss(net(lr), hr)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if cuda else
                                                        {"foreach": True}))
  fwd = torch.compile(loss_fn) if tmode == "compile" else loss_fn
  autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

  def to_dev(b):
    if "image" in b:  # uint8 NHWC LR, converted on the device like jsr's _to_float
      x = torch.from_numpy(b["image"]).to(device, non_blocking=True).permute(0, 3, 1, 2)
      return x.float().div(255.0).contiguous(memory_format=fmt), None
    lr, hr = (torch.from_numpy(b[k]).to(device, non_blocking=True).permute(0, 3, 1, 2)
              .contiguous(memory_format=fmt) for k in ("lr", "hr"))
    return lr, hr

  def step(b):
    lr, hr = to_dev(b)
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = fwd(lr, hr)
    loss.backward()
    opt.step()
    return loss.detach()

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  batches = synthetic_batches(family, scale, FLAGS.batch, FLAGS.patch)
  lr0, hr0 = to_dev(batches[0])
  out["fwd_flops_conv"] = torch_peers.conv_flops(net, lr0)
  if family == "selfsup":  # the loss runs the net twice: on y and on the pair term's D(y)
    with torch.no_grad():
      out["fwd_flops_conv"] += torch_peers.conv_flops(net, crit.down_lr(lr0))
  if cuda:
    torch.cuda.reset_peak_memory_stats()

  if FLAGS.mode in ("train", "both"):
    net.train()
    t0 = time.perf_counter()
    loss = step(batches[0])
    sync()
    first = time.perf_counter() - t0
    for i in range(1, FLAGS.warmup):
      loss = step(batches[i % len(batches)])
    sync()
    t0 = time.perf_counter()
    for i in range(FLAGS.steps):
      loss = step(batches[i % len(batches)])
    sync()
    dt = (time.perf_counter() - t0) / FLAGS.steps
    out["train"] = {"step_s": dt, "patches_per_s": FLAGS.batch / dt, "first_step_s": first,
                    "compile_s": max(first - dt, 0.0), "loss": float(loss)}

  if FLAGS.mode in ("infer", "both"):
    import numpy as np
    ib, ip = FLAGS.infer_batch or FLAGS.batch, FLAGS.infer_patch or FLAGS.patch
    x = torch.from_numpy(np.random.default_rng(1).random((ib, 3, ip, ip), dtype=np.float32))
    x = x.to(device).contiguous(memory_format=fmt)
    net.eval()
    fnet = torch.compile(net) if tmode == "compile" else net
    with torch.inference_mode(), autocast():
      t0 = time.perf_counter()
      fnet(x)
      sync()
      first = time.perf_counter() - t0
      for _ in range(2):
        fnet(x)
      sync()
      n = max(FLAGS.steps, 3)
      t0 = time.perf_counter()
      for _ in range(n):
        fnet(x)
      sync()
      dt = (time.perf_counter() - t0) / n
    out["infer"] = {"batch": ib, "lr_size": ip, "call_s": dt, "first_call_s": first,
                    "out_mpix_per_s": ib * (ip * scale) ** 2 / dt / 1e6}
  out["device_peak_bytes"] = int(torch.cuda.max_memory_allocated()) if cuda else None
  return out


# ------------------------------------------------------------------------------------------------
# Input pipeline.
# ------------------------------------------------------------------------------------------------


def run_data(model_name: str) -> dict:
  import ml_collections
  from jsr import data
  family, _, scale = parse_model(model_name)
  patch = FLAGS.patch if family == "selfsup" else FLAGS.patch * scale  # what one step consumes
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=10**9,
      data=dict(train=FLAGS.data, tfds_data_dir="", patch_size=patch, batch_size=FLAGS.batch,
                augment=True, backend=FLAGS.data_backend)))
  r = data.benchmark(config, FLAGS.data_batches)
  return {"side": "data", "mode": FLAGS.data_backend, "crop": patch, **r}


# ------------------------------------------------------------------------------------------------
# The parent: one process per measurement, a table, JSON.
# ------------------------------------------------------------------------------------------------


def _worker_argv(worker: str, model: str) -> list[str]:
  keep = ["batch", "patch", "steps", "warmup", "dtype", "mode", "infer_batch", "infer_patch",
          "data", "data_backend", "data_batches", "torch_threads", "block_tf"]
  argv = [sys.executable, os.path.abspath(__file__), f"--worker={worker}", f"--models={model}"]
  return argv + [f"--{k}={FLAGS[k].value}" for k in keep]


def spawn(worker: str, model: str) -> dict:
  env = dict(os.environ)
  if worker == "jsr" and FLAGS.xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + FLAGS.xla_flags).strip()
  t0 = time.perf_counter()
  p = subprocess.run(_worker_argv(worker, model), env=env, capture_output=True, text=True)
  lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
  if p.returncode or not lines:
    sys.stderr.write(p.stderr[-4000:])
    return {"model": model, "side": worker, "error": f"exit {p.returncode}: "
            + (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
  r = json.loads(lines[-1])
  r["wall_s"] = time.perf_counter() - t0
  return r


def machine() -> dict:
  cpu = ""
  try:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "")
  except OSError:
    pass
  return {"host": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(),
          "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _fmt(v, spec=".1f"):
  return "-" if v is None else format(v, spec)


def table(results: list[dict]) -> str:
  rows = [("model", "impl", "train p/s", "jsr/this", "first step s", "peak MB",
           "infer MP/s", "TFLOP/s", "MFU%")]
  for r in results:
    if r.get("side") == "data":
      rows.append((r["model"], f"data[{r['mode']}]", _fmt(r.get("patches_per_s")), "", "", "",
                   "", "", ""))
      continue
    if "error" in r:
      rows.append((r["model"], r["side"], "ERROR", r["error"][:60], "", "", "", "", ""))
      continue
    tr, inf = r.get("train", {}), r.get("infer", {})
    jsr = next((q for q in results if q["model"] == r["model"] and q.get("side") == "jsr"
                and "train" in q), None)
    ratio = (jsr["train"]["patches_per_s"] / tr["patches_per_s"]
             if jsr and tr and r["side"] != "jsr" else None)
    mem = r.get("device_peak_bytes") or r.get("max_rss_bytes")
    rows.append((r["model"], f"{r['side']}:{r['mode']}", _fmt(tr.get("patches_per_s")),
                 _fmt(ratio, ".2f"), _fmt(tr.get("first_step_s"), ".2f"),
                 _fmt(mem and mem / 2**20, ".0f"), _fmt(inf.get("out_mpix_per_s"), ".2f"),
                 _fmt(r.get("train_tflops"), ".3f"), _fmt(r.get("mfu") and 100 * r["mfu"], ".1f")))
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)


def add_flops(results: list[dict]) -> None:
  """Train TFLOP/s (3x the loss forward's conv FLOPs) and MFU on GPUs."""
  for r in results:
    if "train" not in r:
      continue
    peer = next((q for q in results if q["model"] == r["model"] and q.get("fwd_flops_conv")), None)
    fwd = (peer or {}).get("fwd_flops_conv") or r.get("fwd_flops_xla")
    if not fwd:
      continue
    r["train_flops_per_step"] = 3 * fwd
    r["train_tflops"] = 3 * fwd / r["train"]["step_s"] / 1e12
    if r.get("platform") in ("gpu", "cuda"):
      r["mfu"] = r["train_tflops"] / FLAGS.peak_tflops


def write_output(results: list[dict]) -> None:
  if not FLAGS.output:
    return
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump({"machine": machine(), "flags": {k: FLAGS[k].value for k in (
        "models", "batch", "patch", "steps", "warmup", "dtype", "sides", "torch_modes", "mode",
        "peak_tflops", "xla_flags", "data", "data_backend")}, "results": results}, f, indent=1)


def parent() -> None:
  results = []
  for model in FLAGS.models:
    parse_model(model)
    workers = [s for s in FLAGS.sides if s == "jsr"]
    if "torch" in FLAGS.sides:
      workers += [f"torch:{m}" for m in FLAGS.torch_modes]
    if FLAGS.data:
      workers.append("data")
    for w in workers:
      r = {"model": model, **spawn(w, model)}
      results.append(r)
      print(json.dumps(r), flush=True)
      write_output(results)  # after each one: a run cut off by a time limit keeps what it did
  add_flops(results)
  write_output(results)
  print()
  print(f"batch {FLAGS.batch}, LR patch {FLAGS.patch}, {FLAGS.dtype}, {FLAGS.steps} timed steps; "
        f"'jsr/this' = jsr patches/s / this row's; peak = device bytes (GPU) or max RSS (CPU)")
  print(table(results))
  if FLAGS.output:
    print(f"wrote {FLAGS.output}")


# ------------------------------------------------------------------------------------------------
# --check: the peers are the same networks.
# ------------------------------------------------------------------------------------------------


def _perturb(tree, key, scale=0.02):
  """tree + noise, keeping the dicts' insertion order (jax.tree.map would sort the keys, and the
  peers load flax convs in creation order)."""
  import jax
  if not isinstance(tree, dict):
    return tree + scale * jax.random.normal(key, tree.shape)
  keys = jax.random.split(key, len(tree))
  return {k: _perturb(v, kk, scale) for (k, v), kk in zip(tree.items(), keys)}


def check() -> None:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import torch_peers
  from jsr.models import get_model, selfsup_net

  torch.manual_seed(0)
  failures = []
  for name in ["edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4", "rcan_x4",
               "selfsup_x2", "selfsup_base_x4"]:
    family, variant, scale = parse_model(name)
    kw = variant_kw(family, variant)
    patch = 12
    make = lambda **o: (selfsup_net.Model(variant=variant, scale=scale, **o) if family == "selfsup"
                        else get_model(family, variant=variant, scale=scale, **o))
    x = np.random.default_rng(0).random((2, patch, patch, 3), dtype=np.float32)
    shapes = jax.eval_shape(make().init, jax.random.key(0), x)["params"]
    n_jsr = int(sum(np.size(p) for p in jax.tree.leaves(shapes)))
    n_torch = torch_peers.count_params(torch_peers.build(family, kw, scale, patch))
    # Outputs: RCAN's 200 unscaled residual blocks blow activations up to ~1e8 at init, where
    # float32 summation order alone decides the digits; compare a shallower RCAN (same code).
    depth = dict(groups=2, blocks=3) if family == "rcan" else {}
    model = make(**depth)
    params = model.init(jax.random.key(0), x)["params"]  # not jitted: jit sorts dict keys
    params = _perturb(params, jax.random.key(1))  # selfsup's tail starts at zero: see all layers
    net = torch_peers.build(family, {**kw, **depth}, scale, patch)
    torch_peers.load_flax_params(net, params)
    y_jsr = np.asarray(model.apply({"params": params}, x))
    with torch.no_grad():
      y_torch = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
    err = float(np.max(np.abs(y_jsr - y_torch.numpy())) / (np.max(np.abs(y_jsr)) + 1e-12))
    ok = n_jsr == n_torch and y_jsr.shape == tuple(y_torch.shape) and err < 1e-4
    print(f"{name:18s} params jsr {n_jsr:>10,d} torch {n_torch:>10,d}  out {y_jsr.shape} vs "
          f"{tuple(y_torch.shape)}  max rel err {err:.2e}{' (groups=2, blocks=3)' if depth else ''}"
          f"  {'ok' if ok else 'FAIL'}")
    if not ok:
      failures.append(name)

  # The selfsup loss: jsr.methods.selfsup.loss_terms vs torch_peers.SelfSupLoss, same weights.
  from configs import selfsup as selfsup_config
  from jsr.methods import selfsup
  config = selfsup_config.get_config("scale=2,variant=small")
  patch = 24
  model = selfsup.create_model(config)
  img = np.random.default_rng(2).random((2, patch, patch, 3), dtype=np.float32)
  params = model.init(jax.random.key(0), img)["params"]
  params = _perturb(params, jax.random.key(3))
  l_jsr, _ = selfsup.loss_terms(params, model.apply, jnp.asarray(img), config,
                                selfsup.make_degradation(config))
  net = torch_peers.build("selfsup", variant_kw("selfsup", "small"), 2, patch)
  torch_peers.load_flax_params(net, params)
  crit = torch_peers.SelfSupLoss(2, patch, config.loss.alpha, config.loss.beta, config.loss.delta,
                                 config.loss.margin)
  with torch.no_grad():
    l_torch = float(crit(net, torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()))
  rel = abs(float(l_jsr) - l_torch) / abs(float(l_jsr))
  ok = rel < 1e-4
  print(f"selfsup loss       jsr {float(l_jsr):.6f} torch {l_torch:.6f}  rel err {rel:.1e}  "
        f"{'ok' if ok else 'FAIL'}")
  if not ok:
    failures.append("selfsup loss")
  if failures:
    raise SystemExit(f"peer check failed: {failures}")
  print("all peers match")


def main(argv):
  del argv
  if FLAGS.check:
    check()
  elif FLAGS.worker:
    model = FLAGS.models[0]
    if FLAGS.block_tf:
      sys.modules["tensorflow"] = None  # ImportError on import, which jsr handles (GPU machines)
    if FLAGS.worker == "jsr":
      r = run_jsr(model)
    elif FLAGS.worker.startswith("torch:"):
      r = run_torch(model, FLAGS.worker.split(":", 1)[1])
    elif FLAGS.worker == "data":
      r = run_data(model)
    else:
      raise ValueError(f"--worker={FLAGS.worker}")
    r["max_rss_bytes"] = _rss()
    r["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    print(json.dumps(r))
  else:
    parent()


if __name__ == "__main__":
  app.run(main)
