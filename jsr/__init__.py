"""jsr: single-image super-resolution in JAX and Flax."""

from jsr import _xla_defaults

_xla_defaults.apply()
