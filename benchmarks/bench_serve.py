"""Times one exporter scrape of a large run while the sweep appends judgments.

A synthetic run holds ``judgments.jsonl`` written by the sweep's own writer (variants x goals x
episodes per goal, epoch by epoch) and a ``strategy_stats.json`` built from it. The exporter's
scrape (collect + Prometheus text, what ``GET /metrics`` returns) is timed three ways:

- cold: the first scrape of a fresh collector, which parses the whole file;
- incremental: after one more epoch of judgments is appended (not timed), as a live sweep does;
- unchanged: nothing appended.

The in-process baseline is a scrape that re-reads everything: a fresh collector per scrape, i.e.
what an exporter without the incremental reader pays. ``read_judgments`` of the whole file (the
project's fastest full reader) is reported beside it. Prints one JSON object.

Usage: python benchmarks/bench_serve.py [--variants 64] [--goals 8] [--episodes 16] [--epochs 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import device_info, emit  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from augnes_jax.judgments import JudgmentWriter, make_judgments, read_judgments  # noqa: E402
from augnes_jax.run_metrics import RunCollector  # noqa: E402
from augnes_jax.stats import build_strategy_stats, write_strategy_stats  # noqa: E402


def _epoch_records(epoch: int, variants: int, goals: int, episodes: int, rng) -> list[dict]:
    n = goals * episodes
    gid = np.repeat(np.arange(goals), episodes)
    optimal = rng.normal(-10.0, 1.0, n)
    out = []
    for v in range(variants):
        h, s = 8 << (v % 4), v // 4
        regret = rng.exponential(2.0 + 4.0 / (1 + v % 4), n)
        out += make_judgments(
            gid, optimal - regret, optimal, optimal - 3.0, np.arange(n), run="bench", variant=f"h{h}-b1000-s{s}",
            hidden_dim=h, buffer_size=1000, seed=s, epoch=epoch, strategy="mpc_world_model", oracle="given",
        )
    return out


def _scrape(collector: RunCollector) -> tuple[float, float, int]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    c0, t0 = time.process_time(), time.perf_counter()
    body = generate_latest(registry)
    return time.perf_counter() - t0, time.process_time() - c0, len(body)


def _full_scrape(run_dir: Path, size: int) -> tuple[float, float, int]:
    """Returns the summed times of a fresh collector's scrapes until it has read the whole file
    (a scrape parses at most 64 MiB of new judgments, so a cold start may take several)."""
    collector = RunCollector(run_dir)
    total = [0.0, 0.0, 0]
    while True:
        t, c, n = _scrape(collector)
        total = [total[0] + t, total[1] + c, n]
        if collector.tail.offset >= size:
            return total[0], total[1], total[2]


def main() -> None:
    """Prints one JSON object with the scrape times and the re-read-everything baseline."""
    p = argparse.ArgumentParser()
    p.add_argument("--variants", type=int, default=64)
    p.add_argument("--goals", type=int, default=8)
    p.add_argument("--episodes", type=int, default=16, help="episodes per goal and epoch")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--appends", type=int, default=5, help="epochs appended and scraped incrementally")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bench"
        path = run_dir / "judgments.jsonl"
        t0 = time.perf_counter()
        with JudgmentWriter(path) as w:
            for e in range(args.epochs):
                w.append(_epoch_records(e, args.variants, args.goals, args.episodes, rng))
        write_stats = lambda: write_strategy_stats(  # noqa: E731
            run_dir / "strategy_stats.json",
            build_strategy_stats(read_judgments(path), source=str(path), num_goals=args.goals))
        write_stats()
        write_s = time.perf_counter() - t0

        live = RunCollector(run_dir)
        first_s, _, _ = _scrape(live)
        first_lines, first_bytes = live.tail.rows, live.tail.offset
        size0 = path.stat().st_size
        while live.tail.offset < size0:
            _scrape(live)
        cold_s, _, _ = _full_scrape(run_dir, size0)
        t0 = time.perf_counter()
        read_judgments(path)
        read_all_s = time.perf_counter() - t0

        inc, base, unchanged = [], [], []
        for e in range(args.epochs, args.epochs + args.appends):
            with JudgmentWriter(path) as w:  # not timed: the sweep's own write
                w.append(_epoch_records(e, args.variants, args.goals, args.episodes, rng))
            inc.append(_scrape(live))
            unchanged.append(_scrape(live))
            base.append(_full_scrape(run_dir, path.stat().st_size))  # re-reads everything
        lines = live.tail.rows
        assert lines == (args.epochs + args.appends) * args.variants * args.goals * args.episodes
        inc_s = statistics.median(x[0] for x in inc)
        base_s = statistics.median(x[0] for x in base)
        emit({
            "benchmark": "serve_scrape",
            "device": device_info(),
            "sizes": {"variants": args.variants, "goals": args.goals, "episodes_per_goal": args.episodes,
                      "epochs": args.epochs + args.appends, "lines": lines,
                      "lines_appended_per_scrape": args.variants * args.goals * args.episodes,
                      "file_mb": round(path.stat().st_size / 2**20, 1),
                      "histogram_series": len(live.histogram.cells), "page_kb": round(inc[-1][2] / 1024, 1)},
            "figure": "median seconds per scrape after one epoch of judgments was appended",
            "incremental_scrape_s": round(inc_s, 4),
            "incremental_scrape_cpu_s": round(statistics.median(x[1] for x in inc), 4),
            "unchanged_scrape_s": round(statistics.median(x[0] for x in unchanged), 4),
            "baseline_full_reread_scrape_s": round(base_s, 4),
            "speedup_vs_full_reread": round(base_s / inc_s, 1),
            "first_scrape_s": round(first_s, 3),
            "first_scrape_lines": first_lines,
            "first_scrape_mb_per_s": round(first_bytes / 2**20 / first_s, 1),
            "cold_whole_file_s": round(cold_s, 3),
            "cold_lines_per_s": round(args.epochs * args.variants * args.goals * args.episodes / cold_s),
            "read_judgments_whole_file_s": round(read_all_s, 3),
            "untimed_write_s": round(write_s, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
        })


if __name__ == "__main__":
    main()
