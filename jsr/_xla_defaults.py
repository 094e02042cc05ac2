"""XLA:CPU options jsr sets by default, before JAX starts its CPU backend.

jaxlib 0.10 hands every convolution (forward and both gradients) to YNNPACK on the CPU. On x86
with AVX-512 its kernels run a train step's 3x3 convolutions at about 0.6x the speed of XLA's own
(Eigen) convolutions: EDSR-baseline x2 trains at 8.2 LR patches/s with YNNPACK and 13.1 without
it on our 2-core development machine (docs/performance.md, `scripts/bench_train.py`,
`scripts/bench_conv.py`). So `import jsr` appends

    --xla_cpu_experimental_ynn_fusion_type=-individual_convolution

to XLA_FLAGS, which keeps YNNPACK for everything else and gives convolutions back to XLA.

It is applied only where it was measured (jaxlib 0.10.x: an unknown flag aborts XLA at start-up,
so other versions are left alone), only when the user's XLA_FLAGS do not already choose the YNN
fusion types, and not at all with JSR_XLA_DEFAULTS=0. XLA reads XLA_FLAGS once, when the first
computation starts the backend: importing jsr after that changes nothing. The flag is read by the
CPU compiler only; GPU runs are unaffected.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
MEASURED_JAXLIB = ("0.10",)  # major.minor versions the flags were measured (and exist) in


def _jaxlib_minor() -> str:
  try:
    version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""
  return ".".join(version.split(".")[:2])


def apply(environ: MutableMapping[str, str] = os.environ, jaxlib: str | None = None) -> list[str]:
  """Appends CPU_FLAGS to environ["XLA_FLAGS"] where they apply; returns the flags it added."""
  if environ.get("JSR_XLA_DEFAULTS", "1").strip().lower() in ("0", "false", "no", "off"):
    return []
  if (jaxlib if jaxlib is not None else _jaxlib_minor()) not in MEASURED_JAXLIB:
    return []
  current = environ.get("XLA_FLAGS", "")
  added = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
  if added:
    environ["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
  return added
