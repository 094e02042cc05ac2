"""Supervised SR model zoo: shapes, published parameter counts, golden references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr.models import common, get_model
from jsr.ops.resize import imresize

# Compile time dominates these tiny models; XLA's optimisation passes are not worth it here.
jax.config.update("jax_disable_most_optimizations", True)

RNG = jax.random.key(0)


def _init_apply(model, x, **kw):
  out, variables = jax.jit(lambda x: model.init_with_output(RNG, x, **kw))(x)
  return out, variables


def _count(model, channels=3, weights_only=False):
  """Parameter count from shapes alone (jax.eval_shape: no memory, no FLOPs)."""
  x = jax.ShapeDtypeStruct((1, 16, 16, channels), jnp.float32)
  variables = jax.eval_shape(model.init, RNG, x)
  leaves = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return sum(int(np.prod(leaf.shape)) for path, leaf in leaves
             if not weights_only or path[-1].key == "kernel")


def _image(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


# ----------------------------------------------------------------------------- shapes

SINGLE_OUTPUT = ["srcnn", "fsrcnn", "espcn", "vdsr", "edsr", "rcan", "srresnet", "postup"]


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("name", SINGLE_OUTPUT)
def test_shapes(name, scale):
  shape = (1, 3, 5, 3) if scale == 8 else (2, 5, 7, 3)
  x = _image(shape)
  sr, _ = _init_apply(get_model(name, variant="tiny", scale=scale), x)
  n, h, w, c = shape
  chex.assert_shape(sr, (n, h * scale, w * scale, c))
  chex.assert_type(sr, jnp.float32)
  chex.assert_tree_all_finite(sr)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", ["lapsrn", "lapres"])
def test_pyramid_shapes(name, scale):
  x = _image((1, 5, 3, 3) if scale == 8 else (2, 5, 7, 3))
  n, h, w, c = x.shape
  outs, variables = _init_apply(get_model(name, variant="tiny", scale=scale), x)
  levels = int(np.log2(scale))
  assert isinstance(outs, list) and len(outs) == levels
  for level, out in enumerate(outs):
    s = 2 ** (level + 1)
    chex.assert_shape(out, (n, h * s, w * s, c))
    chex.assert_type(out, jnp.float32)
  chex.assert_tree_all_finite(outs)
  last = get_model(name, variant="tiny", scale=scale, all_levels=False).apply(variables, x)
  np.testing.assert_allclose(last, outs[-1], atol=1e-6)


@pytest.mark.parametrize("name", ["lapsrn", "lapres"])
def test_pyramid_rejects_x3(name):
  with pytest.raises(ValueError, match="scale"):
    get_model(name, variant="tiny", scale=3).init(RNG, _image((1, 4, 4, 3)))


def test_grayscale_input():
  sr, _ = _init_apply(get_model("edsr", variant="tiny", scale=2), _image((1, 4, 6, 1)))
  chex.assert_shape(sr, (1, 8, 12, 1))


def test_bfloat16_computation_keeps_float32_params_and_output():
  x = _image((1, 6, 6, 3))
  model = get_model("rcan", variant="tiny", scale=2, dtype=jnp.bfloat16)
  sr, variables = _init_apply(model, x)
  chex.assert_type(sr, jnp.float32)
  chex.assert_trees_all_equal_dtypes(
      variables["params"], jax.tree.map(lambda p: p.astype(jnp.float32), variables["params"]))
  ref = get_model("rcan", variant="tiny", scale=2).apply(variables, x)
  np.testing.assert_allclose(sr, ref, atol=0.05)


def test_unknown_names():
  with pytest.raises(ValueError, match="variant"):
    get_model("edsr", variant="huge")
  with pytest.raises(ValueError, match="no model family"):
    get_model("not_a_model")


# ------------------------------------------------------------------- published parameter counts

# (family, variant, scale, channels, weights only, low, high): the published number's rounding.
PUBLISHED = [
    ("edsr", "baseline", 2, 3, False, 1.365e6, 1.375e6),  # EDSR paper: 1.37M
    ("edsr", "baseline", 4, 3, False, 1.515e6, 1.525e6),  # 1.52M
    ("edsr", "full", 2, 3, False, 40.65e6, 40.75e6),  # 40.7M
    ("edsr", "full", 4, 3, False, 43.05e6, 43.15e6),  # 43.1M
    ("rcan", "paper", 4, 3, False, 15.55e6, 15.65e6),  # reference code: ~15.6M at x4
    ("rcan", "paper", 2, 3, False, 15.40e6, 15.50e6),  # x2: one x2 stage less, ~15.4M
    ("srresnet", "paper", 4, 3, False, 1.45e6, 1.55e6),  # SRGAN paper: 1.5M
    ("srcnn", "9-1-5", 3, 1, True, 8032, 8032),  # SRCNN paper: 8,032 weights
    ("srcnn", "9-5-5", 3, 1, True, 57184, 57184),  # 57,184 weights
    ("fsrcnn", "paper", 3, 1, True, 12464, 12464),  # FSRCNN(56,12,4): 12,464 weights
    ("fsrcnn", "s", 3, 1, True, 3937, 3937),  # FSRCNN-s(32,5,1): 3,937 weights
    ("vdsr", "paper", 2, 1, False, 0.665e6, 0.675e6),  # VDSR: 0.67M (Y)
]


@pytest.mark.parametrize("name,variant,scale,channels,weights_only,low,high", PUBLISHED)
def test_published_param_counts(name, variant, scale, channels, weights_only, low, high):
  n = _count(get_model(name, variant=variant, scale=scale), channels, weights_only)
  assert low <= n <= high, f"{name}/{variant} x{scale}: {n:,} params, published {low:,}-{high:,}"


def test_fsrcnn_deconv_has_the_paper_deconv_parameters():
  # A 9x9 deconvolution d -> 1 has exactly 81 * d weights and one bias, whatever the scale.
  for scale in (2, 3, 4):
    variables = jax.eval_shape(get_model("fsrcnn", variant="paper", scale=scale).init, RNG,
                               jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32))
    deconv = variables["params"]["deconv"]
    assert deconv["kernel"].shape == (9, 9, 56, 1) and deconv["bias"].shape == (1,)


# ----------------------------------------------------------------------- golden references

def _np_pixel_shuffle_nchw(x, r):
  """PyTorch's PixelShuffle by definition: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w]."""
  n, crr, h, w = x.shape
  c = crr // (r * r)
  out = np.zeros((n, c, h * r, w * r), x.dtype)
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        out[:, ch, i::r, j::r] = x[:, ch * r * r + i * r + j]
  return out


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_matches_pytorch_order(r):
  x = np.random.default_rng(0).normal(size=(2, 4, 5, 2 * r * r)).astype(np.float32)
  want = _np_pixel_shuffle_nchw(x.transpose(0, 3, 1, 2), r).transpose(0, 2, 3, 1)
  got = common.pixel_shuffle(jnp.asarray(x), r)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(common.pixel_unshuffle(got, r), x)


