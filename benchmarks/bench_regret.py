"""Benchmark: per-goal regret aggregation and judgments ingestion. Prints one JSON object.

Aggregation: ``regret.aggregate`` (jitted segment sums: count, sum, mean, M2, min, max) in
rows/s for N in {1e6, 1e7} and G in {4, 100, 10000}, against ``np.bincount`` in the same
process (count, sum and a two-pass M2 in float64: the moments bincount can give; min and max
via ``np.minimum.at`` are timed separately), with the largest errors against float64.

Ingestion: ``read_judgments`` on a 1M-line judgments.jsonl written by ``JudgmentWriter`` into
a temporary directory, in lines/s, against raw ``polars.read_ndjson`` in its default settings
(no checks, columns left in polars), pyarrow's ``read_json`` where pyarrow is installed, and a
stdlib ``json.loads`` line loop, on the same file in the same process (timed in turns, best of
5). ``read_judgments`` checks every line but leaves the columns no check reads in polars until
they are read, so it is also timed with every field read afterwards (all converted to NumPy
arrays and lists); then ``iter_judgments`` in its default 64 MiB batches; and the same against
polars on the log with a timestamp of its own on every line (nothing shared between
neighbouring lines).

    python benchmarks/bench_regret.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compile_and_run_time  # noqa: E402  (importing it configures the compile cache)

from augnes_jax import regret  # noqa: E402
from augnes_jax.judgments import (  # noqa: E402
    Judgments,
    JudgmentWriter,
    iter_judgments,
    make_judgments,
    read_judgments,
)


def best_of(fn, repeats: int) -> float:
    """Returns the fastest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def numpy_moments(values: np.ndarray, goals: np.ndarray, num_goals: int):
    count = np.bincount(goals, minlength=num_goals)
    total = np.bincount(goals, weights=values, minlength=num_goals)
    mean = total / np.maximum(count, 1)
    dev = values - mean[goals]
    m2 = np.bincount(goals, weights=dev * dev, minlength=num_goals)
    return count, total, mean, m2


def numpy_min_max(values: np.ndarray, goals: np.ndarray, num_goals: int):
    lo = np.full(num_goals, np.inf)
    hi = np.full(num_goals, -np.inf)
    np.minimum.at(lo, goals, values)
    np.maximum.at(hi, goals, values)
    return lo, hi


