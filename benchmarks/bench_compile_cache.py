"""A sweep as a process, cold and warm: what the persistent compilation cache saves.

Runs the same small default-like sweep (``configs/default.yaml``'s variants, environment and
planner, fewer samples and train steps) as ``python -m augnes_jax.sweep`` subprocesses, each
timed end to end:

* cold: an empty cache directory, so every program is compiled (and stored);
* warm: the same directory again, so stored programs are loaded instead;
* off: ``compile_cache=off``, the baseline without any cache, in the same run.

``compile_s`` is cold minus warm: the compilation the cache saved. Prints one JSON object.

    python benchmarks/bench_compile_cache.py [--config configs/default.yaml] [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import REPO, device_info, emit, python_module, timed_process  # noqa: E402

from augnes_jax import compile_cache  # noqa: E402
from augnes_jax.config import load_config  # noqa: E402

# default-like: the default grid and planner, less data per epoch; two epochs so both the
# random and the planner collection paths compile
SMALL = ["epochs=2", "samples_per_epoch=1000", "world_model.train_steps_per_epoch=50",
         "world_model.val_size=500"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--no-off", action="store_true", help="skip the run without a cache")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    overrides = SMALL + list(args.overrides)
    cfg = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory(prefix="bench_compile_cache_") as tmp:
        work = Path(tmp)
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env[compile_cache.ENV_VAR] = str(work / "cache")
        for var in ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
                    "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"):
            env.pop(var, None)

        def sweep(name: str, *extra: str) -> float:
            cmd = python_module("augnes_jax.sweep", "--no-progress", "--config", args.config,
                                "--run-dir", str(work / name), *overrides, *extra)
            return timed_process(cmd, env)

        cold = sweep("cold")
        entries = sorted((work / "cache").glob("*-cache"))
        cache_bytes = sum(p.stat().st_size for p in entries)
        print(f"cold {cold:.1f} s, {len(entries)} entries", file=sys.stderr, flush=True)
        warm = sweep("warm")
        print(f"warm {warm:.1f} s", file=sys.stderr, flush=True)
        off = None if args.no_off else sweep("off", "compile_cache=off")
    v = cfg.variants
    device = device_info()
    device["compile_cache"] = "a temporary directory per benchmark run"
    emit({
        "benchmark": "compile_cache",
        "device": device,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "sizes": {"variants": len(v.hidden_dims) * len(v.buffer_sizes) * len(v.seeds),
                  "hidden_dims": list(v.hidden_dims), "buffer_sizes": list(v.buffer_sizes), "seeds": list(v.seeds),
                  "epochs": cfg.epochs, "samples_per_epoch": cfg.samples_per_epoch,
                  "train_steps": cfg.world_model.train_steps_per_epoch,
                  "cache_entries": len(entries), "cache_bytes": cache_bytes},
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "ratio": round(warm / cold, 3),
        "compile_s": round(cold - warm, 2),
        "off_s": None if off is None else round(off, 2),
    })


if __name__ == "__main__":
    main()
