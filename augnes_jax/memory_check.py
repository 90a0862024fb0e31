"""Will a sweep's variants fit in memory? An estimate of their bytes and the check (shell layer)."""

from __future__ import annotations

import math
import os

import jax

from augnes_jax.config import Config
from augnes_jax.sweep_errors import SweepError
from augnes_jax.variants import Bucket, Variant, variant_num_params

__all__ = ["available_memory_bytes", "check_memory", "estimate_bytes"]


def available_memory_bytes() -> int | None:
    """Returns the bytes available for the sweep's arrays on the default device, if known."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            stats = dev.memory_stats() or {}
            limit = stats.get("bytes_limit")
            if limit:
                return int(limit) - int(stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - memory_stats is optional on some backends
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def estimate_bytes(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int, num_devices: int = 1) -> int:
    """Returns an estimate of the device bytes the variants need (buffers, params, optimizer).

    With ``num_devices`` > 1 every bucket's variant axis counts padded up to a multiple of it.
    """
    item = 4 * (2 * obs_dim + act_dim + 1) + 5  # obs, action, next_obs, goal id; reward (4) and terminated (1)
    total = 0
    for b in buckets:
        v = -(-len(b.variants) // num_devices) * num_devices
        n_params = variant_num_params(
            Variant("", b.max_width, 0, 0, b.name, 0, b.max_width, b.num_layers), obs_dim, act_dim)
        total += v * b.max_buffer_size * item  # ring buffers
        total += v * n_params * 4 * 3  # params + adam moments
        collect = math.ceil(cfg.samples_per_epoch / cfg.env.episode_length) * cfg.env.episode_length
        total += v * collect * item * 2  # collected transitions in flight
        p = cfg.planner
        total += v * collect // cfg.env.episode_length * p.num_samples * p.horizon * (obs_dim + act_dim) * 4
    return total


def check_memory(cfg: Config, buckets: list[Bucket], obs_dim: int, act_dim: int, num_devices: int = 1) -> None:
    """Raises :class:`SweepError` when the variants will not fit in the available memory.

    An accelerator holds ``1/num_devices`` of every variant axis; CPU devices of one process
    share the host's memory, so there only the processes divide the total.
    """
    need = estimate_bytes(cfg, buckets, obs_dim, act_dim, num_devices)
    share = num_devices if jax.devices()[0].platform != "cpu" else jax.process_count()
    need = need // max(share, 1)
    have = available_memory_bytes()
    if have is not None and need > 0.8 * have:
        n = sum(len(b.variants) for b in buckets)
        raise SweepError(
            f"the {n} variants need about {need / 2**30:.2f} GiB but only {have / 2**30:.2f} GiB is available; "
            f"use fewer variants (variants.hidden_dims / buffer_sizes / seeds) or a smaller largest buffer "
            f"(variants.buffer_sizes max = {max(cfg.variants.buffer_sizes)})"
        )
