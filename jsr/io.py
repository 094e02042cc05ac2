"""Reading and writing images on the host (PIL), with errors that name the file.

Images come back as float32 numpy arrays in [0, 1], (H, W, C) with C = 1 (gray) or 3 (RGB); an alpha
channel, when present, is returned separately so callers can keep it (predict) or drop it (metrics).
16-bit images are scaled by 65535. The EXIF Orientation tag (phone photos) is applied, so arrays
come out the way image viewers show the file. Nothing here imports TensorFlow or JAX.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# numpy arrays as images: read where a folder is known to hold images (the two folders of a paired
# source, `evaluate --data/--lr`, predict), not by the plain `folder:` source, whose folders may
# hold other arrays (a kernel .npy beside the photos).
ARRAY_EXTENSIONS = (".npy",)

# Natural photos bundled inside scikit-image (no download). The held-out ones are never trained on
# by the `samples` source, so the main job can report a fair evaluation on them.
SAMPLES_TRAIN = ("astronaut.png", "camera.png", "hubble_deep_field.jpg", "ihc.png",
                 "motorcycle_left.png", "retina.jpg", "rocket.jpg", "brick.png", "grass.png",
                 "gravel.png", "moon.png", "coins.png")
SAMPLES_EVAL = ("chelsea.png", "coffee.png")


class ImageError(ValueError):
  """An image that cannot be used; the message names the file and the reason."""


@dataclasses.dataclass
class LoadedImage:
  path: str
  image: np.ndarray            # (H, W, 1 or 3) float32 in [0, 1]
  alpha: np.ndarray | None     # (H, W, 1) float32 in [0, 1], or None
  bit_depth: int               # 8 or 16


def samples_dir() -> Path:
  import skimage  # Imported lazily: only the `samples` source needs it.
  return Path(skimage.__file__).parent / "data"


def sample_paths(split: str = "all") -> list[str]:
  """Paths of scikit-image's bundled photos: split "train", "eval" or "all"."""
  names = {"train": SAMPLES_TRAIN, "eval": SAMPLES_EVAL,
           "all": SAMPLES_TRAIN + SAMPLES_EVAL}.get(split)
  if names is None:
    raise ValueError(f"sample_paths: split must be train, eval or all, got {split!r}")
  return [str(samples_dir() / n) for n in sorted(names)]


def list_images(path: str | os.PathLike, recursive: bool = True, arrays: bool = False
                ) -> list[str]:
  """Image files under a folder (sorted), a single file, or the scikit-image `samples`; with
  `arrays`, `.npy` files count as images too."""
  if str(path) in ("samples", "samples:all", "samples:train", "samples:eval"):
    split = str(path).partition(":")[2] or "all"
    return sample_paths(split)
  p = Path(path)
  if p.is_file():
    return [str(p)]
  if not p.is_dir():
    raise FileNotFoundError(f"no such file or folder: {p}")
  it: Iterable[Path] = p.rglob("*") if recursive else p.iterdir()
  extensions = IMAGE_EXTENSIONS + (ARRAY_EXTENSIONS if arrays else ())
  files = sorted(str(f) for f in it if f.is_file() and f.suffix.lower() in extensions)
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(extensions)}) in folder {p}")
  return files


def load_array(path: str) -> np.ndarray:
  """An image stored as a `.npy` array -> (H, W, 1|3) float32 in [0, 1].

  Accepted: (H, W) or (H, W, C) with C = 1 or 3 (4: the last channel is dropped as alpha);
  uint8 (0..255), uint16 (0..65535), or floats in [0, 1] or [0, 255] -- a float array whose
  maximum is above 1 is read as 0..255 (so a [0, 255] array darker than 1/255 everywhere would be
  misread; such an image is black either way). Never unpickled: object arrays are refused.
  """
  try:
    arr = np.load(path, allow_pickle=False)
  except FileNotFoundError as e:
    raise ImageError(f"{path}: file not found") from e
  except (ValueError, OSError, EOFError) as e:
    raise ImageError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from e
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
    raise ImageError(f"{path}: array of shape {arr.shape}; an image array is (H, W) or "
                     "(H, W, C) with C = 1, 3 or 4")
  arr = arr[..., :3] if arr.shape[-1] == 4 else arr
  if arr.dtype == np.uint8:
    return arr.astype(np.float32) / 255.0
  if arr.dtype == np.uint16:
    return arr.astype(np.float32) / 65535.0
  if not np.issubdtype(arr.dtype, np.floating):
    raise ImageError(f"{path}: array dtype {arr.dtype}; use uint8, uint16 or float")
  arr = arr.astype(np.float32)
  if not np.all(np.isfinite(arr)):
    raise ImageError(f"{path}: array holds NaN or Inf")
  lo, hi = float(arr.min()), float(arr.max())
  if lo < 0.0 or hi > 255.0:
    raise ImageError(f"{path}: float array with values in [{lo:g}, {hi:g}]; expected [0, 1] "
                     "or [0, 255]")
  return arr / 255.0 if hi > 1.0 else arr


# Name parts that say which side of a pair a file is, or its scale: 0001x4.png (DIV2K),
# Canon_001_LR4.png / Canon_001_HR.png (RealSR), img_001_SRF_4_LR.png (SelfExSR), baby_LRx4.npy.
_PAIR_SUFFIX = re.compile(r"(?:[_\-.](?:lr|hr|lq|gt)\d*)?(?:[_\-.]?x\d+)?$", re.IGNORECASE)


