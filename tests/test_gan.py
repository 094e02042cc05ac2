"""The `gan` method (jsr/methods/gan.py) on configs/srgan.py and configs/esrgan.py at runlocal size.

Trains through the engine (G, D, two Adam states, the frozen VGG as a step argument), resumes,
predicts from G only, warm-starts G from a supervised SRResNet run, and checks the step's
arithmetic against the losses computed independently here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jsr import inference
from jsr import interpolate
from jsr import losses
from jsr import methods
from jsr import train
from jsr import writers
from jsr.methods import gan
from jsr.models import vgg

from test_engine import saved_leaves  # pylint: disable=g-bad-import-order  (tests/ on sys.path)

jax.config.update("jax_disable_most_optimizations", True)

ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(f"{name}_config", ROOT / f"configs/{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _photo(h, w, seed):
  """A smooth colour image with some edges (uint8)."""
  r = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  chans = [np.sin(2 * np.pi * (r.uniform(1, 3) * yy + r.uniform(1, 3) * xx) + r.uniform(0, 6))
           for _ in range(3)]
  img = 0.5 + 0.35 * np.stack(chans, -1) + 0.1 * (xx > 0.5)[..., None]
  return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("gan")
  (root / "train").mkdir()
  (root / "eval").mkdir()
  for i in range(2):
    Image.fromarray(_photo(136, 140, i)).save(root / "train" / f"t{i}.png")
  Image.fromarray(_photo(40, 44, 9)).save(root / "eval" / "e.png")
  return root


def make(name: str, dirs: Path, arg: str = "runlocal", **overrides):
  config = load_config(name, arg)
  config.data.train = f"folder:{dirs / 'train'}"
  config.data.backend = "numpy"
  config.eval.sets = f"tiny={dirs / 'eval'}"
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@pytest.fixture(scope="module")
def esrgan_run(dirs):
  config = make("esrgan", dirs)
  workdir = dirs / "esrgan"
  state = train.train_and_evaluate(config, str(workdir))
  return config, workdir, state


def test_esrgan_trains_both_networks_and_logs_every_term(esrgan_run):
  config, workdir, state = esrgan_run
  assert int(state.step) == config.total_steps
  rows = [r for r in writers.read_metrics(str(workdir)) if "train/loss" in r]
  for key in ("l_pix", "l_percep", "l_g_gan", "l_d", "d_real", "d_fake", "lr_g", "lr_d",
              "g_grad_norm", "d_grad_norm"):
    assert all(np.isfinite(r[f"train/{key}"]) for r in rows), key
  evals = {k for r in writers.read_metrics(str(workdir)) for k in r if k.startswith("eval/")}
  assert {"eval/tiny_x4/psnr_y", "eval/tiny_x4/lpips", "eval/tiny_x4/bicubic_lpips"} <= evals
  init = gan.init(config, jax.random.key(config.seed),
                  {"image": np.zeros((2, 128, 128, 3), np.uint8)})
  for field in ("g_params", "d_params", "g_ema"):
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(getattr(init, field)),
                                                   jax.tree.leaves(getattr(state, field)))]
    assert any(moved), field


def test_predict_reads_only_the_generator(esrgan_run):
  config, workdir, state = esrgan_run
  _, _, variables, _ = inference.load_variables(str(workdir))
  assert set(variables) == {"params"}  # RRDBNet has no statistics; G's EMA only.
  assert len(jax.tree.leaves(variables)) == len(jax.tree.leaves(state.g_ema))
  for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(state.g_ema)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  lr = jnp.full((1, 8, 8, 3), 0.5)
  assert gan.predict(variables, lr, config).shape == (1, 32, 32, 3)


def test_vgg_weights_are_never_checkpointed(esrgan_run):
  config, workdir, state = esrgan_run
  frozen = gan.load_frozen(config)
  assert "conv1_1" in frozen["vgg"]
  saved = saved_leaves(workdir, config.total_steps)
  assert len(saved) == len(jax.tree.leaves(state))  # The state, and nothing else ...
  assert {k.split("/")[0] for k in saved} == {
      "step", "g_params", "g_ema", "g_opt", "d_params", "d_batch_stats", "d_opt"}
  assert not [k for k in saved if "conv3_3" in k]   # ... in which no VGG layer appears,
  size = lambda shapes: sum(int(np.prod(s)) for s in shapes)
  assert size(saved.values()) < size(x.shape for x in jax.tree.leaves(frozen)) / 10  # nor its bulk.


@pytest.fixture(scope="module")
def srgan_runs(dirs):
  """SRResNet-MSE (configs/srresnet.py:runlocal, supervised) and SRGAN warm-started from it."""
  sup = load_config("srresnet", "runlocal")
  sup.data.train, sup.data.backend, sup.eval.sets = f"folder:{dirs / 'train'}", "numpy", ""
  sup.total_steps = 2
  sup_state = train.train_and_evaluate(sup, str(dirs / "srresnet"))
  config = make("srgan", dirs, init_from=str(dirs / "srresnet"))
  state = train.train_and_evaluate(config, str(dirs / "srgan"))
  return sup_state, state, config


def test_srgan_warm_starts_g_from_a_supervised_srresnet_run(dirs, srgan_runs):
  sup_state, state, config = srgan_runs
  assert int(state.step) == config.total_steps
  method = methods.load("gan")
  fresh = method.init(config, jax.random.key(3), {"image": np.zeros((2, 128, 128, 3), np.uint8)})
  warm = train.warm_start(fresh, method, config)
  for got, want in zip(jax.tree.leaves(warm.g_params), jax.tree.leaves(sup_state.params)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  for got, want in zip(jax.tree.leaves(warm.g_batch_stats), jax.tree.leaves(sup_state.batch_stats)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_network_interpolation_of_a_psnr_run_and_its_gan_fine_tune(dirs, srgan_runs, tmp_path):
  """ESRGAN's interpolation across methods: A = the supervised run, B = its GAN fine-tune."""
  sup_state, gan_state, _ = srgan_runs
  interpolate.interpolate(str(dirs / "srresnet"), str(dirs / "srgan"), 0.25, str(tmp_path / "m"))
  _, method, variables, _ = inference.load_variables(str(tmp_path / "m"))
  assert method.__name__ == "jsr.methods.supervised"
  for collection, a, b in (("params", sup_state.params, gan_state.g_params),
                           ("batch_stats", sup_state.batch_stats, gan_state.g_batch_stats)):
    for got, x, y in zip(jax.tree.leaves(variables[collection]), jax.tree.leaves(a),
                         jax.tree.leaves(b)):
      np.testing.assert_allclose(np.asarray(got), 0.75 * np.asarray(x) + 0.25 * np.asarray(y),
                                 rtol=1e-6, atol=1e-7)


