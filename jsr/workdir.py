"""A run's config.json: written once per run by host 0, read back by inference, and compared on
resume so that a rerun with another loss or learning rate cannot silently continue a run (and
overwrite the record of how it was trained).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from jsr import errors

# Keys that say how a run is launched, not what it trains: they may differ on resume.
LAUNCH_KEYS = ("allow_config_change", "distributed")


class ConfigChangedError(errors.UserError):
  """A rerun's config differs from the one its workdir was trained with."""


def config_path(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "config.json")


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """workdir/config.json as a ConfigDict; FileNotFoundError / ValueError naming the workdir."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  path = config_path(workdir)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"workdir {workdir} has no config.json: not a jsr training workdir "
                            "(or its run has not started)")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not a readable config ({type(e).__name__}: {e})") from e
  for key in ("method", "scale", "seed", "data"):
    if key not in config:
      raise ValueError(f"{path}: config has no {key!r}; not a jsr training config")
  return config


def save_config(config: ml_collections.ConfigDict, workdir: str,
                keep_old_as_step: int | None = None) -> None:
  """Writes workdir/config.json (host 0); with `keep_old_as_step`, the previous file is kept as
  config.<step>.json (an allowed config change on resume, taking effect at that step)."""
  if jax.process_index() != 0:
    return
  path = config_path(workdir)
  if keep_old_as_step is not None and os.path.isfile(path):
    os.replace(path, os.path.join(os.path.dirname(path), f"config.{keep_old_as_step}.json"))
  with open(path, "w") as f:
    f.write(config.to_json_best_effort(indent=2))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def config_diff(before: dict, now: dict, ignore: tuple[str, ...] = ()) -> list[str]:
  """Dotted keys whose values differ ("optim.lr: 0.001 -> 0.0003"), sorted."""
  a, b = _flatten(before), _flatten(now)
  keys = sorted(k for k in set(a) | set(b)
                if a.get(k, "<absent>") != b.get(k, "<absent>") and k.split(".")[0] not in ignore)
  return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys]


def check_unchanged(config: ml_collections.ConfigDict, workdir: str, *, allow: bool = False,
                    what: str = "was trained with") -> list[str]:
  """The differing keys between workdir/config.json and `config` ([] if none, or no file);
  ConfigChangedError naming them unless `allow`. Nothing is written: see `save_config`."""
  path = config_path(workdir)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    before = json.load(f)
  diff = config_diff(before, json.loads(config.to_json_best_effort()), ignore=LAUNCH_KEYS)
  if diff and not allow:
    raise ConfigChangedError(
        f"{workdir} {what} another config; it differs in:\n  " + "\n  ".join(diff) +
        "\nUse a new --workdir, or pass --config.allow_config_change=True to continue with the "
        "new config (the old one is kept as config.<step>.json).")
  return diff