def _np_conv_transpose(x, w, b, stride, padding):
  """PyTorch ConvTranspose2d (NHWC, kernel (k, k, in, out)) by scattering, output_padding chosen
  so the output is stride x the input."""
  n, h, wd, _ = x.shape
  k = w.shape[0]
  full = np.zeros((n, h * stride + 2 * k, wd * stride + 2 * k, w.shape[3]), np.float64)
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
          "nc,hwcd->nhwd", x[:, i, j], w)
  return full[:, padding:padding + h * stride, padding:padding + wd * stride] + b


@pytest.mark.parametrize("k,stride,padding", [(9, 2, 4), (9, 3, 4), (9, 4, 4), (9, 8, 4),
                                              (4, 2, 1)])
def test_conv_transpose_is_exact(k, stride, padding):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  module = common.ConvTranspose(2, k, stride, padding)
  variables = module.init(RNG, jnp.asarray(x))
  variables = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), variables)
  got = module.apply(variables, jnp.asarray(x))
  p = variables["params"]
  want = _np_conv_transpose(x, np.asarray(p["kernel"]), np.asarray(p["bias"]), stride, padding)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_lapsrn_image_branch_starts_bilinear():
  # Image branch init: 4x4 stride-2 deconv = bilinear x2 (align_corners=False), zero outside.
  x = _image((1, 4, 5, 3))
  module = common.ConvTranspose(3, 4, 2, 1, use_bias=False, kernel_init=common.bilinear_kernel_init)
  got = module.apply(module.init(RNG, x), x)
  xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
  # Output pixel 2q (+1) weighs input q by 3/4 and q - 1 (q + 1) by 1/4, along each axis.
  rows = np.stack([0.75 * xp[:, 1:-1] + 0.25 * xp[:, :-2], 0.75 * xp[:, 1:-1] + 0.25 * xp[:, 2:]],
                  axis=2).reshape(1, 8, 7, 3)
  want = np.stack([0.75 * rows[:, :, 1:-1] + 0.25 * rows[:, :, :-2],
                   0.75 * rows[:, :, 1:-1] + 0.25 * rows[:, :, 2:]], axis=3).reshape(1, 8, 10, 3)
  np.testing.assert_allclose(got, want, atol=1e-6)


def _set_last_conv(params, name, value):
  params = jax.tree.map(lambda p: p, params)  # a copy we may edit
  params[name] = jax.tree.map(lambda p: jnp.full_like(p, value), params[name])
  return params


