"""Shared helpers of the benchmark scripts: device description and a best-of-N timer."""

from __future__ import annotations

import json
import os
import platform
import time

import jax


def device_info() -> dict:
    """Returns the default device's platform, kind and count, plus host facts."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "host_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
    }


def best_time(fn, *, repeats: int = 3, warmup: int = 1) -> float:
    """Returns the best wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def emit(obj: dict) -> None:
    """Prints the benchmark's one JSON object."""
    print(json.dumps(obj, indent=None, sort_keys=False))