# The step-level tests use PatchGAN (BatchNorm) on 32-px crops: the arithmetic is the same for
# any D, and the 128-px VGG-style D's compile is what the runs above already pay for.
SMALL_D = {"discriminator.kind": "patch", "data.patch_size": 32}


def test_step_equals_the_losses_computed_here(dirs):
  """One ESRGAN step's G and D losses from jsr.losses on the networks applied by hand."""
  config = make("esrgan", dirs, **SMALL_D)
  batch = {"image": np.stack([_photo(32, 32, 5), _photo(32, 32, 6)])}
  state = gan.init(config, jax.random.key(0), batch)
  frozen = gan.load_frozen(config)
  rng = jax.random.key(1)
  _, metrics = jax.jit(lambda s, b, f: gan.train_step(s, b, rng, config, f))(state, batch, frozen)

  hr = batch["image"].astype(np.float32) / 255.0
  lr = gan.supervised.synthesize_lr(jnp.asarray(hr), config)
  g_net, d_net = gan.create_generator(config), gan.create_discriminator(config)
  sr = g_net.apply({"params": state.g_params}, lr, train=True)
  d_vars = {"params": state.d_params, "batch_stats": state.d_batch_stats}
  apply_d = lambda x: d_net.apply(d_vars, x, train=True, mutable=["batch_stats"])[0]
  real, fake = apply_d(jnp.asarray(hr)), apply_d(sr)
  feats = lambda x: vgg.VGGFeatures(arch="vgg16").apply({"params": frozen["vgg"]}, x,
                                                        taps=("relu2_2",))
  l_pix = np.mean(np.abs(np.asarray(sr) - hr))
  l_percep = np.mean(np.abs(np.asarray(feats(sr)["relu2_2"]) - np.asarray(feats(hr)["relu2_2"])))
  l_gan = losses.generator_loss("vanilla", real, fake, relativistic=True)
  np.testing.assert_allclose(float(metrics["l_pix"]), 0.01 * l_pix, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["l_percep"]), l_percep, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["l_g_gan"]), float(l_gan), rtol=1e-4)
  want = 0.01 * l_pix + 1.0 * l_percep + 5e-3 * float(l_gan)
  np.testing.assert_allclose(float(metrics["loss"]), want, rtol=1e-4)
  l_d = losses.discriminator_loss("vanilla", real, fake, relativistic=True)
  np.testing.assert_allclose(float(metrics["l_d"]), float(l_d), rtol=1e-4)


