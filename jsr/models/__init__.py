"""Flax SR networks, one family per file, each with a `VARIANTS` table and a
`Model(*, variant=None, scale=..., **kw)` factory.

`get_model("edsr", variant="baseline", scale=4)` imports `jsr.models.edsr` and calls its `Model`;
there is no registry to keep in sync, a new family is a new file.
"""

from __future__ import annotations

import importlib


def get_model(name: str, **kw):
  """The flax module `jsr.models.<name>.Model(**kw)`."""
  try:
    module = importlib.import_module(f"jsr.models.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"jsr.models.{name}":
      raise
    raise ValueError(f"no model family {name!r}: expected a module jsr/models/{name}.py") from e
  return module.Model(**kw)
