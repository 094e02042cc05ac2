r"""Real-ESRGAN degradation pipeline throughput: jsr (jit, on the device) against BasicSR's own.

    python scripts/bench_degrade.py --output=docs/runs/bench_degrade_cpu.json
    python scripts/bench_degrade.py --only=peer    # the peers alone (no jsr.ops.realworld needed)

Degrades batches of 16 HR crops of 256 px (cut from the photos of --data, uint8 -> float32 [0, 1]
before any timer starts) to x4 LR with the options of Real-ESRGAN x4plus
(train_realesrgan_x4plus.yml), and returns the USM-sharpened GT too. Rows, crops/s each:

  jsr            `realworld.degrade` under `jax.jit`, one call per batch, a new key per batch
                 (fold_in); compile time reported apart.
  numpy          BasicSR as a data loader runs it without a GPU-side pipeline: per image, in this
                 process (torch on one thread, as in a DataLoader worker), the kernels of RealESRGANDataset (`random_mixed_kernels`,
                 `circular_lowpass_kernel`), `usm_sharp`, `cv2.filter2D`, `cv2.resize`
                 (area/bilinear/bicubic), the numpy `random_add_gaussian_noise` /
                 `random_add_poisson_noise`, and BasicSR's `DiffJPEG` (torch,
                 differentiable=False) on each image: the first resize gives every image its own
                 size, so the JPEG cannot be batched.
  numpy_cv2jpeg  the same with OpenCV's JPEG (`add_jpg_compression`, libjpeg), the fastest CPU
                 JPEG a per-image pipeline has.
  numpy_pool     `numpy` spread over --workers processes (a DataLoader's workers; torch threads 1
                 in each, as DataLoader sets them).
  torch          what Real-ESRGAN itself runs: RealESRGANModel.feed_data on the batch (USMSharp,
                 `filter2D`, `F.interpolate`, `random_add_*_pt`, DiffJPEG), here on the CPU, plus
                 the dataset's per-image kernels.

Every peer row includes making its kernels (numpy, per image, as the dataset does); `kernels_ms`
says how much of a batch that is, and the torch row's `usm_ms` how much USMSharp is. After
--warmup batches per row, --reps rounds each time --batches batches of every row in turn (the same
crops for every row; interleaved so that other work on a shared machine slows all rows alike);
crops/s is mean +- std over the rounds. BasicSR is not installed: its module files are
loaded from the unpacked 1.4.2 source (--basicsr), with a shim for torchvision's removed
`functional_tensor.rgb_to_grayscale`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import multiprocessing
import os
from pathlib import Path
import random
import subprocess
import sys
import time
import types

from absl import app, flags
import numpy as np
from PIL import Image

try:
  import cv2
except ImportError:  # The GPU machines have no OpenCV: --only=jsr needs none.
  cv2 = None

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine_info import machine  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/train", "Folder of HR photos (searched recursively).")
flags.DEFINE_string("basicsr", "", "Unpacked BasicSR 1.4.2 source (the folder holding basicsr/); "
                    "empty: ../basicsr-1.4.2, then /work/basicsr/basicsr-1.4.2.")
flags.DEFINE_enum("only", "", ["", "peer", "jsr"], "Time only the peers or only jsr.")
flags.DEFINE_list("peers", ["numpy", "numpy_cv2jpeg", "numpy_pool", "torch"], "Peer rows.")
flags.DEFINE_integer("batch_size", 16, "Crops per batch.")
flags.DEFINE_integer("crop", 256, "HR crop size.")
flags.DEFINE_integer("scale", 4, "Scale factor.")
flags.DEFINE_integer("reps", 5, "Timed repetitions.")
flags.DEFINE_integer("batches", 2, "Batches per repetition.")
flags.DEFINE_integer("warmup", 1, "Untimed batches before the repetitions.")
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: the core count).")
flags.DEFINE_integer("per_image_torch_threads", 1, "torch threads while the in-process numpy "
                     "rows run DiffJPEG on one image (0: --torch_threads).")
flags.DEFINE_integer("workers", 0, "numpy_pool processes (0: the core count).")
flags.DEFINE_integer("seed", 0, "Seed of the crops and of every pipeline's randomness.")
flags.DEFINE_string("output", "", "JSON file.")

ROOT = Path(__file__).resolve().parents[1]
BASICSR_CANDIDATES = ("../basicsr-1.4.2", "/work/basicsr/basicsr-1.4.2")
PIP_HINT = ("pip download --no-deps basicsr==1.4.2 && tar xzf basicsr-1.4.2.tar.gz, then pass "
            "--basicsr=PATH/basicsr-1.4.2")

# Real-ESRGAN x4plus (options/train_realesrgan_x4plus.yml): the dataset's kernel options and the
# model's feed_data options.
OPT = dict(
    blur_kernel_size=21,
    kernel_list=["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                 "plateau_aniso"],
    kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    sinc_prob=0.1, blur_sigma=[0.2, 3], betag_range=[0.5, 4], betap_range=[1, 2],
    blur_kernel_size2=21,
    kernel_list2=["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                  "plateau_aniso"],
    kernel_prob2=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    sinc_prob2=0.1, blur_sigma2=[0.2, 1.5], betag_range2=[0.5, 4], betap_range2=[1, 2],
    final_sinc_prob=0.8,
    resize_prob=[0.2, 0.7, 0.1], resize_range=[0.15, 1.5],
    gaussian_noise_prob=0.5, noise_range=[1, 30], poisson_scale_range=[0.05, 3],
    gray_noise_prob=0.4, jpeg_range=[30, 95],
    second_blur_prob=0.8,
    resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.3, 1.2],
    gaussian_noise_prob2=0.5, noise_range2=[1, 25], poisson_scale_range2=[0.05, 2.5],
    gray_noise_prob2=0.4, jpeg_range2=[30, 95],
    scale=4, gt_size=256)

# RealESRGANDataset: odd kernel sizes 7..21 (hard-coded there), padded to 21.
KERNEL_RANGE = [2 * v + 1 for v in range(3, 11)]
INTERP = ({"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
          if cv2 is not None else {})

# The BasicSR modules, loaded by load_basicsr (in this process and in each pool worker).
_B = types.SimpleNamespace(deg=None, dj=None, ipu=None, jpeger=None, shims=[])


# --------------------------------------------------------------------------------------------
# BasicSR from its unpacked source, without its package __init__ (the whole training framework).
# --------------------------------------------------------------------------------------------


def find_basicsr(path: str) -> Path:
  tried = [path] if path else list(BASICSR_CANDIDATES)
  for p in tried:
    if (Path(p) / "basicsr" / "data" / "degradations.py").is_file():
      return Path(p).resolve()
  raise app.UsageError(f"BasicSR 1.4.2 source not found (tried {', '.join(tried)}). Get it with: "
                       + PIP_HINT)


def _rgb_to_grayscale(img, num_output_channels: int = 1):
  """torchvision.transforms.functional_tensor.rgb_to_grayscale (ITU-R 601-2 luma), keepdim."""
  r, g, b = img.unbind(dim=-3)
  gray = (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(dim=-3)
  return gray.expand(img.shape) if num_output_channels == 3 else gray


def _load_file(name: str, path: Path) -> types.ModuleType:
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_basicsr(path: str) -> None:
  """Loads degradations.py, diffjpeg.py and img_process_util.py into _B."""
  if _B.deg is not None:
    return
  root = Path(path) / "basicsr"
  # degradations.py imports rgb_to_grayscale from torchvision's functional_tensor, which recent
  # torchvision removed (and torchvision is not installed here). The fake modules live in
  # sys.modules only while that file executes: left there, they would make `import torchvision`
  # elsewhere (torch's own optional checks) find an empty package.
  fake = {}
  try:
    from torchvision.transforms.functional_tensor import rgb_to_grayscale  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    ft = types.ModuleType("torchvision.transforms.functional_tensor")
    ft.rgb_to_grayscale = _rgb_to_grayscale
    tr = types.ModuleType("torchvision.transforms")
    tr.functional_tensor = ft
    tv = types.ModuleType("torchvision")
    tv.transforms = tr
    fake = {"torchvision": tv, "torchvision.transforms": tr,
            "torchvision.transforms.functional_tensor": ft}
    _B.shims = ["torchvision.transforms.functional_tensor.rgb_to_grayscale"]
  saved = {k: sys.modules[k] for k in fake if k in sys.modules}
  sys.modules.update(fake)
  try:
    _B.deg = _load_file("basicsr_degradations", root / "data" / "degradations.py")
  finally:
    for k in fake:
      sys.modules.pop(k, None)
    sys.modules.update(saved)
  _B.dj = _load_file("basicsr_diffjpeg", root / "utils" / "diffjpeg.py")
  _B.ipu = _load_file("basicsr_img_process_util", root / "utils" / "img_process_util.py")
  _B.jpeger = _B.dj.DiffJPEG(differentiable=False)


# --------------------------------------------------------------------------------------------
# The peers.
# --------------------------------------------------------------------------------------------


def _kernel(opt: dict, sfx: str) -> np.ndarray:
  """One blur kernel as RealESRGANDataset.__getitem__ draws it (unpadded, 7..21 px)."""
  size = random.choice(KERNEL_RANGE)
  if np.random.uniform() < opt["sinc_prob" + sfx]:
    omega_c = np.random.uniform(np.pi / 3 if size < 13 else np.pi / 5, np.pi)
    return _B.deg.circular_lowpass_kernel(omega_c, size, pad_to=False)
  sigma = opt["blur_sigma" + sfx]
  return _B.deg.random_mixed_kernels(
      opt["kernel_list" + sfx], opt["kernel_prob" + sfx], size, sigma, sigma,
      [-math.pi, math.pi], opt["betag_range" + sfx], opt["betap_range" + sfx], noise_range=None)


def make_kernels(opt: dict):
  """(kernel1, kernel2, sinc or None): None is the dataset's 21x21 pulse (no final sinc)."""
  k1, k2 = _kernel(opt, ""), _kernel(opt, "2")
  sinc = None
  if np.random.uniform() < opt["final_sinc_prob"]:
    size = random.choice(KERNEL_RANGE)
    sinc = _B.deg.circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), size, pad_to=0)
  return k1, k2, sinc


