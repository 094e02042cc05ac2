"""ESRGAN's RRDBNet and the GAN discriminators: published parameter counts, shapes, the init scale,
the residual structure against a numpy forward written from BasicSR's definition, spectral norm.

Compiles dominate on CPU, so each test jits one function, shapes that need no values come from
`jax.eval_shape`, and random variables of `init`'s shapes stand in for an init that is not itself
under test (compiling `init` costs more than the rest of such a test).
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr.models import discriminators, get_model, rrdbnet

# Compile time dominates these tiny models; XLA's optimisation passes are not worth it here.
jax.config.update("jax_disable_most_optimizations", True)

RNG = jax.random.key(0)


def _image(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


def _shapes(model, shape, **kw):
  """The variables `model.init` would create, as shapes (no memory, no FLOPs)."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: model.init(RNG, x, **kw), x)


def _count(model, size=16, channels=3):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(
      _shapes(model, (1, size, size, channels))["params"]))


def _random_params(model, shape, seed=1, std=0.2):
  """Parameters of `model`'s shapes drawn from N(0, std^2), biases too, so that no path of the
  network is trivially zero and the residual scales matter."""
  leaves, treedef = jax.tree.flatten(_shapes(model, shape)["params"])
  rng = np.random.default_rng(seed)
  return treedef.unflatten([jnp.asarray(std * rng.normal(size=p.shape), jnp.float32)
                            for p in leaves])


def _random_variables(model, shape, seed=1):
  """Random parameters plus valid batch_stats (BatchNorm mean 0 and var 1, spectral norm's u
  random and sigma 1), without compiling `init`: on CPU that compile costs more than the test."""
  def stat(path, s):
    name = path[-1].key
    if name == "mean":
      return jnp.zeros(s.shape)
    if name == "var" or name.endswith("/sigma"):
      return jnp.ones(s.shape)
    return jax.random.normal(jax.random.key(seed), s.shape)  # spectral norm's u

  stats = jax.tree_util.tree_map_with_path(stat, _shapes(model, shape).get("batch_stats", {}))
  return {"params": _random_params(model, shape, seed, std=0.1), "batch_stats": stats}


# ------------------------------------------------------------------------- parameter counts

# (model, crop size, input channels, count and where it comes from)
COUNTS = [
    # ESRGAN / RealESRGAN_x4plus.pth, BasicSR's RRDBNet(3, 3, 64, 23, 32).
    (lambda: rrdbnet.Model(variant="paper", scale=4), 16, 3, 16_697_987),
    (lambda: rrdbnet.Model(variant="small", scale=4), 16, 3, 1_118_755),  # the stated count
    # BasicSR's VGGStyleDiscriminator(3, 64): BN weight and bias are parameters, running stats not.
    (lambda: discriminators.vgg_style("paper"), 128, 3, 14_499_401),
    # ... at 256 px: + conv5_0 (512 * 512 * 9 + BN 1024) + conv5_1 (512 * 512 * 16 + BN 1024).
    (lambda: discriminators.vgg_style("paper_256"), 256, 3, 14_499_401 + 512 * 512 * 25 + 2048),
    # BasicSR's UNetDiscriminatorSN(3, 64): weight_orig of every conv (u, v are buffers), biases of
    # conv0 and conv9 only: 3*64*9 + 64 + 16 * (64*128 + 128*256 + 256*512)
    # + 9 * (512*256 + 256*128 + 128*64 + 2 * 64*64) + 64*9 + 1.
    (lambda: discriminators.unet_sn("paper"), 64, 3, 4_376_897),
    # pix2pix's NLayerDiscriminator(6, 64, 3, BatchNorm2d) prints "2.769 M" (its conditional D).
    (lambda: discriminators.patch("paper"), 64, 6, 2_768_705),
]


@pytest.mark.parametrize("make,size,channels,want", COUNTS)
def test_param_counts(make, size, channels, want):
  assert _count(make(), size, channels) == want


def test_unet_sn_count_formula():
  f = 64
  assert (3 * f * 9 + f + 16 * (f * 2 * f + 2 * f * 4 * f + 4 * f * 8 * f)
          + 9 * (8 * f * 4 * f + 4 * f * 2 * f + 2 * f * f + 2 * f * f) + f * 9 + 1) == 4_376_897


# ------------------------------------------------------ numpy forward of BasicSR's RRDBNet

