"""Devices: one 1-D mesh named "data" over every device of every host; the batch is sharded along
it, the state (and frozen parameters) replicated.

Multi-host: each host builds only the rows of the global batch that its own devices hold
(`host_rows`), and `shard_batch` assembles the global array from them with
`jax.make_array_from_callback`. Batches are a pure function of (seed, step) (jsr.data), so the
global batch is the same whatever the number of hosts or the order of the devices in the mesh.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np


def make_mesh() -> jax.sharding.Mesh:
  return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def check_batch_size(batch_size: int) -> None:
  n = jax.device_count()
  if batch_size % n:
    raise ValueError(f"config.data.batch_size={batch_size} must be divisible by the number of "
                     f"devices ({n}, over {jax.process_count()} host(s))")


def _row_slices(mesh: jax.sharding.Mesh, global_batch: int) -> list[slice]:
  """The batch rows of each of this host's devices (one slice per device)."""
  indices = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  return [idx[0] for idx in indices.values()]


def host_rows(mesh: jax.sharding.Mesh, global_batch: int) -> np.ndarray:
  """Sorted indices of the global batch rows held by this host's devices."""
  rows = set()
  for s in _row_slices(mesh, global_batch):
    rows.update(range(*s.indices(global_batch)))
  return np.asarray(sorted(rows), np.int64)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh, global_batch: int,
                rows: np.ndarray) -> dict[str, jax.Array]:
  """This host's rows (`batch[k][i]` is global row `rows[i]`) -> global arrays sharded along
  "data"; each device gets exactly its rows, whatever the device order."""
  sharding = batch_sharding(mesh)
  position = {int(r): i for i, r in enumerate(rows)}

  def put(x: np.ndarray) -> jax.Array:
    if x.shape[0] != len(rows):
      raise ValueError(f"host batch has {x.shape[0]} rows, expected {len(rows)}")

    def rows_of(index):
      start, stop, step = index[0].indices(global_batch)
      return x[[position[r] for r in range(start, stop, step)]]

    return jax.make_array_from_callback((global_batch,) + x.shape[1:], sharding, rows_of)

  return {k: put(v) for k, v in batch.items()}
