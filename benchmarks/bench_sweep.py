"""One sweep epoch of V variants three ways: vmapped with masking, vmapped with buckets, sequential;
and a whole sweep with its artifacts written synchronously or overlapping the next epoch.

* masked: every width in one bucket allocated at the largest width (``bucket_ratio`` huge);
* bucketed: widths grouped into buckets within ``bucket_ratio`` (the sweep's default);
* sequential: the same variants run one after another, each alone (dense at its own width).

Each is timed on a warm epoch (compilation excluded: an epoch is run once first) with the same
collection policy, so the ratios compare like with like; that first epoch's extra time is
reported apart as ``compile_s``. Prints one JSON object with the ratios
and the useful-FLOP fraction of each layout.

``writes`` times whole sweeps (``Sweep.run``: every artifact, checkpoint and the controller) in
this process, once with each epoch's artifacts written before the next epoch starts
(``synchronous_writes=True``) and once with them written on the executor while the next epoch
computes (the default), after one untimed sweep that fills the compilation cache; ``saved_s`` is
the difference of the best of ``--write-repeats`` runs each. ``--only writes`` skips the layouts.

    python benchmarks/bench_sweep.py [--config configs/default.yaml] [--only layouts|writes] [key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(__file__))
from common import device_info, emit  # noqa: E402

from augnes_jax.config import load_config  # noqa: E402
from augnes_jax.sweep import Sweep  # noqa: E402


def epoch_time(cfg, *, epochs: int = 2) -> tuple[float, Sweep, dict[str, float], float]:
    """Returns the best warm epoch time (s) of a sweep built from ``cfg`` (no I/O), the sweep,
    the seconds of each phase of one more warm epoch (every phase waited for), and the seconds
    the first epoch took beyond the best warm one (compiling, or loading from the cache)."""
    # the run directory is only checked for writing: run_epoch writes nothing
    with tempfile.TemporaryDirectory() as run_dir:
        sweep = Sweep(cfg, run_dir, progress=False)
    t0 = time.perf_counter()
    # compile the planner-collection path
    jax.block_until_ready(sweep.run_epoch(cfg.planner.random_collect_epochs))
    first = time.perf_counter() - t0
    best = float("inf")
    for e in range(epochs):
        t0 = time.perf_counter()
        jax.block_until_ready(sweep.run_epoch(cfg.planner.random_collect_epochs + e))
        best = min(best, time.perf_counter() - t0)
    phases: dict[str, float] = {}
    sweep.run_epoch(cfg.planner.random_collect_epochs + epochs, timings=phases)
    return best, sweep, phases, max(first - best, 0.0)


def sweep_seconds(cfg, *, synchronous: bool) -> float:
    """Returns the wall seconds of one whole sweep of ``cfg`` into a fresh run directory."""
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        Sweep(cfg, os.path.join(root, "run"), progress=False, synchronous_writes=synchronous).run()
        return time.perf_counter() - t0


def write_overlap(cfg, *, repeats: int) -> dict:
    """Returns whole-sweep seconds with synchronous and with overlapped writes, and the time saved."""
    sweep_seconds(cfg, synchronous=False)  # untimed: compiles (and fills the persistent cache)
    runs: dict[str, list[float]] = {"synchronous": [], "overlapped": []}
    for _ in range(repeats):
        runs["synchronous"].append(sweep_seconds(cfg, synchronous=True))
        runs["overlapped"].append(sweep_seconds(cfg, synchronous=False))
    best = {k: min(v) for k, v in runs.items()}
    return {"epochs": cfg.epochs, "sweep_s": best, "runs_s": runs,
            "saved_s": best["synchronous"] - best["overlapped"],
            "saved_fraction": 1.0 - best["overlapped"] / best["synchronous"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--epochs", type=int, default=1, help="warm epochs timed per layout (best of)")
    ap.add_argument("--only", choices=("layouts", "writes"), help="measure only the epoch layouts or the writes")
    ap.add_argument("--write-repeats", type=int, default=1, help="whole sweeps timed per write mode (best of)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    writes = write_overlap(cfg, repeats=args.write_repeats) if args.only != "layouts" else None
    if args.only == "writes":
        v = cfg.variants
        emit({"benchmark": "sweep_writes", "device": device_info(),
              "sizes": {"variants": len(v.hidden_dims) * len(v.buffer_sizes) * len(v.seeds), "epochs": cfg.epochs,
                        "samples_per_epoch": cfg.samples_per_epoch},
              "writes": writes})
        return
    v = cfg.variants
    n_variants = len(v.hidden_dims) * len(v.buffer_sizes) * len(v.seeds)

    masked_cfg = dataclasses.replace(cfg, variants=dataclasses.replace(v, bucket_ratio=1_000_000))
    t_masked, s_masked, _, c_masked = epoch_time(masked_cfg, epochs=args.epochs)
    t_bucket, s_bucket, ph_bucket, c_bucket = epoch_time(cfg, epochs=args.epochs)

    t_seq = c_seq = 0.0
    ph_seq: dict[str, float] = {}
    for h in v.hidden_dims:
        for b in v.buffer_sizes:
            for s in v.seeds:
                one = dataclasses.replace(cfg, variants=dataclasses.replace(
                    v, hidden_dims=(h,), buffer_sizes=(b,), seeds=(s,)))
                t, _, ph, c = epoch_time(one, epochs=args.epochs)
                t_seq += t
                c_seq += c
                for k, x in ph.items():
                    ph_seq[k] = ph_seq.get(k, 0.0) + x

    emit({
        "benchmark": "sweep_epoch",
        "device": device_info(),
        "sizes": {"variants": n_variants, "hidden_dims": list(v.hidden_dims), "buffer_sizes": list(v.buffer_sizes),
                  "seeds": list(v.seeds), "samples_per_epoch": cfg.samples_per_epoch,
                  "train_steps": cfg.world_model.train_steps_per_epoch,
                  "control_episodes_per_variant": cfg.planner.episodes_per_goal * s_bucket.goal_ids.shape[0]},
        "epoch_s": {"vmapped_masked": t_masked, "vmapped_buckets": t_bucket, "sequential": t_seq},
        # compile_s: the first planner epoch beyond a warm one (compiling, or loading from the
        # persistent cache named in device.compile_cache); run_s: the best warm epoch
        "compile_s": {"vmapped_masked": c_masked, "vmapped_buckets": c_bucket, "sequential": c_seq},
        "run_s": {"vmapped_masked": t_masked, "vmapped_buckets": t_bucket, "sequential": t_seq},
        "speedup_vs_sequential": {"vmapped_masked": t_seq / t_masked, "vmapped_buckets": t_seq / t_bucket},
        "buckets": [b.name for b in s_bucket.buckets],
        "useful_flop_fraction": {"vmapped_masked": s_masked.flop_fraction, "vmapped_buckets": s_bucket.flop_fraction,
                                 "sequential": 1.0},
        "variant_epochs_per_s": {"vmapped_buckets": n_variants / t_bucket, "sequential": n_variants / t_seq},
        # Where the time goes (one more warm epoch, each phase waited for): a phase that costs the
        # buckets about what it costs the variants one by one is compute-bound; the reference
        # (oracle and baseline episodes) is computed once per epoch by the sweep, once per
        # variant in sequence.
        "phase_s": {"vmapped_buckets": {k: round(x, 3) for k, x in ph_bucket.items()},
                    "sequential": {k: round(x, 3) for k, x in ph_seq.items()}},
        # a whole sweep with its artifacts written synchronously, and overlapping the next epoch
        "writes": writes,
    })


if __name__ == "__main__":
    main()