def _np_conv3x3(x, p):
  """A 3x3 convolution with zero padding 1 (PyTorch's Conv2d(k=3, padding=1)), NHWC, float64."""
  k, b = np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, w, k.shape[3]))
  for i in range(3):
    for j in range(3):
      out += xp[:, i:i + h, j:j + w] @ k[i, j]
  return out + b


def _np_lrelu(x):
  return np.where(x >= 0, x, 0.2 * x)


def _np_rdb(p, x):
  """BasicSR's ResidualDenseBlock.forward."""
  feats = [x]
  for i in range(1, 5):
    feats.append(_np_lrelu(_np_conv3x3(np.concatenate(feats, -1), p[f"conv{i}"])))
  return _np_conv3x3(np.concatenate(feats, -1), p["conv5"]) * 0.2 + x


def _np_rrdb(p, x):
  return _np_rdb(p["rdb3"], _np_rdb(p["rdb2"], _np_rdb(p["rdb1"], x))) * 0.2 + x


def _np_pixel_unshuffle(x, r):
  """PyTorch's pixel_unshuffle by definition, channel-last:
  out[h, w, c*r*r + i*r + j] = in[h*r + i, w*r + j, c]."""
  n, h, w, c = x.shape
  out = np.zeros((n, h // r, w // r, c * r * r), x.dtype)
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        out[..., ch * r * r + i * r + j] = x[:, i::r, j::r, ch]
  return out


def _np_up(x):
  return x.repeat(2, axis=1).repeat(2, axis=2)  # F.interpolate(scale_factor=2, mode='nearest')


def _np_rrdbnet(p, x, scale, blocks):
  """BasicSR's RRDBNet.forward."""
  feat = x if scale == 4 else _np_pixel_unshuffle(x, 4 // scale)
  feat = _np_conv3x3(feat, p["conv_first"])
  body = feat
  for i in range(blocks):
    body = _np_rrdb(p[f"body_{i}"], body)
  feat = feat + _np_conv3x3(body, p["conv_body"])
  feat = _np_lrelu(_np_conv3x3(_np_up(feat), p["conv_up1"]))
  feat = _np_lrelu(_np_conv3x3(_np_up(feat), p["conv_up2"]))
  return _np_conv3x3(_np_lrelu(_np_conv3x3(feat, p["conv_hr"])), p["conv_last"])


# ---------------------------------------------------------------------------------- RRDBNet

@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_shapes_and_numpy_forward(scale):
  x = _image((2, 4, 8, 3))
  model = rrdbnet.Model(variant="tiny", scale=scale, blocks=2)
  params = _random_params(model, x.shape)
  # BasicSR's x2/x1: the input is pixel-unshuffled into 4x/16x the channels of conv_first.
  assert params["conv_first"]["kernel"].shape[2] == 3 * {4: 1, 2: 4, 1: 16}[scale]
  sr = jax.jit(model.apply)({"params": params}, x)
  chex.assert_shape(sr, (2, 4 * scale, 8 * scale, 3))
  chex.assert_type(sr, jnp.float32)
  want = _np_rrdbnet(params, np.asarray(x, np.float64), scale, blocks=2)
  np.testing.assert_allclose(sr, want, rtol=1e-4, atol=1e-4)


def test_rrdb_residual_scaling():
  x = jax.random.normal(jax.random.key(2), (2, 5, 6, 8))
  block = rrdbnet.RRDB(features=8, growth=4)
  params = _random_params(block, x.shape, std=0.3)
  # An RDB whose last conv is zero is the identity, whatever its other convs do.
  rdb_params = {**params["rdb1"], "conv5": jax.tree.map(jnp.zeros_like, params["rdb1"]["conv5"])}
  rdb = rrdbnet.ResidualDenseBlock(features=8, growth=4)
  got, identity = jax.jit(lambda p, q, x: (block.apply({"params": p}, x),
                                           rdb.apply({"params": q}, x)))(params, rdb_params, x)
  np.testing.assert_allclose(got, _np_rrdb(params, np.asarray(x, np.float64)), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(identity, x, atol=1e-6)


def test_rrdbnet_bfloat16_keeps_float32_output():
  x = _image((1, 4, 6, 3))
  model = rrdbnet.Model(variant="tiny", scale=2, dtype=jnp.bfloat16)
  params = _random_params(model, x.shape, std=0.1)
  sr = jax.jit(model.apply)({"params": params}, x)
  chex.assert_type(sr, jnp.float32)
  np.testing.assert_allclose(sr, _np_rrdbnet(params, np.asarray(x, np.float64), 2, blocks=1),
                             atol=0.05)


def test_rrdbnet_rejects_bad_scale_and_size():
  with pytest.raises(ValueError, match="scale 1, 2 or 4"):
    _shapes(rrdbnet.Model(variant="tiny", scale=3), (1, 4, 4, 3))
  with pytest.raises(ValueError, match="divisible by 2"):
    _shapes(rrdbnet.Model(variant="tiny", scale=2), (1, 5, 4, 3))
  assert isinstance(get_model("rrdbnet", variant="tiny", scale=4), rrdbnet.RRDBNet)


def test_rrdbnet_init_scale_paper_size():
  # The paper's widths (64 features, growth 32) with one RRDB: more blocks only repeat its shapes.
  model = rrdbnet.Model(variant="paper", blocks=1)
  params = jax.jit(model.init)(RNG, jnp.zeros((1, 1, 1, 3)))["params"]
  rdb_convs = [conv for rdb in params["body_0"].values() for conv in rdb.values()]
  assert len(rdb_convs) == 15
  for conv in rdb_convs:
    k = np.asarray(conv["kernel"])
    want = 0.1 * np.sqrt(2.0 / np.prod(k.shape[:3]))  # BasicSR: kaiming_normal_ (fan_in) * 0.1
    assert abs(k.std() / want - 1) < 0.05, (k.shape, k.std(), want)
    assert abs(k.mean()) < 0.05 * want
    np.testing.assert_array_equal(conv["bias"], 0.0)
  # The convs outside the RDBs keep PyTorch's default: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in).
  for name in ("conv_first", "conv_body", "conv_up1", "conv_last"):
    k = np.asarray(params[name]["kernel"])
    want = 1 / np.sqrt(3 * np.prod(k.shape[:3]))
    assert abs(k.std() / want - 1) < 0.1, (name, k.std(), want)


# ---------------------------------------------------------------------------- discriminators

# (kind, input shape, logits shape)
DISCRIMINATORS = [
    ("vgg_style", (2, 128, 128, 3), (2, 1)),
    ("unet_sn", (2, 16, 24, 3), (2, 16, 24, 1)),
    # Three stride-2 4x4 convs (/8), then two stride-1 4x4 convs with padding 1 (-1 each).
    ("patch", (2, 32, 48, 3), (2, 2, 4, 1)),
]


@pytest.mark.parametrize("kind,shape,logits_shape", DISCRIMINATORS)
def test_discriminator_train_step(kind, shape, logits_shape):
  model = discriminators.Model(kind=kind, variant="tiny")
  x = _image(shape)

  variables = _random_variables(model, shape)  # init itself is compiled in the SN test

  @jax.jit
  def step(variables, x):
    def loss(params):
      logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])
      return jnp.mean(nn.softplus(-logits)), (logits, updates)

    grads, (logits, updates) = jax.grad(loss, has_aux=True)(variables["params"])
    return logits, updates, grads

  logits, updates, grads = step(variables, x)
  chex.assert_shape(logits, logits_shape)
  chex.assert_type(logits, jnp.float32)
  chex.assert_tree_all_finite((logits, grads))
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  # Train mode updates the batch_stats: BatchNorm's running statistics, spectral norm's u, sigma.
  chex.assert_trees_all_equal_shapes(updates["batch_stats"], variables["batch_stats"])
  for (path, new), old in zip(jax.tree_util.tree_flatten_with_path(updates["batch_stats"])[0],
                              jax.tree.leaves(variables["batch_stats"])):
    assert not np.allclose(new, old), jax.tree_util.keystr(path)
  # Eval mode has the same shapes, and nothing to update.
  chex.assert_shape(jax.eval_shape(lambda x: model.apply(variables, x), x), logits_shape)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_patch_norms(norm):
  model = discriminators.patch("tiny", norm=norm)
  x = jax.ShapeDtypeStruct((2, 32, 48, 3), jnp.float32)
  variables = _shapes(model, x.shape)
  chex.assert_shape(jax.eval_shape(model.apply, variables, x), (2, 2, 4, 1))
  # pix2pix: no bias before BatchNorm; InstanceNorm has no affine parameters.
  assert ("bias" in variables["params"]["conv1"]) == (norm != "batch")
  assert ("batch_stats" in variables) == (norm == "batch")


def test_vgg_style_refuses_other_sizes():
  model = discriminators.vgg_style("tiny")
  with pytest.raises(ValueError, match=r"expects 128x128 crops.*got 96x96"):
    _shapes(model, (1, 96, 96, 3))
  with pytest.raises(ValueError, match="use input_size=256"):
    _shapes(model, (1, 256, 256, 3))
  with pytest.raises(ValueError, match="input_size must be 128 or 256"):
    _shapes(discriminators.vgg_style("tiny", input_size=192), (1, 192, 192, 3))
  chex.assert_shape(jax.eval_shape(
      lambda x: discriminators.vgg_style("tiny", input_size=256).init_with_output(RNG, x)[0],
      jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)), (1, 1))


def test_unet_sn_rejects_sizes_not_divisible_by_8():
  with pytest.raises(ValueError, match="divisible by 8"):
    _shapes(discriminators.unet_sn("tiny"), (1, 12, 16, 3))


def test_model_factory_by_kind():
  model = get_model("discriminators", kind="unet_sn", variant="tiny")
  assert isinstance(model, discriminators.UNetDiscriminatorSN) and model.features == 8
  with pytest.raises(ValueError, match="unknown discriminator kind"):
    discriminators.Model(kind="stylegan")


# ------------------------------------------------------------------------- U-Net pieces

def _np_bilinear_2x(x):
  """PyTorch's bilinear, align_corners=False, by definition: output i samples the input at
  (i + 0.5) / 2 - 0.5, clamped at 0, interpolating its two neighbours (the last one repeated)."""
  for axis in (1, 2):
    n = x.shape[axis]
    src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(4)])
    x = (1 - lam) * np.take(x, i0, axis) + lam * np.take(x, i1, axis)
  return x


