r"""jsr.ops.jpeg against PIL's JPEG encoder + decoder (libjpeg-turbo) on Set5, and its speed.

    python scripts/jpeg_check.py                                  # -> docs/runs/jpeg_pil_cpu.json
    python scripts/jpeg_check.py --qualities=10,75 --output=/tmp/jpeg.json

For every image and quality q: PIL saves the 8-bit HR image with `quality=q, subsampling=2`
(4:2:0) and the default (Annex K) tables and decodes it again; jsr codes the same image with
`jpeg(x, q)` (all qualities of one image in one batch, one quality per sample). Reported, as RGB
PSNR over all pixels (peak 255, no border crop): PSNR(jsr, PIL), PSNR(jsr, orig), PSNR(PIL, orig)
and the difference of the last two, per image and as means, for each DCT variant:

  float          the default: float32 DCT as matmuls
  islow          libjpeg's integer DCT (bit-exact: PSNR(jsr, PIL) is then null, max_abs_diff 0)
  float_nobias   diagnostic: `float` with jcsample.c's alternating 1, 2 rounding bias of the
                 chroma downsampling replaced by a constant 2 (plain rounding), to show what the
                 bias is worth

Then the time of one jitted call on a (batch, size, size, 3) batch at random qualities (median
of --iters calls after compile), for float and islow, and the machine (scripts/machine_info.py).
Relative paths in --data and --output are taken from the repository root.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
import sys
import time

from absl import app, flags
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from machine_info import machine  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/benchmarks/Set5", "Folder of HR images.")
flags.DEFINE_list("qualities", ["30", "50", "95"], "JPEG qualities.")
flags.DEFINE_list("variants", ["float", "islow", "float_nobias"], "DCT variants (see above).")
flags.DEFINE_integer("batch", 16, "Timing batch.")
flags.DEFINE_integer("size", 64, "Timing image side.")
flags.DEFINE_integer("iters", 20, "Timed calls (median reported).")
flags.DEFINE_string("output", "docs/runs/jpeg_pil_cpu.json", "JSON file for the results.")


def _from_repo(path: str) -> Path:
  p = Path(path)
  return p if p.is_absolute() else REPO / p


def pil_jpeg(img8: np.ndarray, quality: int) -> np.ndarray:
  buf = io.BytesIO()
  if img8.shape[-1] == 1:
    Image.fromarray(img8[..., 0]).save(buf, "JPEG", quality=quality)
  else:
    Image.fromarray(img8).save(buf, "JPEG", quality=quality, subsampling=2)
  out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
  return out[..., None] if out.ndim == 2 else out


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
  """RGB PSNR in dB, peak 255, all pixels; None when identical (JSON has no infinity)."""
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return None if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@contextlib.contextmanager
def _variant(name: str):
  """Yields the `dct` argument of a variant; float_nobias also swaps the module's downsampler
  for plain rounding until the block ends."""
  from jsr.ops import jpeg
  if name != "float_nobias":
    yield name
    return
  original = jpeg.h2v2_downsample

  def plain_round(c):
    s = c[:, 0::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 0::2] + c[:, 1::2, 1::2]
    return (s + 2) >> 2

  jpeg.h2v2_downsample = plain_round
  try:
    yield "float"
  finally:
    jpeg.h2v2_downsample = original


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def check_images(paths, qualities, variant: str) -> dict:
  import jax
  import jax.numpy as jnp
  from jsr import io as jio
  from jsr.ops import jpeg

  per_image = {}
  with _variant(variant) as dct:
    # jit per variant: the nobias swap must be traced, not read from an earlier cache.
    run = jax.jit(lambda x, q: jpeg.jpeg(x, q, dct=dct))
    for path in paths:
      img8 = np.round(jio.load_image(path).image * 255.0).astype(np.uint8)
      x = jnp.asarray(np.broadcast_to(img8, (len(qualities),) + img8.shape), jnp.float32) / 255.0
      ours = np.round(np.asarray(run(x, jnp.asarray(qualities))) * 255.0).astype(np.uint8)
      rows = {}
      for i, q in enumerate(qualities):
        ref = pil_jpeg(img8, q)
        vs_pil, ours_orig, pil_orig = psnr(ours[i], ref), psnr(ours[i], img8), psnr(ref, img8)
        diff = np.abs(ours[i].astype(int) - ref)
        rows[str(q)] = dict(psnr_jsr_pil=vs_pil, psnr_jsr_orig=ours_orig, psnr_pil_orig=pil_orig,
                            diff_jsr_minus_pil=ours_orig - pil_orig, max_abs_diff=int(diff.max()),
                            frac_pixels_differ=float((diff.max(-1) > 0).mean()))
        print(f"{variant:13s} {Path(path).name:14s} q={q:3d}  jsr-PIL "
              f"{'identical' if vs_pil is None else f'{vs_pil:6.2f} dB'}  jsr-orig {ours_orig:.3f}"
              f"  PIL-orig {pil_orig:.3f}  diff {ours_orig - pil_orig:+.3f}  max|d| {diff.max()}")
      per_image[Path(path).name] = {"shape": list(img8.shape), "q": rows}
  means = {}
  for q in qualities:
    rows = [r["q"][str(q)] for r in per_image.values()]
    means[str(q)] = {k: _mean([r[k] for r in rows]) for k in
                     ("psnr_jsr_pil", "psnr_jsr_orig", "psnr_pil_orig", "diff_jsr_minus_pil")}
    means[str(q)]["max_abs_diff"] = max(r["max_abs_diff"] for r in rows)
    m = means[str(q)]
    vs_pil = "identical" if m["psnr_jsr_pil"] is None else f"{m['psnr_jsr_pil']:6.2f} dB"
    print(f"{variant:13s} mean           q={q:3d}  jsr-PIL {vs_pil}  "
          f"diff {m['diff_jsr_minus_pil']:+.4f}")
  return {"images": per_image, "mean": means}


def time_batch(dct: str) -> dict:
  import jax
  import jax.numpy as jnp
  from jsr.ops import jpeg

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((FLAGS.batch, FLAGS.size, FLAGS.size, 3)), jnp.float32)
  q = jnp.asarray(rng.integers(30, 96, FLAGS.batch))
  run = jax.jit(lambda x, q: jpeg.jpeg(x, q, dct=dct))
  t0 = time.perf_counter()
  run(x, q).block_until_ready()
  first = time.perf_counter() - t0
  times = []
  for _ in range(FLAGS.iters):
    t0 = time.perf_counter()
    run(x, q).block_until_ready()
    times.append(time.perf_counter() - t0)
  out = dict(shape=list(x.shape), compile_and_first_s=first,
             median_ms=1e3 * float(np.median(times)), min_ms=1e3 * min(times))
  print(f"timing {dct:6s} {tuple(x.shape)}: compile+first {first:.2f} s, "
        f"median {out['median_ms']:.2f} ms")
  return out


def main(argv):
  del argv
  import jax
  import PIL
  import PIL.features

  from jsr import io as jio

  data = _from_repo(FLAGS.data)
  paths = jio.list_images(data)
  if not paths:
    raise SystemExit(f"no images in {data}")
  qualities = [int(q) for q in FLAGS.qualities]
  results = {
      "command": " ".join(["python scripts/jpeg_check.py"] + sys.argv[1:]),
      "data": FLAGS.data, "qualities": qualities,
      "psnr": "RGB, 8-bit, peak 255, all pixels (no border crop)",
      "pil": {"version": PIL.__version__,
              "libjpeg_turbo": PIL.features.version("libjpeg_turbo"),
              "save": "quality=q, subsampling=2 (4:2:0), default tables"},
      "jax": jax.__version__, "backend": jax.default_backend(), "machine": machine(),
      "variants": {}, "timing": {},
  }
  for variant in FLAGS.variants:
    results["variants"][variant] = check_images(paths, qualities, variant)
  for dct in ("float", "islow"):
    results["timing"][dct] = time_batch(dct)
  out = _from_repo(FLAGS.output)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
