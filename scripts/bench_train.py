r"""Train-step throughput of jsr against the same networks in PyTorch (scripts/torch_peers.py).

    python scripts/bench_train.py --models=edsr_baseline_x2,rcan_x4,selfsup_x2 --batch=16 \
        --patch=48 --steps=20 --dtype=float32 --torch_modes=eager,compile --output=out/bench.json
    python scripts/bench_train.py --check      # peers: equal parameter counts, outputs, losses
    python scripts/bench_train.py --check --models=srgan_x4   # only these (GAN: ~2 min each)
    python scripts/bench_train.py --models=srgan_x4 --batch=16 --patch=32 --steps=5 --warmup=2 \
        --output=docs/runs/bench_gan_cpu.json   # HR crops of 128 px: the VGG-style D's size

Models: `<family>[_<variant>]_x<scale>`: edsr_baseline_x2, edsr_baseline_x4, rcan_x4 (the paper's
variant), selfsup_x2 (variant small), srgan_x4 (SRResNet paper, with BN), esrgan_small_x4
(RRDBNet small). EDSR/RCAN train with L1 and Adam (lr 1e-4) on float32 (LR, HR) patch pairs;
selfsup runs jsr.methods.selfsup (configs/selfsup.py: L2 + 0.01 DSSIM of the re-degraded output +
the pair L2, Adamax with its cosine schedule) on uint8 LR patches, and its peer the same loss with
torch.optim.Adamax (constant lr: the schedule costs nothing per step).

GAN models run jsr.methods.gan with configs/srgan.py / configs/esrgan.py (arg `vgg19`: the
perceptual loss on VGG19 relu5_4, L2, weight 1/12.75^2, vanilla GAN 1e-3 for SRGAN; 0.01 L1 +
VGG19 conv5_4 L1 + RaGAN 5e-3 and an EMA of G for ESRGAN; Adam 1e-4 for G and D) on uint8 HR crops
of patch*scale px ({"image": (batch, P, P, 3)}; the VGG-style discriminator takes 128 px only, so
--patch=32 at x4), the LR made inside the step by MATLAB bicubic (8-bit rounded per axis pass). The
frozen VGG19 gets random He-normal weights of torchvision's shapes (ImageNet weights cannot be
downloaded; the cost is the same), the same numpy arrays on both sides, passed to jsr's step as
`frozen={"vgg": params}` as the engine does. The peer (torch_peers.GANTrainer) is BasicSR's
SRGANModel/ESRGANModel step: the same bicubic LR inside the step (two matmuls + rounding), G step
with D's requires_grad off, D step on HR and the detached SR, fused Adam for each network (on the
CPU too: 2.3x faster than foreach there), channels_last on the CPU too (8% faster there),
torch.compile of the G and D losses in compile mode. `--check` compares the first step's losses.

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

from machine_info import machine  # pylint: disable=g-import-not-at-top,unused-import

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
flags.DEFINE_enum("torch_memory_format", "auto", ["auto", "channels_last", "contiguous"],
                  "Peer tensors/weights layout; auto: channels_last on GPU and for the GAN models, "
                  "else contiguous (NCHW) on the CPU.")
flags.DEFINE_string("output", "", "Write all results to this JSON file.")
flags.DEFINE_bool("check", False, "Check the peers against jsr (params, outputs, loss) and exit.")
flags.DEFINE_bool("block_tf", True, "Make `import tensorflow` fail in the workers, as on the GPU "
                  "machines (jsr.train's clu writers would import it: +0.4 GB RSS, slower start).")
flags.DEFINE_string("worker", "", "Internal: run one measurement (jsr | torch:MODE | data).")


# ------------------------------------------------------------------------------------------------
# Models.
# ------------------------------------------------------------------------------------------------

DEFAULT_VARIANT = {"edsr": "baseline", "rcan": "paper", "selfsup": "small", "srgan": "paper",
                   "esrgan": "small"}
# GAN families: their config module and generator (jsr.models name).
GAN_FAMILIES = {"srgan": ("srgan", "srresnet"), "esrgan": ("esrgan", "rrdbnet")}


def parse_model(name: str) -> tuple[str, str, int]:
  """"edsr_baseline_x2" -> ("edsr", "baseline", 2); "rcan_x4" -> ("rcan", "paper", 4)."""
  parts = name.split("_")
  if len(parts) < 2 or not parts[-1].startswith("x") or parts[0] not in DEFAULT_VARIANT:
    raise ValueError(f"model {name!r}: expected <{'|'.join(DEFAULT_VARIANT)}>[_variant]_x<scale>")
  family = parts[0]
  variant = "_".join(parts[1:-1]) or DEFAULT_VARIANT[family]
  return family, variant, int(parts[-1][1:])


def variant_kw(family: str, variant: str) -> dict:
  if family == "selfsup":
    from jsr.models import selfsup_net
    return dict(selfsup_net.VARIANTS[variant])
  import importlib
  module = GAN_FAMILIES[family][1] if family in GAN_FAMILIES else family
  return dict(importlib.import_module(f"jsr.models.{module}").VARIANTS[variant])


def gan_config(family: str, variant: str, scale: int, dtype: str = "float32"):
  """configs/srgan.py or configs/esrgan.py with VGG19 (the papers' network), at this variant."""
  import importlib
  config = importlib.import_module(f"configs.{GAN_FAMILIES[family][0]}").get_config(
      f"scale={scale},variant={variant},vgg19")
  config.model.dtype = dtype
  return config


def gan_recipe(config) -> dict:
  """What torch_peers.GANTrainer needs of a jsr GAN config (one source for both sides)."""
  pixel = 0.0
  if config.pixel_loss:
    weight, _, name = config.pixel_loss.rpartition("*")
    if name.strip().lower() != "l1" or "," in config.pixel_loss or "+" in config.pixel_loss:
      raise ValueError(f"the torch peer knows only 'w*L1' pixel losses, not {config.pixel_loss!r}")
    pixel = float(weight or 1.0)
  taps = [t.split(":")[0] for t in config.perceptual.layers.split(",")]
  p, o = config.perceptual, config.optim_g
  if len(taps) != 1 or p.style_weight or config.gan.kind != "vanilla" or o != config.optim_d \
      or config.g_every != 1 or config.d_warmup_steps:
    raise ValueError("the torch peer knows one perceptual tap, no style term, vanilla GAN, one "
                     "optimizer config for G and D, g_every 1 and no D warm-up")
  return dict(pixel_l1=pixel, arch=p.network, tap=taps[0], criterion=p.criterion,
              percep_weight=p.weight, gan_weight=config.gan.weight,
              relativistic=config.gan.relativistic, lr=o.lr, betas=(o.b1, o.b2), eps=o.eps,
              ema=config.ema_decay)


def random_vgg(arch: str, seed: int = 0) -> dict:
  """VGG16/19 feature weights of torchvision's shapes, He-normal kernels (std sqrt(2 / fan_in):
  activations keep their scale through the 16 layers, as with the ImageNet weights; plain unit
  normals would overflow to inf) and small biases, float32 numpy in conv order. A stand-in for
  the ImageNet weights, which cannot be downloaded here: the step costs the same."""
  import numpy as np
  from jsr.models import vgg
  rng = np.random.default_rng(seed)
  out, cin = {}, 3
  for name, width in zip(vgg.conv_names(arch), [w for b in vgg.BLOCKS[arch] for w in b]):
    std = np.sqrt(2.0 / (9 * cin))
    out[name] = {"kernel": (rng.standard_normal((3, 3, cin, width)) * std).astype(np.float32),
                 "bias": (0.01 * rng.standard_normal(width)).astype(np.float32)}
    cin = width
  return out


def synthetic_batches(family: str, scale: int, batch: int, patch: int, n: int = 4, seed: int = 0):
  import numpy as np
  rng = np.random.default_rng(seed)
  if family == "selfsup":
    return [{"image": rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)}
            for _ in range(n)]
  if family in GAN_FAMILIES:  # HR crops; the step makes the LR
    hr = patch * scale
    return [{"image": rng.integers(0, 256, (batch, hr, hr, 3), dtype=np.uint8)} for _ in range(n)]
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
  if family in GAN_FAMILIES:
    from jsr.methods import gan
    return gan, gan_config(family, variant, scale, dtype)
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
  if family in GAN_FAMILIES:
    return None  # the whole step's cost is taken from its lowered HLO instead
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
  gan = family in GAN_FAMILIES
  frozen = None
  if gan:  # the engine's frozen argument: {"vgg": params}, replicated (train_and_evaluate)
    frozen = jax.device_put({"vgg": random_vgg(config.perceptual.network)},
                            mesh_lib.replicated(mesh))
    out["params"] = int(sum(np.size(x) for x in jax.tree.leaves(state.g_params)))
    out["params_d"] = int(sum(np.size(x) for x in jax.tree.leaves(state.d_params)))
    out["params_vgg"] = int(sum(np.size(x) for x in jax.tree.leaves(frozen)))
  else:
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
    if gan:
      try:  # XLA's count for the whole step (unoptimised HLO; lowering does not compile)
        cost = step.lower(state, shard(batches[0]), frozen).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out["step_flops_xla"] = float(cost["flops"])
      except Exception as e:  # noqa: BLE001
        out["step_flops_xla_error"] = repr(e)
    t0 = time.perf_counter()
    state, metrics, _ = step(state, shard(batches[0]), frozen)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t0
    for i in range(1, FLAGS.warmup):
      state, metrics, _ = step(state, shard(batches[i % len(batches)]), frozen)
    jax.block_until_ready((state, metrics))
    t0 = time.perf_counter()
    for i in range(FLAGS.steps):
      state, metrics, _ = step(state, shard(batches[i % len(batches)]), frozen)
    jax.block_until_ready((state, metrics))
    dt = (time.perf_counter() - t0) / FLAGS.steps
    out["train"] = {"step_s": dt, "patches_per_s": FLAGS.batch / dt, "first_step_s": first,
                    "compile_s": max(first - dt, 0.0), "loss": float(metrics["loss"])}
    if gan:
      out["train"]["metrics"] = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}

  if FLAGS.mode in ("infer", "both"):
    ib, ip = FLAGS.infer_batch or FLAGS.batch, FLAGS.infer_patch or FLAGS.patch
    lr = np.random.default_rng(1).random((ib, ip, ip, 3), dtype=np.float32)
    predict = engine.make_predict(method, config, mesh)
    x = jax.device_put(lr, mesh_lib.replicated(mesh))
    if gan:  # G (and its BatchNorm statistics), as jsr.predict restores it
      variables = {k: getattr(state, f) for k, f in method.inference_fields(config).items()
                   if getattr(state, f) is not None}
    else:
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
  # The GAN step on the CPU: channels_last 57.5 s/step vs NCHW 62.2 (srgan_x4, batch 16, eager,
  # 2-core AVX2 EPYC shared with another job).
  channels_last = (FLAGS.torch_memory_format == "channels_last"
                   or (FLAGS.torch_memory_format == "auto"
                       and (cuda or family in GAN_FAMILIES)))
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  torch.manual_seed(0)
  net = torch_peers.build(family, variant_kw(family, variant), scale, FLAGS.patch)
  net = net.to(device, memory_format=fmt)
  bf16 = FLAGS.dtype == "bfloat16"
  out = {"side": "torch", "mode": tmode, "platform": device.type,
         "device_kind": torch.cuda.get_device_name() if cuda else platform.processor(),
         "torch": torch.__version__, "threads": torch.get_num_threads(),
         "memory_format": "channels_last" if channels_last else "contiguous",
         "rss_after_imports": rss_imports,
         "params": torch_peers.count_params(net)}
  gan = family in GAN_FAMILIES

  if gan:
    from jsr.models import discriminators
    config = gan_config(family, variant, scale, FLAGS.dtype)
    recipe = gan_recipe(config)
    d_kw = discriminators.VARIANTS[config.discriminator.kind][config.discriminator.variant]
    d = torch_peers.VGGStyleDiscriminator(**d_kw).to(device, memory_format=fmt)
    vgg = torch_peers.VGGFeatures(recipe["arch"], recipe["tap"])
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in vgg.modules())
    torch_peers.load_flax_params(vgg, dict(list(random_vgg(recipe["arch"]).items())[:n_convs]))
    vgg = vgg.to(device, memory_format=fmt)
    trainer = torch_peers.GANTrainer(net, d, vgg, recipe, FLAGS.patch * scale, scale,
                                     compile=tmode == "compile", fused=True)
    out.update(params_d=torch_peers.count_params(d),
               params_vgg=torch_peers.vgg_param_count(recipe["arch"]), optimizer="Adam fused")
  elif family == "selfsup":
    crit = torch_peers.SelfSupLoss(scale, FLAGS.patch).to(device)
    loss_fn = lambda lr, hr: crit(net, lr)
    opt = torch.optim.Adamax(net.parameters(), lr=1e-3, foreach=True)
  else:
    loss_fn = lambda lr, hr: F.l1_loss(net(lr), hr)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if cuda else
                                                        {"foreach": True}))
  if not gan:  # (the GAN trainer compiles its own G and D losses)
    fwd = torch.compile(loss_fn) if tmode == "compile" else loss_fn
  autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

  def to_dev(b):
    if "image" in b:  # uint8 NHWC LR, converted on the device like jsr's _to_float
      x = torch.from_numpy(b["image"]).to(device, non_blocking=True).permute(0, 3, 1, 2)
      return x.float().div(255.0).contiguous(memory_format=fmt), None
    lr, hr = (torch.from_numpy(b[k]).to(device, non_blocking=True).permute(0, 3, 1, 2)
              .contiguous(memory_format=fmt) for k in ("lr", "hr"))
    return lr, hr

  last = {}

  def step(b):
    lr, hr = to_dev(b)
    if gan:  # (lr is the HR crop here: the trainer makes the LR)
      with autocast():
        last.update(trainer.step(lr))  # every term, read once after the timing
      return last["loss"]
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = fwd(lr, hr)
    loss.backward()
    opt.step()
    return loss.detach()

  sync = torch.cuda.synchronize if cuda else (lambda: None)
  batches = synthetic_batches(family, scale, FLAGS.batch, FLAGS.patch)
  lr0, hr0 = to_dev(batches[0])
  if gan:  # every forward of the step, and the step (backwards 1x or 2x their forward)
    hr = lr0  # to_dev's first output is the uint8 "image" as float: the HR crop here
    out["fwd_flops_conv"], out["train_flops_per_step"] = torch_peers.gan_flops(
        net, d, vgg, trainer.down(hr), hr, recipe["relativistic"])
  else:
    out["fwd_flops_conv"] = torch_peers.conv_flops(net, lr0)
  if family == "selfsup":  # the loss runs the net twice: on y and on the pair term's D(y)
    with torch.no_grad():
      out["fwd_flops_conv"] += torch_peers.conv_flops(net, crit.down_lr(lr0))
  if cuda:
    torch.cuda.reset_peak_memory_stats()

  if FLAGS.mode in ("train", "both"):
    net.train()
    if gan:
      d.train()
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
    if gan:  # the last step's terms (an extra no_grad call would recompile under torch.compile)
      out["train"]["metrics"] = {k: float(v) for k, v in last.items()}

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
          "data", "data_backend", "data_batches", "torch_threads", "torch_memory_format",
          "block_tf"]
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
    # GAN steps: the peer's own count (backwards of 1x or 2x their forward), not 3x the forwards.
    r["train_flops_per_step"] = (peer or {}).get("train_flops_per_step") or 3 * fwd
    r["train_tflops"] = r["train_flops_per_step"] / r["train"]["step_s"] / 1e12
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
  names = (FLAGS.models if FLAGS["models"].present else
           ["edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4", "rcan_x4", "selfsup_x2",
            "selfsup_base_x4", "srgan_x4", "esrgan_small_x4"])
  for name in names:
    family, variant, scale = parse_model(name)
    if family in GAN_FAMILIES:
      if not check_gan(name):
        failures.append(name)
      continue
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

  if not any(parse_model(n)[0] == "selfsup" for n in names):
    if failures:
      raise SystemExit(f"peer check failed: {failures}")
    print("all peers match")
    return
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