def test_bilinear_2x_matches_pytorch_definition():
  x = _image((2, 3, 5, 4))
  np.testing.assert_allclose(jax.jit(discriminators.upsample_bilinear_2x)(x),
                             _np_bilinear_2x(np.asarray(x)), atol=1e-6)


def test_spectral_norm_normalises():
  x = _image((2, 16, 16, 3))
  model = discriminators.unet_sn("tiny")

  @jax.jit
  def run(x):
    variables = model.init(RNG, x)

    def step(_, stats):  # one power iteration per train-mode call, as torch's spectral_norm
      _, updates = model.apply({**variables, "batch_stats": stats}, x, train=True,
                               mutable=["batch_stats"])
      return updates["batch_stats"]

    stats = jax.lax.fori_loop(0, 100, step, variables["batch_stats"])
    # One more train-mode call, recording what each conv was given and computed.
    seen = {}

    def record(f, args, kwargs, context):
      out = f(*args, **kwargs)
      if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
        seen[context.module.name] = (args[0], out)
      return out

    with nn.intercept_methods(record):
      _, updates = model.apply({**variables, "batch_stats": stats}, x, train=True,
                               mutable=["batch_stats"])
    return variables["params"], updates["batch_stats"], seen

  params, stats, seen = run(x)
  assert sorted(stats) == [f"conv{i}_sn" for i in range(1, 9)]  # not conv0, conv9
  for i in range(1, 9):
    name = f"conv{i}"
    kernel = np.asarray(params[name]["kernel"], np.float64)
    sigma = float(stats[f"{name}_sn"][f"{name}/kernel/sigma"])
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    # The conv computed with kernel / sigma ...
    inp, out = seen[name]
    stride = 2 if kernel.shape[0] == 4 else 1
    want = jax.lax.conv_general_dilated(
        inp, jnp.asarray(kernel / sigma, jnp.float32), (stride, stride), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # ... whose largest singular value, after the power iterations, is 1.
    np.testing.assert_allclose(top / sigma, 1.0, rtol=2e-3, err_msg=name)


def test_spectral_norm_makes_the_output_invariant_to_kernel_scale():
  x = _image((1, 16, 16, 3))
  model = discriminators.unet_sn("tiny")
  variables = _random_variables(model, x.shape)
  params = variables["params"]
  apply = jax.jit(lambda p, x: model.apply({**variables, "params": p}, x))
  sn_scaled = {**params, **{f"conv{i}": {"kernel": 10.0 * params[f"conv{i}"]["kernel"]}
                            for i in range(1, 9)}}
  first_scaled = {**params, "conv0": jax.tree.map(lambda p: 10.0 * p, params["conv0"])}
  y, y_sn_scaled, y_first_scaled = (apply(p, x) for p in (params, sn_scaled, first_scaled))
  np.testing.assert_allclose(y_sn_scaled, y, rtol=1e-4, atol=1e-6)
  # conv0 is not normalised: scaling it changes the logits.
  assert not np.allclose(y_first_scaled, y, atol=1e-4)
