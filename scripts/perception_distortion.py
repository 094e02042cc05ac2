r"""Perception-distortion curve of a PSNR run and its GAN fine-tune, by network interpolation.

  python scripts/perception_distortion.py --psnr_run=/tmp/srresnet --gan_run=/tmp/srgan --scale=4 \
      --alphas=0,0.2,0.4,0.6,0.8,1 \
      --sets=set5=../shared/data/benchmarks/Set5,set14=../shared/data/benchmarks/Set14 \
      --metrics=psnr,ssim,lpips,niqe --tmp=/tmp/pd \
      --out_json=docs/runs/pd_srgan_x4.json --out_png=docs/pd_srgan_x4.png \
      --title="SRResNet -> SRGAN x4"

For each alpha the generator (1 - alpha) * PSNR + alpha * GAN is written by jsr.interpolate into a
temporary workdir under --tmp (deleted afterwards unless --keep_tmp) and evaluated on every set
with jsr.evaluate's protocol: HR cropped to a multiple of the scale, LR by MATLAB bicubic, output
rounded to 8 bits; PSNR/SSIM on Y (BT.601) and LPIPS (VGG, RGB) with `scale` pixels shaved at
each border, NIQE (Y) with crop_border = scale. Alpha 0 and 1 are the two runs themselves unless
--nodirect_endpoints (then they go through jsr.interpolate too, which must give the same numbers).
MATLAB bicubic is evaluated on every set as the reference point.

The JSON holds one row per (alpha, set) with the set's mean of each metric, the per-image values,
the bicubic rows, the command line, the machine and the date. The PNG (matplotlib, Agg) plots
PSNR against LPIPS, one line per set with each point labelled by its alpha and the bicubic point
beside it, and, when NIQE was computed, NIQE against alpha in a second panel. `--title` defaults
to the two workdirs' names.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
import platform
import shlex
import shutil
import sys
import tempfile
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS

# Figure size in inches at DPI: 900 x 450 px.
FIG_SIZE, DPI = (9.0, 4.5), 100
FLAG_NAMES = ("psnr_run", "gan_run", "scale", "alphas", "sets", "metrics", "tmp", "keep_tmp",
              "direct_endpoints", "out_json", "out_png", "title")


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
  """The command-line flags, defined on demand (so importing this module defines none)."""
  flags.DEFINE_string("psnr_run", None, "Workdir of the PSNR-trained run (alpha = 0).",
                      flag_values=fv)
  flags.DEFINE_string("gan_run", None, "Workdir of its GAN fine-tune (alpha = 1).", flag_values=fv)
  flags.DEFINE_integer("scale", 4, "Upscaling factor (must be the runs' config.scale).",
                       flag_values=fv)
  flags.DEFINE_string("alphas", "0,0.2,0.4,0.6,0.8,1", "Comma-separated interpolation weights of "
                      "the GAN run.", flag_values=fv)
  flags.DEFINE_string("sets", "set5=../shared/data/benchmarks/Set5,"
                      "set14=../shared/data/benchmarks/Set14",
                      "name=folder,... of HR benchmark images.", flag_values=fv)
  flags.DEFINE_string("metrics", "psnr,ssim,lpips,niqe", "jsr.evaluate metric names; psnr and "
                      "lpips are needed for the plot.", flag_values=fv)
  flags.DEFINE_string("tmp", "/tmp/pd", "Parent folder of the interpolated workdirs.",
                      flag_values=fv)
  flags.DEFINE_bool("keep_tmp", False, "Keep the interpolated workdirs.", flag_values=fv)
  flags.DEFINE_bool("direct_endpoints", True, "Evaluate the runs themselves at alpha 0 and 1 "
                    "(else interpolate those too).", flag_values=fv)
  flags.DEFINE_string("out_json", None, "Results file (JSON).", flag_values=fv)
  flags.DEFINE_string("out_png", None, "Figure file (PNG).", flag_values=fv)
  flags.DEFINE_string("title", None, "Figure title (default: the two workdirs' names).",
                      flag_values=fv)


# ---------------------------------------------------------------------------------------------
# Parsing and provenance.
# ---------------------------------------------------------------------------------------------


def parse_alphas(spec: str) -> list[float]:
  try:
    alphas = [float(s) for s in spec.split(",") if s.strip()]
  except ValueError:
    raise ValueError(f"--alphas {spec!r}: give comma-separated numbers, e.g. 0,0.5,1") from None
  if not alphas:
    raise ValueError("--alphas is empty")
  return sorted(dict.fromkeys(alphas))


def parse_sets(spec: str) -> dict[str, str]:
  """"set5=/a,set14=/b" -> {"set5": "/a", "set14": "/b"}."""
  sets = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--sets item {item!r}: expected name=folder")
    if name in sets:
      raise ValueError(f"--sets names {name!r} twice")
    sets[name] = path
  if not sets:
    raise ValueError("--sets is empty")
  return sets


def machine() -> dict:
  """CPU model, core count and SIMD flags, and the JAX backend the numbers were computed on."""
  import jax  # pylint: disable=import-outside-toplevel
  model, cpu_flags = "", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and not model:
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not cpu_flags:
          cpu_flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return {"host": platform.node(), "cpu": model, "cpu_count": os.cpu_count(),
          "avx": sorted(f for f in cpu_flags if f.startswith(("avx", "fma"))),
          "python": platform.python_version(), "jax": jax.__version__,
          "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def command_line(fv: flags.FlagValues, names) -> str:
  """The command that reproduces this run: every flag of this script with its value."""
  args = []
  for name in names:
    v = fv[name].value
    if isinstance(v, bool):
      args.append(f"--{'' if v else 'no'}{name}")
    elif v is not None:
      args.append(f"--{name}={v}")
  return shlex.join(["python", "scripts/perception_distortion.py", *args])


# ---------------------------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------------------------


def _finite(x: float) -> float | None:
  return x if math.isfinite(x) else None  # JSON has no NaN.


def evaluate_sets(sr_fn, sets: dict[str, list[str]], scale: int, metric_names) -> dict:
  """{set: evaluate_images result without the outputs} for one sr_fn."""
  from jsr import evaluate  # pylint: disable=import-outside-toplevel
  out = {}
  for name, paths in sets.items():
    print(f" {name} ({len(paths)} images):")
    out[name] = evaluate.evaluate_images(sr_fn, paths, scale, log=print,
                                         metric_names=metric_names)
  return out


def curve(psnr_run: str, gan_run: str, scale: int, alphas, sets: dict[str, str], metric_names,
          tmp: str, keep_tmp: bool = False, direct_endpoints: bool = True) -> dict:
  """The results dict (see the module doc) without command, machine and date."""
  from jsr import evaluate, inference, interpolate  # pylint: disable=import-outside-toplevel
  from jsr import io as jio  # pylint: disable=import-outside-toplevel
  paths = {name: jio.list_images(folder) for name, folder in sets.items()}
  result = {"psnr_run": os.path.abspath(psnr_run), "gan_run": os.path.abspath(gan_run),
            "scale": scale, "metrics": list(metric_names),
            "sets": {n: os.path.abspath(p) for n, p in sets.items()},
            "protocol": (f"HR modcropped to x{scale}, LR by MATLAB bicubic (uint8), output rounded "
                         f"to 8 bits; PSNR/SSIM on Y (BT.601), LPIPS v0.1 VGG on RGB, {scale} px "
                         f"shaved per border; NIQE on Y, crop_border={scale}"),
            "direct_endpoints": direct_endpoints, "runs": {}, "rows": [], "bicubic": []}

  def record(rows, evals, **keys):
    for set_name, ev in evals.items():
      rows.append({**keys, "set": set_name, "num_images": ev["num_images"],
                   **{k: _finite(v) for k, v in ev["mean"].items()},
                   "per_image": [{k: (_finite(v) if isinstance(v, float) else v)
                                  for k, v in r.items()} for r in ev["per_image"]]})

  print(f"bicubic x{scale}:")
  record(result["bicubic"], evaluate_sets(evaluate.interpolation_fn("bicubic", scale), paths,
                                          scale, metric_names), method="bicubic")
  os.makedirs(tmp, exist_ok=True)
  work = tempfile.mkdtemp(prefix="pd_", dir=tmp)  # Ours alone: removed whole at the end.
  try:
    for alpha in alphas:
      interpolated = not (direct_endpoints and alpha in (0.0, 1.0))
      if interpolated:
        workdir = os.path.join(work, f"alpha_{alpha:g}")
        interpolate.interpolate(psnr_run, gan_run, alpha, workdir)
      else:
        workdir = psnr_run if alpha == 0.0 else gan_run
      sr_fn, name = inference.load_sr_fn(workdir, scale)
      result["runs"][f"{alpha:g}"] = name
      print(f"alpha {alpha:g}: {name}")
      # An interpolated workdir is removed at the end (unless --keep_tmp): no path to record.
      kept = not interpolated or keep_tmp
      record(result["rows"], evaluate_sets(sr_fn, paths, scale, metric_names), alpha=alpha,
             interpolated=interpolated, workdir=os.path.abspath(workdir) if kept else None)
  finally:
    if keep_tmp:
      print(f"kept the interpolated workdirs in {work}")
    else:
      shutil.rmtree(work, ignore_errors=True)
  return result


# ---------------------------------------------------------------------------------------------
# Figure.
# ---------------------------------------------------------------------------------------------


def plot(result: dict, path: str, title: str) -> None:
  """PSNR vs LPIPS per set (points labelled with alpha, bicubic beside), NIQE vs alpha if any."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows, bicubic = result["rows"], {r["set"]: r for r in result["bicubic"]}
  sets = list(dict.fromkeys(r["set"] for r in rows))
  has_niqe = any(r.get("niqe") is not None for r in rows)
  fig = plt.figure(figsize=FIG_SIZE, dpi=DPI)
  grid = fig.add_gridspec(1, 3 if has_niqe else 1)
  ax = fig.add_subplot(grid[0, :2] if has_niqe else grid[0, 0])
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, s in enumerate(sets):
    c = colours[i % len(colours)]
    pts = sorted((r["alpha"], r["lpips"], r["psnr_y"]) for r in rows if r["set"] == s)
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-", color=c, ms=4, lw=1.2,
            label=f"{s}: alpha 0 (PSNR) .. 1 (GAN)")
    for a, x, y in pts:
      ax.annotate(f"{a:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
    if s in bicubic:
      b = bicubic[s]
      ax.plot([b["lpips"]], [b["psnr_y"]], "s", color=c, mfc="none", ms=6, label=f"{s}: bicubic")
      ax.annotate("bicubic", (b["lpips"], b["psnr_y"]), textcoords="offset points",
                  xytext=(4, -10), fontsize=7, color=c)
  ax.set_xlabel("LPIPS (VGG), lower is better")
  ax.set_ylabel("PSNR-Y (dB), higher is better")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  ax.set_title(f"x{result['scale']}, shave {result['scale']} px", fontsize=9)
  if has_niqe:
    ax2 = fig.add_subplot(grid[0, 2])
    for i, s in enumerate(sets):
      c = colours[i % len(colours)]
      pts = sorted((r["alpha"], r["niqe"]) for r in rows if r["set"] == s)
      ax2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=c, ms=4, lw=1.2, label=s)
      if bicubic.get(s, {}).get("niqe") is not None:
        ax2.axhline(bicubic[s]["niqe"], color=c, ls=":", lw=1, label=f"{s}: bicubic")
    ax2.set_xlabel("alpha (weight of the GAN run)")
    ax2.set_ylabel("NIQE, lower is better")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="best")
    ax2.set_title("NIQE (Y)", fontsize=9)
  fig.suptitle(title)
  fig.tight_layout()
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=DPI)  # Not bbox_inches="tight": keeps the size FIG_SIZE * DPI.
  plt.close(fig)


