"""The machine a figure was measured on: CPU model and its vector-unit flags (AVX-512 vs AVX2
changes CPU figures ~2.4x), core count, Python, XLA_FLAGS. Imported by the benchmark scripts."""

import os
import platform


def machine() -> dict:
  cpu, simd = "", []
  try:
    lines = open("/proc/cpuinfo").read().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), "")
    flags_line = next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), [])
    # The vector units XLA's and oneDNN's kernels pick from.
    simd = sorted(f for f in flags_line if f.startswith(("avx", "fma", "amx", "f16c")))
  except OSError:
    pass
  return {"host": platform.node(), "cpu": cpu, "cpu_flags": " ".join(simd),
          "cpu_count": os.cpu_count(), "python": platform.python_version(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}