def bench_aggregation(n: int, num_goals: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    # Regret-like values: non-negative, skewed, far from zero mean relative to their spread.
    values = (50.0 + rng.gamma(2.0, 1.5, n)).astype(np.float32)
    goals = rng.integers(0, num_goals, n).astype(np.int32)
    v_dev, g_dev = jnp.asarray(values), jnp.asarray(goals)

    def run_jit():
        jax.block_until_ready(regret.aggregate(v_dev, g_dev, num_goals))

    compile_s, _ = compile_and_run_time(run_jit, repeats=1)
    t_jit = best_of(run_jit, repeats)
    t_np = best_of(lambda: numpy_moments(values, goals, num_goals), repeats)
    t_minmax = best_of(lambda: numpy_min_max(values, goals, num_goals), 1)

    agg = jax.tree.map(np.asarray, regret.aggregate(v_dev, g_dev, num_goals))
    count, total, mean, m2 = numpy_moments(values.astype(np.float64), goals, num_goals)
    naive = np.asarray(
        jax.jit(lambda v, g: jax.ops.segment_sum(v, g, num_segments=num_goals))(v_dev, g_dev)
    )
    return {
        "n": n,
        "num_goals": num_goals,
        "jit_s": t_jit,
        "compile_s": compile_s,
        "run_s": t_jit,
        "jit_rows_per_s": n / t_jit,
        "bincount_s": t_np,
        "bincount_rows_per_s": n / t_np,
        "speedup_vs_bincount": t_np / t_jit,
        "bincount_plus_minmax_s": t_np + t_minmax,
        "speedup_vs_bincount_plus_minmax": (t_np + t_minmax) / t_jit,
        "count_exact": bool(np.array_equal(agg.count, count)),
        "max_abs_err_sum": float(np.max(np.abs(agg.sum - total))),
        "max_rel_err_sum": float(np.max(np.abs(agg.sum - total) / np.abs(total))),
        "max_abs_err_mean": float(np.max(np.abs(agg.mean - mean))),
        "max_rel_err_m2": float(np.max(np.abs(agg.m2 - m2) / m2)),
        "naive_float32_segment_sum_max_rel_err": float(np.max(np.abs(naive - total) / total)),
    }


def write_judgments_file(path: Path, lines: int, *, per_line_ts: bool = False) -> float:
    """Returns seconds spent writing ``lines`` judgments through JudgmentWriter.

    As a sweep writes them, every batch of 100k shares its run, variant, epoch and timestamp;
    ``per_line_ts`` gives each line its own timestamp instead, as a log written one episode at
    a time by another system would.
    """
    rng = np.random.default_rng(1)
    batch = 100_000
    t = time.perf_counter()
    with JudgmentWriter(path) as w:
        for lo in range(0, lines, batch):
            n = min(batch, lines - lo)
            reward = rng.normal(-10, 3, n).astype(np.float32)
            optimal = reward + np.abs(rng.normal(2, 1, n)).astype(np.float32)
            baseline = reward - rng.normal(5, 1, n).astype(np.float32)
            seed = (lo // batch) % 3
            recs = make_judgments(
                    rng.integers(0, 10, n), reward, optimal, baseline, np.arange(lo, lo + n),
                    run="bench", variant=f"h64-b10000-s{seed}", hidden_dim=64,
                    buffer_size=10000, seed=seed, epoch=lo // batch, strategy="cem",
                    oracle="value_iteration",
                )  # fmt: skip
            if per_line_ts:
                for i, rec in enumerate(recs, lo):
                    rec["ts"] = f"2026-01-01T{i // 3_600_000 % 24:02d}:{i // 60_000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z"
            w.append(recs)
    return time.perf_counter() - t


def stdlib_loop(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return len(rows)


def best_in_turns(fns: dict, repeats: int) -> dict:
    """Returns each function's fastest wall time, the functions timed in turns (one warm-up
    call each), so a change in the machine's load falls on all of them alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def read_every_field(path: Path) -> Judgments:
    """Returns ``read_judgments(path)`` with every field read (converted from polars)."""
    j = read_judgments(path)
    for f in dataclasses.fields(j):
        getattr(j, f.name)
    return j


def pyarrow_reader():
    """Returns pyarrow's JSON reader, or None where pyarrow is not installed."""
    try:
        from pyarrow import json as pa_json
    except ImportError:
        return None
    return pa_json.read_json


def readers(path: Path, read_json) -> dict:
    """Returns the readers timed on ``path``: ours, ours with every field read, raw polars,
    and pyarrow where ``read_json`` is not None."""
    fns = {
        "ours": lambda: read_judgments(path),
        "polars": lambda: pl.read_ndjson(path),
        "ours_every_field": lambda: read_every_field(path),
    }
    if read_json is not None:
        fns["pyarrow"] = lambda: read_json(path)
    return fns


def bench_ingestion(lines: int, repeats: int) -> dict:
    read_json = pyarrow_reader()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "judgments.jsonl"
        t_write = write_judgments_file(path, lines)
        size = path.stat().st_size
        path.read_bytes()  # every reader starts from the page cache
        assert len(read_every_field(path)) == lines == pl.read_ndjson(path).height
        batches = {"batches": lambda: sum(len(b) for b in iter_judgments(path))}
        t = best_in_turns(readers(path, read_json) | batches, repeats)
        t0 = time.perf_counter()
        stdlib_loop(path)  # one run: it is the slow side
        t_std = time.perf_counter() - t0
        path.unlink()
        write_judgments_file(path, lines, per_line_ts=True)
        size_ts = path.stat().st_size
        path.read_bytes()
        assert len(read_judgments(path)) == lines
        t_ts = best_in_turns(readers(path, read_json), repeats)
    return {
        "lines": lines,
        "file_mb": size / 1e6,
        "per_line_ts_file_mb": size_ts / 1e6,
        "write_s": t_write,
        "read_judgments_s": t["ours"],
        "read_judgments_lines_per_s": lines / t["ours"],
        "iter_judgments_64mib_lines_per_s": lines / t["batches"],
        "polars_read_ndjson_lines_per_s": lines / t["polars"],
        "read_judgments_vs_polars": t["polars"] / t["ours"],
        "read_judgments_every_field_vs_polars": t["polars"] / t["ours_every_field"],
        "pyarrow_read_json_lines_per_s": lines / t["pyarrow"] if "pyarrow" in t else None,
        "read_judgments_per_line_ts_lines_per_s": lines / t_ts["ours"],
        "polars_read_ndjson_per_line_ts_lines_per_s": lines / t_ts["polars"],
        "read_judgments_vs_polars_per_line_ts": t_ts["polars"] / t_ts["ours"],
        "read_judgments_every_field_vs_polars_per_line_ts": t_ts["polars"] / t_ts["ours_every_field"],
        "pyarrow_read_json_per_line_ts_lines_per_s": (
            lines / t_ts["pyarrow"] if "pyarrow" in t_ts else None
        ),
        "stdlib_json_loop_s": t_std,
        "stdlib_json_loop_lines_per_s": lines / t_std,
        "speedup_vs_stdlib": t_std / t["ours"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (N 1e5/1e6, 100k lines)")
    args = parser.parse_args(argv)
    sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    lines = 100_000 if args.quick else 1_000_000
    dev = jax.devices()[0]
    result = {
        "benchmark": "bench_regret",
        "device": {"platform": dev.platform, "device_kind": dev.device_kind},
        "cpu_count": os.cpu_count(),
        "polars": pl.__version__,
        "quick": args.quick,
        "aggregation": [
            bench_aggregation(n, g, repeats=3) for n in sizes for g in (4, 100, 10_000)
        ],
        "ingestion": bench_ingestion(lines, repeats=5),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