def test_step_trains_on_a_given_lr(dirs):
  """Pairs (`batch["lr"]`): G sees the given LR, not one synthesised from the HR crop."""
  config = make("esrgan", dirs, **SMALL_D)
  hr8 = np.stack([_photo(32, 32, 5), _photo(32, 32, 6)])
  lr8 = np.stack([_photo(8, 8, 7), _photo(8, 8, 8)])  # Unrelated to the HR: a synthesised LR differs.
  batch = {"image": hr8, "lr": lr8}
  state = gan.init(config, jax.random.key(0), batch)
  frozen = gan.load_frozen(config)
  _, metrics = jax.jit(lambda s, b, f: gan.train_step(s, b, jax.random.key(1), config, f))(
      state, batch, frozen)
  sr = gan.create_generator(config).apply({"params": state.g_params},
                                          jnp.asarray(lr8, jnp.float32) / 255.0, train=True)
  l_pix = np.mean(np.abs(np.asarray(sr) - hr8 / 255.0))
  np.testing.assert_allclose(float(metrics["l_pix"]), 0.01 * l_pix, rtol=1e-4)


def test_g_waits_for_the_discriminator_warmup(dirs):
  config = make("esrgan", dirs, d_warmup_steps=2, g_every=1, **SMALL_D)
  batch = {"image": np.stack([_photo(32, 32, 5), _photo(32, 32, 6)])}
  state = gan.init(config, jax.random.key(0), batch)
  frozen = gan.load_frozen(config)
  step = jax.jit(lambda s, b, r: gan.train_step(s, b, r, config, frozen))
  updated = []
  for i in range(3):
    before = state
    state, m = step(state, batch, jax.random.key(i))
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before.g_params),
                                                    jax.tree.leaves(state.g_params)))
    updated.append((float(m["g_updated"]), not same))
  assert updated == [(0.0, False), (0.0, False), (1.0, True)]


def test_bad_settings_fail_before_compiling(dirs):
  batch = {"image": np.zeros((2, 128, 128, 3), np.uint8)}
  with pytest.raises(ValueError, match="gan.kind"):
    gan.init(make("esrgan", dirs, **{"gan.kind": "bce"}), jax.random.key(0), batch)
  with pytest.raises(ValueError, match="conv5_5"):
    gan.init(make("esrgan", dirs, **{"perceptual.layers": "conv5_5:1"}), jax.random.key(0), batch)
  with pytest.raises(ValueError, match="tap:weight"):
    gan.init(make("esrgan", dirs, **{"perceptual.layers": "conv5_3:x"}), jax.random.key(0), batch)