def check_gan(name: str, batch: int = 2) -> bool:
  """The GAN peer: equal parameter counts (G, D, VGG), the same LR, and the same first-step losses
  (jsr's train_step metrics vs GANTrainer.step(update=False)) from the same weights."""
  import jax
  import numpy as np
  import torch
  import torch_peers
  from jsr.methods import gan, supervised
  from jsr.models import discriminators

  family, variant, scale = parse_model(name)
  config = gan_config(family, variant, scale)
  recipe = gan_recipe(config)
  hr_size = config.data.patch_size
  images = np.random.default_rng(4).integers(0, 256, (batch, hr_size, hr_size, 3), np.uint8)
  state = gan.init(config, jax.random.key(0), {"image": images})  # op by op: creation order
  frozen = {"vgg": random_vgg(recipe["arch"])}
  g = torch_peers.build(family, variant_kw(family, variant), scale, hr_size // scale)
  d = torch_peers.VGGStyleDiscriminator(
      **discriminators.VARIANTS[config.discriminator.kind][config.discriminator.variant])
  vgg = torch_peers.VGGFeatures(recipe["arch"], recipe["tap"])
  count = lambda tree: int(sum(np.size(x) for x in jax.tree.leaves(tree)))
  counts = [(count(state.g_params), torch_peers.count_params(g)),
            (count(state.d_params), torch_peers.count_params(d)),
            (count(frozen), torch_peers.vgg_param_count(recipe["arch"]))]
  ok = all(a == b for a, b in counts)
  print(f"{name:18s} params jsr/torch G {counts[0][0]:,d}/{counts[0][1]:,d}  D {counts[1][0]:,d}/"
        f"{counts[1][1]:,d}  {recipe['arch']} {counts[2][0]:,d}/{counts[2][1]:,d}  "
        f"{'ok' if ok else 'FAIL'}")

  torch_peers.load_flax_tree(g, state.g_params)
  torch_peers.load_flax_tree(d, state.d_params)
  n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in vgg.modules())
  torch_peers.load_flax_params(vgg, dict(list(frozen["vgg"].items())[:n_convs]))
  trainer = torch_peers.GANTrainer(g, d, vgg, recipe, hr_size, scale)
  hr = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous()
  lr_jsr = np.asarray(supervised.synthesize_lr(supervised._to_float(images), config))  # pylint: disable=protected-access
  lr_err = float(np.max(np.abs(lr_jsr - trainer.down(hr).permute(0, 2, 3, 1).numpy())))
  ok &= lr_err < 1e-6
  print(f"{'':18s} bicubic LR {lr_jsr.shape} max abs diff {lr_err:.1e}")

  step = jax.jit(lambda st, b, fr: gan.train_step(st, b, jax.random.key(1), config, fr))
  _, m_jsr = step(state, {"image": images}, frozen)
  g.train(), d.train()
  m_torch = {k: float(v) for k, v in trainer.step(hr, update=False).items()}
  for k, b in m_torch.items():
    a = float(m_jsr[k])
    good = abs(a - b) <= 1e-5 + 1e-3 * abs(a)
    ok &= good
    print(f"{'':18s} {k:9s} jsr {a:+.6e} torch {b:+.6e}  {'ok' if good else 'FAIL'}")
  return ok


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