@pytest.mark.parametrize("name", ["vdsr", "postup"])
def test_zero_residual_is_bicubic(name):
  x = _image((2, 5, 6, 3))
  model = get_model(name, variant="tiny", scale=3)
  params = model.init(RNG, x)["params"]
  last = max((k for k in params if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
  sr = model.apply({"params": _set_last_conv(params, last, 0.0)}, x)
  np.testing.assert_allclose(sr, imresize(x, 3), atol=1e-6)


def test_srcnn_identity_weights_give_bicubic():
  # Delta kernels make every SRCNN layer pass the image through (ReLU is the identity on a
  # positive image), so the output is the module's own input: the MATLAB-bicubic upsampling.
  x = 0.25 + 0.5 * _image((2, 5, 6, 3))
  model = get_model("srcnn", variant="tiny", scale=2)
  params = jax.tree.map(jnp.zeros_like, model.init(RNG, x)["params"])
  for name, k in (("Conv_0", 3), ("Conv_1", 1), ("Conv_2", 3)):
    kernel = np.zeros(params[name]["kernel"].shape, np.float32)
    for c in range(3):
      kernel[k // 2, k // 2, c, c] = 1.0
    params[name] = {**params[name], "kernel": jnp.asarray(kernel)}
  sr = model.apply({"params": params}, x)
  np.testing.assert_allclose(sr, imresize(x, 2), atol=1e-6)


def test_srcnn_residual_flag_with_zero_output_is_bicubic():
  x = _image((1, 4, 5, 3))
  model = get_model("srcnn", variant="tiny", scale=4, residual=True)
  params = _set_last_conv(model.init(RNG, x)["params"], "Conv_2", 0.0)
  np.testing.assert_allclose(model.apply({"params": params}, x), imresize(x, 4), atol=1e-6)


def test_edsr_mean_shift_round_trip():
  # With the tail zeroed, EDSR outputs exactly the DIV2K mean (sub_mean / add_mean cancel).
  x = _image((1, 4, 4, 3))
  model = get_model("edsr", variant="tiny", scale=2, rgb_range=255.0)
  params = _set_last_conv(model.init(RNG, x)["params"], "tail", 0.0)
  sr = model.apply({"params": params}, x)
  np.testing.assert_allclose(sr, np.broadcast_to(common.DIV2K_RGB_MEAN, sr.shape), atol=1e-6)


# -------------------------------------------------------------------------------- gradients

def test_gradient_is_finite_srresnet_train_mode():
  x, hr = _image((2, 4, 4, 3)), _image((2, 8, 8, 3), seed=1)
  model = get_model("srresnet", variant="tiny", scale=2)
  variables = model.init(RNG, x)

  def loss(params):
    sr, updates = model.apply({**variables, "params": params}, x, train=True,
                              mutable=["batch_stats"])
    return jnp.mean((sr - hr) ** 2), updates

  grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  chex.assert_tree_all_finite(grads)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  chex.assert_trees_all_equal_shapes(updates["batch_stats"], variables["batch_stats"])


def test_gradient_is_finite_lapsrn_all_levels():
  x = _image((1, 4, 4, 3))
  model = get_model("lapsrn", variant="tiny", scale=4)
  params = model.init(RNG, x)["params"]
  charbonnier = lambda o: jnp.mean(jnp.sqrt((o - 0.5) ** 2 + 1e-6))
  loss = lambda p: sum(charbonnier(o) for o in model.apply({"params": p}, x))
  grads = jax.jit(jax.grad(loss))(params)
  chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_icnr_upsampler_starts_as_conv_then_nearest_neighbour(scale):
  """ICNR (Aitken et al. 2017): at init, each stage's conv + pixel shuffle equals a conv with
  `features` outputs followed by nearest-neighbour upsampling, i.e. every r x r output block is
  constant. Reference: numpy 'SAME' correlation with the first sub-pixel kernel of each feature,
  then np.repeat along both axes."""
  feats = 3
  up = common.Upsampler(feats, scale, init_scheme="icnr")
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 5, 6, 2))
  params = up.init(jax.random.PRNGKey(1), x)
  y = np.asarray(up.apply(params, x))
  h = np.asarray(x)[0]
  for i, r in enumerate(common.scale_stages(scale)):
    p = params["params"][f"Conv_{i}"]
    w, b = np.asarray(p["kernel"]), np.asarray(p["bias"])
    # the r^2 sub-pixel kernels of every feature are one kernel (not trivially zero)
    assert np.abs(w).max() > 0
    np.testing.assert_array_equal(w.reshape(3, 3, w.shape[2], feats, r * r),
                                  np.repeat(w[..., ::r * r, None], r * r, axis=-1))
    pad = np.pad(h, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros(h.shape[:2] + (feats,))
    for dy in range(3):
      for dx in range(3):
        out += pad[dy:dy + h.shape[0], dx:dx + h.shape[1]] @ w[dy, dx, :, ::r * r]
    h = np.repeat(np.repeat(out + b[::r * r], r, axis=0), r, axis=1)
  np.testing.assert_allclose(y[0], h, atol=1e-5)
  # and the default init has no such structure: the blocks of its output are not constant
  y0 = np.asarray(common.Upsampler(feats, scale).apply(
      common.Upsampler(feats, scale).init(jax.random.PRNGKey(1), x), x))[0]
  r = common.scale_stages(scale)[-1]
  assert np.abs(y0[0::r, 0::r] - y0[r - 1::r, r - 1::r]).max() > 1e-3


def test_srresnet_icnr_variants_have_the_paper_parameter_count():
  x = jnp.zeros((1, 8, 8, 3))
  count = lambda v: sum(a.size for a in jax.tree.leaves(
      get_model("srresnet", variant=v, scale=4).init(jax.random.PRNGKey(0), x)["params"]))
  assert count("paper_icnr") == count("paper") == 1_549_462
  assert count("no_bn_icnr") == count("no_bn")