def pair_key(path: str) -> str:
  """The name stem a file is matched on: its stem without a side/scale suffix (_LR, _HR, x4)."""
  stem = Path(path).stem
  return _PAIR_SUFFIX.sub("", stem) or stem


def match_pairs(lr_paths: list[str], hr_paths: list[str], lr_dir: str = "", hr_dir: str = ""
                ) -> list[tuple[str, str]]:
  """[(lr, hr)] matched by pair_key, in HR order; FileNotFoundError naming every file without a
  partner (or two files with one key)."""
  def index(paths, side):
    out = {}
    for p in paths:
      k = pair_key(p)
      if k in out:
        raise FileNotFoundError(f"{side} files {out[k]} and {p} both match the name {k!r}; "
                                "rename one")
      out[k] = p
    return out
  lrs, hrs = index(lr_paths, "LR"), index(hr_paths, "HR")
  missing_lr = [p for k, p in hrs.items() if k not in lrs]
  missing_hr = [p for k, p in lrs.items() if k not in hrs]
  if missing_lr or missing_hr:
    def names(ps):
      return ", ".join(ps[:5]) + (f" and {len(ps) - 5} more" if len(ps) > 5 else "")
    msg = []
    if missing_lr:
      msg.append(f"HR file(s) without an LR file in {lr_dir or 'the LR folder'}: "
                 f"{names(missing_lr)}")
    if missing_hr:
      msg.append(f"LR file(s) without an HR file in {hr_dir or 'the HR folder'}: "
                 f"{names(missing_hr)}")
    raise FileNotFoundError("; ".join(msg) + " (files are matched by name, ignoring _LR/_HR/x4 "
                            "suffixes)")
  return [(lrs[k], hrs[k]) for k in hrs]


def check_pair_size(lr_path: str, hr_path: str, lr_shape, hr_shape, scale: int) -> int:
  """The pair's size ratio: `scale` (HR = scale x LR, HR up to scale - 1 pixels larger, as
  modcrop leaves it) or 1 (an LR already upsampled to the HR size); ImageError naming both files
  otherwise."""
  (lh, lw), (hh, hw) = lr_shape[:2], hr_shape[:2]
  if (lh, lw) == (hh, hw):
    return 1
  if 0 <= hh - scale * lh < scale and 0 <= hw - scale * lw < scale:
    return scale
  raise ImageError(f"{lr_path} ({lh}x{lw}) and {hr_path} ({hh}x{hw}): HR must be {scale}x the "
                   f"LR size ({scale * lh}x{scale * lw}) or equal to it")


def load_image(path: str | os.PathLike) -> LoadedImage:
  """Decode one image (or a `.npy` array, see load_array); raises ImageError naming the file for
  anything unusable."""
  path = str(path)
  if path.lower().endswith(ARRAY_EXTENSIONS):
    return LoadedImage(path, load_array(path), None, 8)
  try:
    with Image.open(path) as im:
      im.load()
      # Phones store the sensor's pixels and an EXIF Orientation tag; viewers show them upright.
      ImageOps.exif_transpose(im, in_place=True)
      mode = im.mode
      if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        depth = 16
        # 16-bit PNG/TIFF decode to I;16* (or I): full scale is 65535.
        arr = arr / 65535.0
        rgb, alpha = arr[..., None], None
      elif mode == "F":
        raise ImageError(f"{path}: floating-point images (PIL mode F) are not supported")
      else:
        depth = 8
        if mode in ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV",
                    "RGBX", "RGBa", "La"):
          if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
          elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            im = im.convert("RGB")
          elif mode == "1":
            im = im.convert("L")
          elif mode in ("PA", "La"):
            im = im.convert("LA")
          elif mode == "RGBa":
            im = im.convert("RGBA")
        else:
          im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.float64) / 255.0
        if arr.ndim == 2:
          arr = arr[..., None]
        if arr.shape[-1] in (2, 4):
          rgb, alpha = arr[..., :-1], arr[..., -1:]
        else:
          rgb, alpha = arr, None
  except ImageError:
    raise
  except FileNotFoundError as e:
    raise ImageError(f"{path}: file not found") from e
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
  if rgb.ndim != 3 or rgb.shape[-1] not in (1, 3) or min(rgb.shape[:2]) < 1:
    raise ImageError(f"{path}: unsupported image layout, shape {rgb.shape}")
  return LoadedImage(path, rgb.astype(np.float32),
                     None if alpha is None else alpha.astype(np.float32), depth)


def save_image(path: str | os.PathLike, image: np.ndarray, alpha: np.ndarray | None = None,
               bit_depth: int = 8) -> None:
  """Write (H, W, 1|3) [0, 1] floats as PNG (or the format the suffix names), rounding to 8 bits."""
  img = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  if bit_depth == 16 and img.shape[-1] == 1 and alpha is None:
    Image.fromarray(np.round(img[..., 0] * 65535).astype(np.uint16)).save(path)
    return
  if alpha is not None:
    img = np.concatenate([img, np.clip(np.asarray(alpha, np.float64), 0, 1)], axis=-1)
  u8 = np.round(img * 255.0).astype(np.uint8)
  if u8.shape[-1] == 1:
    u8 = u8[..., 0]
  Image.fromarray(u8).save(path)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crop (H, W, C) to a multiple of `scale` (bottom/right), as the benchmark scripts do."""
  h, w = image.shape[:2]
  return image[: h - h % scale, : w - w % scale]