def _pad21(k):
  if k is None:
    k = np.zeros((21, 21))
    k[10, 10] = 1
  p = (21 - k.shape[0]) // 2
  return np.pad(k, ((p, p), (p, p)))


def _resize_factor(opt: dict, sfx: str) -> float:
  updown = random.choices(["up", "down", "keep"], opt["resize_prob" + sfx])[0]
  lo, hi = opt["resize_range" + sfx]
  return {"up": lambda: np.random.uniform(1, hi), "down": lambda: np.random.uniform(lo, 1),
          "keep": lambda: 1.0}[updown]()


def _noise_np(img: np.ndarray, opt: dict, sfx: str) -> np.ndarray:
  gray = opt["gray_noise_prob" + sfx]
  if np.random.uniform() < opt["gaussian_noise_prob" + sfx]:
    return _B.deg.random_add_gaussian_noise(img, sigma_range=opt["noise_range" + sfx],
                                            clip=True, rounds=False, gray_prob=gray)
  return _B.deg.random_add_poisson_noise(img, scale_range=opt["poisson_scale_range" + sfx],
                                         gray_prob=gray, clip=True, rounds=False)


def _jpeg_np(img: np.ndarray, quality: float, jpeg: str) -> np.ndarray:
  """JPEG of one BGR float32 image: BasicSR's DiffJPEG on a batch of one, or OpenCV's."""
  img = np.clip(img, 0, 1)  # feed_data clamps first: JPEG of out-of-range values rings.
  if jpeg == "cv2":
    return _B.deg.add_jpg_compression(img, int(quality))
  import torch  # pylint: disable=g-import-not-at-top
  x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))[None]
  with torch.no_grad():
    y = _B.jpeger(x, quality=x.new_tensor([quality]))
  return np.ascontiguousarray(y[0].numpy().transpose(1, 2, 0)[..., ::-1])


