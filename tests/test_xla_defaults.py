"""jsr's default XLA:CPU options (jsr/_xla_defaults.py)."""

import os
import subprocess
import sys

import pytest

from jsr import _xla_defaults

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_appends_the_flag_on_the_measured_jaxlib():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  assert _xla_defaults.apply(env, jaxlib="0.10") == [FLAG]
  assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4 " + FLAG
  assert _xla_defaults.apply(env, jaxlib="0.10") == []  # idempotent
  assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1


@pytest.mark.parametrize("env, jaxlib", [
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"}, "0.10"),
    ({"JSR_XLA_DEFAULTS": "0"}, "0.10"),
    ({}, "0.11"),  # not measured there: an unknown flag would abort XLA at start-up
    ({}, ""),
])
def test_leaves_xla_flags_alone(env, jaxlib):
  before = dict(env)
  assert _xla_defaults.apply(env, jaxlib=jaxlib) == []
  assert env == before


def test_import_jsr_takes_convolutions_away_from_ynnpack():
  """In a fresh process, `import jsr` before JAX starts: the compiled gradient of a conv holds
  XLA convolutions that are not inside YNNPACK fusions (jaxlib 0.10's default puts them there)."""
  code = r"""
import re
import jsr, jax, jax.numpy as jnp
x, k = jnp.ones((2, 16, 16, 64)), jnp.ones((3, 3, 64, 64))  # YNNPACK takes 64-channel convs
conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
hlo = jax.jit(jax.grad(lambda x, k, g: (conv(x, k) * g).sum(), (0, 1))).lower(
    x, k, x).compile().as_text()
# The computations that YNN fusions call, and how many of them convolve.
called = [re.search(r"calls=(%[\w.\-]+)", l).group(1) for l in hlo.splitlines()
          if '"__ynn_fusion"' in l]
bodies = dict(re.findall(r"^(%[\w.\-]+) .*?\{\n(.*?)\n\}", hlo, re.S | re.M))
print("convolutions", hlo.count(" convolution("),
      "in_ynn", sum(" convolution(" in bodies[c] for c in called))
"""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JSR_XLA_DEFAULTS")}
  env["JAX_PLATFORMS"] = "cpu"
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  assert int(out[1]) >= 2, out  # both gradients are convolutions
  if _xla_defaults._jaxlib_minor() in _xla_defaults.MEASURED_JAXLIB:
    assert out[3] == "0", out
    # ... and the check can fail: with the defaults off, jaxlib 0.10 fuses them into YNNPACK.
    env["JSR_XLA_DEFAULTS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[3]) >= 1, out