def print_table(result: dict) -> None:
  keys = [k for k in ("psnr_y", "ssim_y", "lpips", "niqe") if any(k in r for r in result["rows"])]
  print(f"{'set':<10s} {'alpha':>8s} " + " ".join(f"{k:>8s}" for k in keys))
  fmt = lambda v: f"{v:8.4f}" if v is not None else f"{'nan':>8s}"
  for r in result["bicubic"] + result["rows"]:
    a = "bicubic" if r.get("method") == "bicubic" else f"{r['alpha']:g}"
    print(f"{r['set']:<10s} {a:>8s} " + " ".join(fmt(r.get(k)) for k in keys))


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------


def _fail(msg: str) -> None:
  print(f"error: {msg}", file=sys.stderr)
  sys.exit(2)


def main(argv, fv: flags.FlagValues = FLAGS) -> dict:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {argv[1:]}")
  for name in ("psnr_run", "gan_run", "out_json", "out_png"):
    if not fv[name].value:
      _fail(f"--{name} is required")
  from jsr import errors, evaluate  # pylint: disable=import-outside-toplevel
  try:
    alphas, sets = parse_alphas(fv.alphas), parse_sets(fv.sets)
    metric_names = evaluate.parse_metrics(fv.metrics)
  except (ValueError, errors.UserError) as e:
    _fail(str(e))
  if not {"psnr", "lpips"} <= set(metric_names):
    _fail(f"--metrics={fv.metrics}: the plot needs psnr and lpips")
  t0 = time.perf_counter()
  try:
    result = curve(fv.psnr_run, fv.gan_run, fv.scale, alphas, sets, metric_names, fv.tmp,
                   keep_tmp=fv.keep_tmp, direct_endpoints=fv.direct_endpoints)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    _fail(str(e))
  title = fv.title or (f"{Path(result['psnr_run']).name} \u2192 {Path(result['gan_run']).name} "
                       f"x{fv.scale}")
  result = {"command": command_line(fv, FLAG_NAMES),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(), "seconds": round(time.perf_counter() - t0, 1), "title": title,
            **result}
  print_table(result)
  Path(fv.out_json).parent.mkdir(parents=True, exist_ok=True)
  Path(fv.out_json).write_text(json.dumps(result, indent=2) + "\n")
  plot(result, fv.out_png, title)
  print(f"wrote {fv.out_json} and {fv.out_png} in {result['seconds']:.0f} s")
  return result


def run():
  define_flags()
  logging.set_verbosity(logging.WARNING)
  app.run(lambda argv: main(argv) and None)  # app.run exits with main's return value.


if __name__ == "__main__":
  run()