def degrade_one(img: np.ndarray, opt: dict = OPT, jpeg: str = "diffjpeg"):
  """One RGB float32 crop -> (lq, gt_usm), every random choice drawn for this image alone.

  feed_data's order, per image: the kernels; USM of the GT, which is what gets degraded; blur,
  resize, noise, JPEG; [blur], resize, noise; then [resize to the LR size + sinc] and JPEG in a
  random order; round to 8 bits. BasicSR's numpy functions take OpenCV's BGR order (the poisson
  gray noise converts with COLOR_BGR2GRAY), so the crop is flipped in and out.
  """
  k1, k2, sinc = make_kernels(opt)
  scale = opt["scale"]
  h, w = img.shape[:2]
  gt_usm = _B.ipu.usm_sharp(np.ascontiguousarray(img[..., ::-1]))
  # cv2.filter2D's default border, BORDER_REFLECT_101, is the reflect padding of BasicSR's torch
  # filter2D. Kernels stay unpadded: a per-image pipeline has no batch to pad them to 21 for.
  out = cv2.filter2D(gt_usm, -1, k1)
  s = _resize_factor(opt, "")
  # int(h * s): the size F.interpolate(scale_factor=s) gives.
  out = cv2.resize(out, (int(w * s), int(h * s)), interpolation=INTERP[random.choice(list(INTERP))])
  out = _noise_np(out, opt, "")
  out = _jpeg_np(out, np.random.uniform(*opt["jpeg_range"]), jpeg)
  if np.random.uniform() < opt["second_blur_prob"]:
    out = cv2.filter2D(out, -1, k2)
  s = _resize_factor(opt, "2")
  out = cv2.resize(out, (int(w / scale * s), int(h / scale * s)),
                   interpolation=INTERP[random.choice(list(INTERP))])
  out = _noise_np(out, opt, "2")

  def resize_sinc(x):
    x = cv2.resize(x, (w // scale, h // scale), interpolation=INTERP[random.choice(list(INTERP))])
    # The pulse is the identity: a per-image pipeline skips it.
    return x if sinc is None else cv2.filter2D(x, -1, sinc)

  if np.random.uniform() < 0.5:
    out = _jpeg_np(resize_sinc(out), np.random.uniform(*opt["jpeg_range2"]), jpeg)
  else:
    out = resize_sinc(_jpeg_np(out, np.random.uniform(*opt["jpeg_range2"]), jpeg))
  lq = np.clip((out * 255.0).round(), 0, 255) / 255.0
  return (np.ascontiguousarray(lq[..., ::-1], dtype=np.float32),
          np.ascontiguousarray(gt_usm[..., ::-1]))


def _degrade_one_diffjpeg(img):
  return degrade_one(img, OPT, "diffjpeg")


def _init_worker(basicsr: str, seed: int) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)  # What torch's DataLoader sets in its workers.
  load_basicsr(basicsr)
  random.seed(seed + os.getpid())
  np.random.seed((seed + os.getpid()) % 2**32)
  torch.manual_seed(seed + os.getpid())


def numpy_batch(batch: np.ndarray, jpeg: str, pool=None):
  """The per-image pipeline over a batch, collated into (B, h, w, 3) arrays."""
  if pool is None:
    outs = [degrade_one(img, OPT, jpeg) for img in batch]
  else:
    outs = pool.map(_degrade_one_diffjpeg, list(batch), chunksize=max(1, len(batch) // 8))
  return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


class TorchPeer:
  """RealESRGANModel.feed_data's synthesis on a batch (its @torch.no_grad, CPU tensors).

  Per batch there: the resize direction/factor/mode of both stages, Gaussian vs Poisson noise of
  both stages, whether the second blur runs, the final order and its resize mode. Per sample:
  the kernels, noise sigma/scale and gray-or-colour, JPEG quality. The paired random crop is a
  no-op at gt_size = crop = 256 and the training-pair pool is not degradation, so both are left
  out; the USM of the GT, which feed_data degrades, is kept (once).
  """

  def __init__(self, opt: dict = OPT):
    self.opt = opt
    self.usm_sharpener = _B.ipu.USMSharp()
    self.jpeger = _B.dj.DiffJPEG(differentiable=False)

  def __call__(self, batch: np.ndarray):
    import torch  # pylint: disable=g-import-not-at-top
    from torch.nn import functional as F  # pylint: disable=g-import-not-at-top
    deg, opt = _B.deg, self.opt

    def filter2d(x, k):
      # DiffJPEG returns a cropped view; on CUDA F.pad makes it contiguous again, on the CPU the
      # reflect pad keeps the strides and filter2D's .view() fails. One copy, as on the GPU.
      return _B.ipu.filter2D(x.contiguous(), k)

    # The dataset's __getitem__, per image: kernels (padded to 21, the pulse for no sinc).
    ks = [make_kernels(opt) for _ in range(len(batch))]
    kernel1 = torch.FloatTensor(np.stack([_pad21(k[0]) for k in ks]))
    kernel2 = torch.FloatTensor(np.stack([_pad21(k[1]) for k in ks]))
    sinc_kernel = torch.FloatTensor(np.stack([_pad21(k[2]) for k in ks]))
    with torch.no_grad():
      gt = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
      gt_usm = self.usm_sharpener(gt)
      ori_h, ori_w = gt.size()[2:4]

      def noise(out, sfx):
        gray = opt["gray_noise_prob" + sfx]
        if np.random.uniform() < opt["gaussian_noise_prob" + sfx]:
          return deg.random_add_gaussian_noise_pt(
              out, sigma_range=opt["noise_range" + sfx], clip=True, rounds=False, gray_prob=gray)
        return deg.random_add_poisson_noise_pt(
            out, scale_range=opt["poisson_scale_range" + sfx], gray_prob=gray, clip=True,
            rounds=False)

      def jpeg(out, sfx):
        jpeg_p = out.new_zeros(out.size(0)).uniform_(*opt["jpeg_range" + sfx])
        return self.jpeger(torch.clamp(out, 0, 1), quality=jpeg_p)

      def resize_sinc(out):
        mode = random.choice(["area", "bilinear", "bicubic"])
        out = F.interpolate(out, size=(ori_h // opt["scale"], ori_w // opt["scale"]), mode=mode)
        return filter2d(out, sinc_kernel)

      out = filter2d(gt_usm, kernel1)
      s = _resize_factor(opt, "")
      out = F.interpolate(out, scale_factor=s, mode=random.choice(["area", "bilinear", "bicubic"]))
      out = jpeg(noise(out, ""), "")
      if np.random.uniform() < opt["second_blur_prob"]:
        out = filter2d(out, kernel2)
      s = _resize_factor(opt, "2")
      out = F.interpolate(out, size=(int(ori_h / opt["scale"] * s), int(ori_w / opt["scale"] * s)),
                          mode=random.choice(["area", "bilinear", "bicubic"]))
      out = noise(out, "2")
      if np.random.uniform() < 0.5:
        out = jpeg(resize_sinc(out), "2")
      else:
        out = resize_sinc(jpeg(out, "2"))
      lq = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
    return lq, gt_usm


# --------------------------------------------------------------------------------------------
# Crops, timing, rows.
# --------------------------------------------------------------------------------------------


def load_crops(folder: str, n: int, size: int, seed: int) -> np.ndarray:
  """n random size x size RGB crops (uint8), as few per photo as n allows."""
  exts = (".png", ".jpg", ".jpeg", ".bmp")
  paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in exts)
  if not paths:
    raise app.UsageError(f"no images under {folder} (--data)")
  rng = np.random.default_rng(seed)
  rng.shuffle(paths)
  per_image = math.ceil(n / len(paths))
  crops = []
  for p in paths:
    try:  # RGB, as cv2.imread(..., IMREAD_COLOR)[..., ::-1] gives it
      with Image.open(p) as im:
        img = np.asarray(im.convert("RGB"))
    except OSError:
      continue
    if min(img.shape[:2]) < size:
      continue
    for _ in range(per_image):
      y = rng.integers(0, img.shape[0] - size + 1)
      x = rng.integers(0, img.shape[1] - size + 1)
      crops.append(img[y:y + size, x:x + size])
    if len(crops) >= n:
      break
  if len(crops) < n:
    raise app.UsageError(f"only {len(crops)} crops of {size} px from {folder}")
  return np.stack(crops[:n])


def measure(sides: list[dict], batches: list[np.ndarray]) -> list[dict]:
  """Warm-up batches per side, then --reps rounds in which every side times the same --batches.

  The rounds interleave the sides: on a machine shared with other work, a burst of load then
  slows one repetition of every row instead of all of one row, so the ratios stay comparable.
  """
  b, warm = FLAGS.batch_size, FLAGS.warmup
  for side in sides:
    t0 = time.perf_counter()
    side["check"](side["run"](batches[0], 0))
    side["first_batch_s"] = time.perf_counter() - t0
    for i in range(1, warm):
      side["run"](batches[i], i)
    side["rates"] = []
  for rep in range(FLAGS.reps):
    for side in sides:
      t0 = time.perf_counter()
      for j in range(FLAGS.batches):
        i = warm + rep * FLAGS.batches + j
        side["run"](batches[i], i)
      side["rates"].append(FLAGS.batches * b / (time.perf_counter() - t0))
    print(f"round {rep + 1}/{FLAGS.reps}: " + ", ".join(
        f"{s['name']} {s['rates'][-1]:.1f}" for s in sides) + " crops/s", flush=True)
  rows = []
  for side in sides:
    rates = side["rates"]
    rows.append({"row": side["name"], "crops_per_s": float(np.mean(rates)),
                 "crops_per_s_std": float(np.std(rates)),
                 "batch_ms": 1e3 * b / float(np.mean(rates)), "rep_crops_per_s": rates,
                 "first_batch_s": side["first_batch_s"], **side.get("extra", {})})
  return rows


def _check_shapes(lq, gt_usm, nchw: bool = False):
  b, c, s = FLAGS.batch_size, FLAGS.crop, FLAGS.scale
  want_lq, want_gt = (b, c // s, c // s, 3), (b, c, c, 3)
  if nchw:
    want_lq, want_gt = (b, 3, c // s, c // s), (b, 3, c, c)
  assert tuple(lq.shape) == want_lq and tuple(gt_usm.shape) == want_gt, (lq.shape, gt_usm.shape)
  assert 0 <= float(lq.min()) and float(lq.max()) <= 1, "LR out of [0, 1]"


def kernels_ms(n: int = 20) -> float:
  """Milliseconds per batch spent drawing the dataset's kernels (inside every peer row)."""
  t0 = time.perf_counter()
  for _ in range(n):
    for _ in range(FLAGS.batch_size):
      make_kernels(OPT)
  return 1e3 * (time.perf_counter() - t0) / n


def peer_sides(basicsr: str, stack: contextlib.ExitStack) -> tuple[list[dict], dict]:
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(FLAGS.torch_threads or os.cpu_count())
  workers = FLAGS.workers or os.cpu_count()
  # DiffJPEG on one small image is a chain of tiny ops: with two threads each one pays a fork/join,
  # and when another process holds a core it waits for it (20x slower measured, 141 vs 6 ms per
  # 200 px image). DataLoader workers run it on one thread; so does the in-process row.
  per_image = FLAGS.per_image_torch_threads or torch.get_num_threads()
  info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "torch_interop_threads": torch.get_num_interop_threads(),
          "per_image_torch_threads": per_image, "cv2": cv2.__version__,
          "cv2_threads": cv2.getNumThreads(), "pool_workers": workers, "pool_torch_threads": 1,
          "kernels_ms_per_batch": kernels_ms()}
  print(f"torch {info['torch']} threads {info['torch_threads']} (interop "
        f"{info['torch_interop_threads']}; {per_image} in the per-image rows), cv2 {info['cv2']} "
        f"threads {info['cv2_threads']} (default), {workers} pool workers; kernels: "
        f"{info['kernels_ms_per_batch']:.1f} ms per batch", flush=True)

  def numpy_run(x, jpeg):
    torch.set_num_threads(per_image)
    try:
      return numpy_batch(x, jpeg)
    finally:
      torch.set_num_threads(info["torch_threads"])

  sides = []
  for peer in FLAGS.peers:
    if peer in ("numpy", "numpy_cv2jpeg"):
      jpeg = "cv2" if peer == "numpy_cv2jpeg" else "diffjpeg"
      sides.append(dict(name=peer, run=lambda x, i, jpeg=jpeg: numpy_run(x, jpeg),
                        check=lambda o: _check_shapes(*o)))
    elif peer == "numpy_pool":
      ctx = multiprocessing.get_context("spawn")  # fork after jax/torch threads start can hang.
      pool = stack.enter_context(
          ctx.Pool(workers, initializer=_init_worker, initargs=(basicsr, FLAGS.seed)))
      pool.map(abs, range(workers))  # Workers up (imports, BasicSR) before the first batch.
      sides.append(dict(name=peer, run=lambda x, i, pool=pool: numpy_batch(x, "diffjpeg", pool),
                        check=lambda o: _check_shapes(*o)))
    elif peer == "torch":
      tp = TorchPeer()
      sides.append(dict(name=peer, run=lambda x, i, tp=tp: tp(x),
                        check=lambda o: _check_shapes(*o, nchw=True), peer=tp))
    else:
      raise app.UsageError(f"unknown peer {peer!r}")
  return sides, info


def usm_ms(tp: TorchPeer, batch: np.ndarray) -> float:
  """USMSharp's share of the torch row: its 51x51 filter2D is two single-channel convolutions
  that cuDNN runs fast and the CPU does not, so readers can tell the pipeline from that kernel."""
  import torch  # pylint: disable=g-import-not-at-top
  x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    t0 = time.perf_counter()
    tp.usm_sharpener(x)
    return 1e3 * (time.perf_counter() - t0)


def jsr_side(batches: list[np.ndarray]) -> tuple[dict, dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jsr.ops import realworld  # pylint: disable=g-import-not-at-top
  deg = realworld.default_config("realesrgan")
  fn = jax.jit(functools.partial(realworld.degrade, deg=deg, scale=FLAGS.scale))
  key = jax.random.key(FLAGS.seed)
  hr0 = jnp.asarray(batches[0])
  t0 = time.perf_counter()
  compiled = fn.lower(hr0, jax.random.fold_in(key, 0)).compile()
  compile_s = time.perf_counter() - t0
  print(f"jsr compile {compile_s:.2f} s", flush=True)

  def run(x, i):
    # The host -> device copy of the crops counts: the peers start from the same host arrays.
    out = compiled(jnp.asarray(x), jax.random.fold_in(key, i))
    return jax.block_until_ready(out)

  # realworld.py is young: say which version of it (and of jsr) the row measured.
  git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
  info = {"commit": git("rev-parse", "HEAD").strip(),
          "uncommitted": git("status", "--porcelain", "--", "jsr").splitlines(),
          "jax": jax.__version__, "device": str(jax.devices()[0]),
          "device_kind": jax.devices()[0].device_kind, "config": deg.to_dict()}
  side = dict(name="jsr", run=run, check=lambda o: _check_shapes(o[0], o[1]),
              extra={"compile_s": compile_s})
  return side, info


def main(argv):
  del argv
  t0 = time.perf_counter()
  # Other work on the machine shows in every row; the load averages say how much there was.
  load = {"before": os.getloadavg()}
  n_batches = FLAGS.warmup + FLAGS.reps * FLAGS.batches
  crops = load_crops(FLAGS.data, n_batches * FLAGS.batch_size, FLAGS.crop, FLAGS.seed)
  batches = [(crops[i * FLAGS.batch_size:(i + 1) * FLAGS.batch_size] / 255.0).astype(np.float32)
             for i in range(n_batches)]
  print(f"{len(crops)} crops of {FLAGS.crop} px from {FLAGS.data}, {n_batches} batches of "
        f"{FLAGS.batch_size}", flush=True)
  result, sides = {}, []
  with contextlib.ExitStack() as stack:
    if FLAGS.only != "peer":
      try:
        importlib.import_module("jsr.ops.realworld")
      except ImportError as e:
        raise app.UsageError(f"jsr.ops.realworld does not import ({e}); --only=peer times the "
                             "peers alone") from e
      side, result["jsr"] = jsr_side(batches)
      sides.append(side)
    if FLAGS.only != "jsr":
      basicsr = find_basicsr(FLAGS.basicsr)
      load_basicsr(str(basicsr))
      version = (basicsr / "VERSION").read_text().strip() if (basicsr / "VERSION").exists() else ""
      result["basicsr"] = {"path": str(basicsr), "version": version, "shims": _B.shims,
                           "options": OPT}
      peers, result["peer_threads"] = peer_sides(str(basicsr), stack)
      sides += peers
    random.seed(FLAGS.seed)
    np.random.seed(FLAGS.seed)
    if FLAGS.only != "jsr":
      import torch  # pylint: disable=g-import-not-at-top
      torch.manual_seed(FLAGS.seed)
    rows = measure(sides, batches)
    for side, row in zip(sides, rows):
      if "peer" in side:
        row["usm_ms"] = usm_ms(side["peer"], batches[0])
  if rows[0]["row"] == "jsr":
    for p in rows[1:]:
      rows[0][f"over_{p['row']}"] = rows[0]["crops_per_s"] / p["crops_per_s"]

  print(f"\n{'row':14s} {'crops/s':>17s} {'ms/batch':>9s} {'compile s':>10s}  jsr / row")
  jsr = rows[0] if rows and rows[0]["row"] == "jsr" else None
  for r in rows:
    ratio = f"{jsr['crops_per_s'] / r['crops_per_s']:.2f}x" if jsr and r is not jsr else "-"
    comp = f"{r['compile_s']:.2f}" if "compile_s" in r else "-"
    usm = f" (USMSharp {r['usm_ms']:.0f} ms of it)" if "usm_ms" in r else ""
    print(f"{r['row']:14s} {r['crops_per_s']:8.1f} +- {r['crops_per_s_std']:5.1f} "
          f"{r['batch_ms']:9.0f} {comp:>10s}  {ratio}{usm}")
  load["after"] = os.getloadavg()
  if FLAGS.output:
    Path(FLAGS.output).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.output).write_text(json.dumps(
        {"machine": machine(), "loadavg_1_5_15min": load, "batch_size": FLAGS.batch_size,
         "crop": FLAGS.crop, "scale": FLAGS.scale, "reps": FLAGS.reps, "batches_per_rep": FLAGS.batches,
         "warmup_batches": FLAGS.warmup, "data": FLAGS.data, "seed": FLAGS.seed, **result,
         "results": rows, "wall_s": time.perf_counter() - t0}, indent=1))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
