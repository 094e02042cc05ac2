"""Reading and writing images on the host (PIL), with errors that name the file.

Images come back as float32 numpy arrays in [0, 1], (H, W, C) with C = 1 (gray) or 3 (RGB); an alpha
channel, when present, is returned separately so callers can keep it (predict) or drop it (metrics).
16-bit images are scaled by 65535. The EXIF Orientation tag (phone photos) is applied, so arrays
come out the way image viewers show the file. Nothing here imports TensorFlow or JAX.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

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


def list_images(path: str | os.PathLike, recursive: bool = True) -> list[str]:
  """Image files under a folder (sorted), a single file, or the scikit-image `samples`."""
  if str(path) in ("samples", "samples:all", "samples:train", "samples:eval"):
    split = str(path).partition(":")[2] or "all"
    return sample_paths(split)
  p = Path(path)
  if p.is_file():
    return [str(p)]
  if not p.is_dir():
    raise FileNotFoundError(f"no such file or folder: {p}")
  it: Iterable[Path] = p.rglob("*") if recursive else p.iterdir()
  files = sorted(str(f) for f in it if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
  if not files:
    raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {p}")
  return files


def load_image(path: str | os.PathLike) -> LoadedImage:
  """Decode one image; raises ImageError naming the file for anything unusable."""
  path = str(path)
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