def test_srgan_recipes_carry_the_published_settings():
  """recipe=paper: Ledig et al. (VGG54 MSE / 12.75^2, 1e-3 GAN, no pixel term, 1e-4 -> 1e-5 at
  1e5 of 2e5); recipe=basicsr: BasicSR's train_SRGAN_x4.yml (1e-2 L1, conv5_4 L1 1.0, vanilla GAN
  5e-3, halvings at 50k/100k/200k/300k of 400k). VGG16's last conv stands in without VGG19."""
  paper = load_config("srgan", "recipe=paper,vgg19")
  assert (paper.pixel_loss, paper.perceptual.layers, paper.perceptual.criterion) == (
      "", "relu5_4:1", "l2")
  np.testing.assert_allclose(paper.perceptual.weight, 1 / 162.5625)
  assert (paper.gan.kind, paper.gan.relativistic, paper.gan.weight) == ("vanilla", False, 1e-3)
  assert (paper.total_steps, paper.optim_g.decay_steps, paper.optim_g.decay_factor) == (
      200_000, 100_000, 0.1)
  basicsr = load_config("srgan", "recipe=basicsr")
  assert (basicsr.pixel_loss, basicsr.perceptual.network, basicsr.perceptual.layers) == (
      "0.01*L1", "vgg16", "conv5_3:1")
  assert (basicsr.perceptual.criterion, basicsr.perceptual.weight) == ("l1", 1.0)
  assert (basicsr.gan.kind, basicsr.gan.relativistic, basicsr.gan.weight) == (
      "vanilla", False, 5e-3)
  for o in (basicsr.optim_g, basicsr.optim_d):
    assert (o.lr, o.b2, tuple(o.milestones), o.decay_factor) == (
        1e-4, 0.999, (50_000, 100_000, 200_000, 300_000), 0.5)
  assert load_config("srgan", "recipe=basicsr,vgg19").perceptual.layers == "conv5_4:1"
  with pytest.raises(ValueError, match="recipe='esrgan'"):
    load_config("srgan", "recipe=esrgan")


def test_two_devices_train_as_one(dirs, tmp_path):
  """The GAN step over a 2-device data mesh (one row of the batch each; D's BatchNorm statistics
  and RaGAN's means over the global batch, as jit's semantics are global) equals one device."""
  overrides = {**SMALL_D, "total_steps": 2, "eval.sets": "", "checkpoint_every_steps": 2}
  one = train.train_and_evaluate(make("esrgan", dirs, **overrides), str(tmp_path / "one"))
  flags = [f"--config.{k}={v}" for k, v in overrides.items()]
  proc = subprocess.run(
      [sys.executable, "-m", "jsr.main", "--config=configs/esrgan.py:runlocal",
       f"--workdir={tmp_path / 'two'}", f"--config.data.train=folder:{dirs / 'train'}",
       "--config.data.backend=numpy", *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = lambda w: [r for r in writers.read_metrics(str(w)) if "train/loss" in r]
  for key in ("train/loss", "train/l_d", "train/d_real"):
    np.testing.assert_allclose([r[key] for r in rows(tmp_path / "two")],
                               [r[key] for r in rows(tmp_path / "one")], rtol=1e-4, err_msg=key)
  _, _, two, _ = inference.load_variables(str(tmp_path / "two"))
  for got, want in zip(jax.tree.leaves(two["params"]), jax.tree.leaves(one.g_ema)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_warm_start_warns_when_batch_norm_statistics_meet_other_crops():
  """A BN generator warm-started on another crop size gets a warning naming both sizes; no
  warning without BN, or with the same crops."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  src = ml_collections.ConfigDict({"data": {"patch_size": 64}})
  dst = ml_collections.ConfigDict({"data": {"patch_size": 128}, "init_from": "/runs/mse"})
  with_bn = {"params": {}, "batch_stats": {}}
  msg = train.batch_norm_crop_warning(src, dst, with_bn)
  assert msg is not None and "64-px" in msg and "128-px" in msg and "/runs/mse" in msg
  assert train.batch_norm_crop_warning(src, dst, {"params": {}}) is None
  same = ml_collections.ConfigDict({"data": {"patch_size": 64}, "init_from": "/runs/mse"})
  assert train.batch_norm_crop_warning(src, same, with_bn) is None
