"""Shared helpers of the benchmark scripts: device description, timers and the compile cache.

Importing this module points JAX's persistent compilation cache where ``compile_cache: auto``
does (``$JAX_COMPILATION_CACHE_DIR``, else the user cache directory); set
``JAX_COMPILATION_CACHE_DIR`` to an empty directory for cold compile figures. ``device_info()``
names the directory in use, so every figure says whether its compilations could be loaded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax

from augnes_jax import compile_cache

CACHE_DIR = compile_cache.configure("auto")
REPO = Path(__file__).resolve().parent.parent


def device_info() -> dict:
    """Returns the default device's platform, kind and count, plus host facts and the cache in use."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "host_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "compile_cache": str(jax.config.jax_compilation_cache_dir) if jax.config.jax_enable_compilation_cache else None,
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


def compile_and_run_time(fn, *, repeats: int = 3) -> tuple[float, float]:
    """Returns ``(compile_s, run_s)`` of ``fn()``, a call that waits for its results.

    ``run_s`` is the best of ``repeats`` warm calls; ``compile_s`` is what the first call took
    beyond that (tracing, compiling or loading from the persistent cache), never negative.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    run = best_time(fn, repeats=repeats, warmup=0)
    return max(first - run, 0.0), run


def timed_process(cmd: list[str], env: dict[str, str], *, timeout: float = 3600) -> float:
    """Returns the wall seconds of a command run to completion in ``REPO``; raises on failure."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {res.returncode}: {tail[0]}")
    return elapsed


def python_module(module: str, *args: str) -> list[str]:
    """Returns the command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def emit(obj: dict) -> None:
    """Prints the benchmark's one JSON object."""
    print(json.dumps(obj, indent=None, sort_keys=False))
