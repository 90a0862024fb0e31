"""Spreading a sweep over devices and processes (shell layer).

Every bucket's variant axis is split over a 1-D ``Mesh`` axis ``variant``, padded up to a
multiple of the device count (:func:`padded_size`, :func:`pad_rows`); :func:`shard_bucket_fns`
runs each device's slice under ``shard_map``. :class:`Placement` puts a tree's leading axis onto
the mesh. :func:`host_copy` gathers arrays held by several processes, :func:`sync_processes`
waits at a barrier and :func:`init_distributed` joins a multi-process run.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from augnes_jax.config import Config, ConfigError
from augnes_jax.epoch import BucketFns
from augnes_jax.sweep_errors import SweepError

__all__ = ["Placement", "host_copy", "init_distributed", "make_mesh", "pad_rows", "padded_size",
           "shard_bucket_fns", "sync_processes"]



def make_mesh(devices: str):
    """Returns a 1-D ``Mesh`` with axis ``variant`` over the requested devices, or None for one device.

    ``devices`` is ``"auto"`` (every visible device, across all processes) or a count. A run
    spread over several processes must use all their devices: a process whose devices are not
    on the mesh would have nothing to compute.
    """
    available = jax.devices()
    n = len(available) if devices == "auto" else int(devices)
    if n > len(available):
        raise SweepError(f"devices={n} but only {len(available)} {available[0].platform} device(s) are visible")
    if jax.process_count() > 1 and n != len(available):
        raise SweepError(f"devices={n} but a run over {jax.process_count()} processes must use all "
                         f"{len(available)} devices; set devices=auto")
    if n <= 1:
        return None
    return jax.sharding.Mesh(np.asarray(available[:n]), ("variant",))


def padded_size(n: int, num_devices: int) -> int:
    """Returns ``n`` rounded up to a multiple of ``num_devices`` (the length of a padded variant axis)."""
    return -(-n // num_devices) * num_devices


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Returns ``x`` padded along axis 0 to ``size`` rows by repeating its last row.

    A padded row repeats the last variant's seed, width and capacity, so it computes exactly what
    that variant computes: it never adds a new kind of work, and nothing reads it back.
    """
    pad = size - x.shape[0]
    return x if pad == 0 else np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)


def shard_bucket_fns(fns: BucketFns, mesh) -> BucketFns:
    """Returns ``fns`` with every device running the jitted vmap on its own slice of the variant axis.

    The arguments keep their ``NamedSharding(mesh, P("variant"))`` placement; per-variant
    arguments are split along ``variant`` and shared ones (validation set, evaluation keys and
    goals) are replicated. The body is wrapped in ``shard_map`` rather than left to the automatic
    partitioner because the planner's ``top_k`` has no rule for a sharded batch dimension: the
    partitioner would all-gather every candidate's return at every planning step. Under
    ``shard_map`` an epoch makes no cross-device transfer at all, whatever the core functions use.
    """
    if mesh is None:
        return fns
    per_variant, shared = jax.sharding.PartitionSpec("variant"), jax.sharding.PartitionSpec()

    def per_device(fn, in_specs):
        # check_vma=False: the core's scans start from constants, which the varying-axis type
        # check would reject inside shard_map; every output is per-variant, so nothing is lost
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=per_variant, check_vma=False)

    def collect(states, buffers, keys, goal_probs, use_random: bool):
        body = per_device(functools.partial(fns.collect, use_random=use_random), (per_variant,) * 4)
        return body(states, buffers, keys, goal_probs)

    return BucketFns(
        collect=jax.jit(collect, static_argnames=("use_random",)),
        train=jax.jit(per_device(fns.train, (per_variant,) * 3)),
        evaluate=jax.jit(per_device(fns.evaluate, (per_variant, shared))),
        control=jax.jit(per_device(fns.control, (per_variant, shared, shared))),
    )


def host_copy(tree):
    """Returns ``tree`` with every array copied to host numpy.

    An array spread over several processes' devices is first gathered (a collective: every
    process must call this at the same point); host-local arrays are copied as they are.
    """
    def gather(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(x, tiled=True)
        return x

    return jax.device_get(jax.tree.map(gather, tree))


def sync_processes(name: str) -> None:
    """Waits until every process of a multi-process run reaches the barrier ``name`` (no-op alone)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def init_distributed(cfg: Config) -> bool:
    """Returns True after joining a multi-process run, False when the run is single-process.

    A run is multi-process when the config sets ``distributed: true`` or the environment sets
    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0). ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` give the process count and this process's index; JAX itself reads only
    the coordinator address, so they are passed on here. Left unset, JAX detects them on Slurm,
    Open MPI, Kubernetes and Cloud TPU.

    Raises:
      ConfigError: one of those variables is not a non-negative integer.
      SweepError: ``jax.distributed.initialize()`` failed.
    """
    coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if not (cfg.distributed or coordinator):
        return False
    kwargs: dict[str, int] = {}
    for var, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        raw = os.environ.get(var)
        if raw is not None and raw.strip():
            if not raw.strip().isdigit():
                raise ConfigError(var, f"must be a non-negative integer, got {raw!r}")
            kwargs[arg] = int(raw)
    try:
        jax.distributed.initialize(coordinator_address=coordinator, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SweepError(f"jax.distributed.initialize() failed: {first} (set JAX_COORDINATOR_ADDRESS, "
                         f"JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host)") from None
    return True


class Placement:
    """Where a sweep's per-variant arrays live: the mesh (None for one device) and its sharding."""

    def __init__(self, devices: str):
        self.mesh = make_mesh(devices)
        self.num_devices = 1 if self.mesh is None else int(self.mesh.devices.size)
        self.sharding = (None if self.mesh is None else
                         jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("variant")))
        # jit rather than device_put: device_put cannot place an array held by one process on
        # devices of other processes, while a jitted identity with out_shardings can
        self._place = jax.jit(lambda tree: tree, out_shardings=self.sharding)

    def shard(self, tree):
        """Returns ``tree`` placed with its leading (variant) axis split over the mesh."""
        if self.mesh is None:
            return tree
        return self._place(tree)

    def padded(self, n: int) -> int:
        """Returns ``n`` rounded up to a multiple of the device count."""
        return padded_size(n, self.num_devices)
