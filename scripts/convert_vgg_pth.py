r"""Converts torchvision VGG weights (a PyTorch `.pth` pickle) to a `.npz` that jsr loads.

  python scripts/convert_vgg_pth.py --input=vgg19-dcbb9e9d.pth --output=vgg19.npz

torchvision's file (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) is a pickle, and
unpickling runs code, so jsr never opens it: this script does, once, where PyTorch is installed,
with `torch.load(..., weights_only=True)` (PyTorch's own restricted unpickler). It keeps the
`features.*` tensors as they are (OIHW kernels, torchvision's key names; `jsr.pretrained` does the
transposition), drops the classifier (a 548 MB file becomes 80 MB), and checks the result with
`jsr.pretrained.load_vgg`. Then: `load_vgg("vgg19", "vgg19.npz")`.
"""

from pathlib import Path

from absl import app, flags
import numpy as np

from jsr import pretrained
from jsr.models import vgg

flags.DEFINE_string("input", None, "torchvision VGG16/VGG19 state dict (.pth).", required=True)
flags.DEFINE_string("output", None, "The .npz to write.", required=True)
flags.DEFINE_enum("arch", "auto", ["auto", "vgg16", "vgg19"],
                  "Architecture to check against; auto: from the number of convolutions.")
FLAGS = flags.FLAGS


def convert(input_path: str, output_path: str, arch: str = "auto") -> str:
  """Writes the `features.*` arrays of `input_path` to `output_path`; returns the arch found."""
  if Path(output_path).suffix != ".npz":
    raise SystemExit(f"--output={output_path}: give a .npz path")
  import torch  # Only this script needs PyTorch; jsr does not depend on it.

  state = torch.load(input_path, map_location="cpu", weights_only=True)
  if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]
  arrays = {k: v.detach().cpu().float().numpy() for k, v in state.items()
            if k.startswith("features.") and hasattr(v, "numpy")}
  if not arrays:
    raise SystemExit(f"{input_path}: no features.* tensors; keys are {sorted(state)[:8]} ...")
  if arch == "auto":
    convs = sum(1 for k, v in arrays.items() if k.endswith(".weight") and v.ndim == 4)
    by_count = {len(vgg.conv_names(a)): a for a in vgg.BLOCKS}
    if convs not in by_count:
      raise SystemExit(f"{input_path}: {convs} convolutions; VGG16 has 13 and VGG19 16")
    arch = by_count[convs]
  Path(output_path).parent.mkdir(parents=True, exist_ok=True)
  np.savez(output_path, **arrays)
  pretrained.load_vgg(arch, output_path)  # Every layer and shape, as training will load them.
  return arch


def main(argv):
  del argv
  arch = convert(FLAGS.input, FLAGS.output, FLAGS.arch)
  print(f"wrote {FLAGS.output}: {arch} features, checked with jsr.pretrained.load_vgg")


if __name__ == "__main__":
  app.run(main)
