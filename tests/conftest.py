"""Shared pytest setup.

TensorFlow is the optional `tf` extra (pyproject.toml): `pip install -e ".[test]"` alone gives the
numpy input pipeline and metrics.jsonl, and the tests that exercise TensorFlow (tf.data, tfds
sources, clu's TensorBoard writers) are marked and skip with a reason there:

  @pytest.mark.requires_tf                          # needs `tensorflow`
  @pytest.mark.requires_tf("tensorflow_datasets")   # needs these modules as well
"""

from __future__ import annotations

import importlib.util

import pytest

TF_INSTALL = "pip install -e '.[tf]'"


def missing_modules(names) -> list[str]:
  """The modules among `names` that cannot be imported here (find_spec only: nothing is run)."""
  missing = []
  for name in names:
    try:
      found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # A parent package absent, or a None entry in sys.modules.
      found = False
    if not found:
      missing.append(name)
  return missing


HAS_TF = not missing_modules(["tensorflow"])


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "requires_tf(*modules): skip unless TensorFlow (and these modules, e.g. "
      f"tensorflow_datasets) can be imported; they come with {TF_INSTALL}")


def pytest_collection_modifyitems(config, items):
  for item in items:
    for mark in item.iter_markers("requires_tf"):
      missing = missing_modules(["tensorflow", *mark.args])
      if missing:
        item.add_marker(pytest.mark.skip(
            reason=f"needs TensorFlow ({', '.join(missing)} missing): {TF_INSTALL}"))
        break
