"""Sweep throughput against the number of devices the variant axis is split over.

Throughput is variant-epochs per second of the best warm epoch (compilation excluded: the
random and the planner collection epochs run once first), timing ``Sweep.run_epoch`` (every
jitted call of an epoch and the copy of its results to the host; the artifact writing is not
timed). Each device count runs in its own subprocess because
``--xla_force_host_platform_device_count`` is read when JAX starts, and the whole series runs
``--rounds`` times in alternating order, keeping each count's best: other work on a shared host
only ever slows an epoch down. Efficiency is ``throughput(n) / (n * throughput(1))``; fake CPU
devices share the host's cores, so on a machine with fewer cores than devices it must fall
below 1. ``cores_used`` (CPU seconds per wall second of the timed epochs) shows how many cores a
run actually got.

On a GPU machine the script also runs ``configs/gpu.yaml`` (``epochs`` cut by
``--gpu-overrides``) on the GPU(s), and reports the FLOP/s it achieves as a fraction of a peak
measured in the same process with a large float32 matmul at the default precision (the
precision the sweep runs at). FLOPs are counted with :func:`augnes_jax.world_model.flops_per_sample`
for training and the forward pass of the model for every planner, collection and evaluation
model call, at each bucket's allocated width (executed) and at each variant's width (useful).
With several GPUs it also measures the series over 1, 2, 4 ... of them.

    python benchmarks/bench_scale.py                       # --quick sizes, 1/2/4 fake CPU devices
    python benchmarks/bench_scale.py --devices 1,2,4,8 --epochs 5 --rounds 3
    python benchmarks/bench_scale.py --config configs/default.yaml   # a config instead of --quick
    python benchmarks/bench_scale.py --gpu-section on --gpu-config configs/default.yaml \\
        --gpu-overrides epochs=3 samples_per_epoch=500   # the GPU section's code path on any device

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import device_info, emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = "BENCH_SCALE_RESULT "

# 8 variants (one width bucket, no padding on 1, 2 or 4 devices); about a minute per device count
# on 2 CPU cores, most of it compilation.
QUICK = [
    "epochs=8", "samples_per_epoch=1000",
    "variants.hidden_dims=[16,32]", "variants.buffer_sizes=[2000]", "variants.seeds=[0,1,2,3]",
    "world_model.train_steps_per_epoch=100", "world_model.batch_size=128", "world_model.val_size=200",
    "planner.horizon=6", "planner.num_samples=32", "planner.num_elites=4", "planner.iterations=2",
    "planner.episodes_per_goal=2", "planner.random_collect_epochs=1",
]


# ----------------------------------------------------------------------------- FLOPs


def forward_flops(obs_dim: int, act_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Returns the matmul FLOPs of one forward pass (2 per multiply-add), as in ``flops_per_sample``."""
    rest = hidden_dim * obs_dim + (hidden_dim * hidden_dim if num_layers == 2 else 0)
    return 2 * ((obs_dim + act_dim) * hidden_dim + rest)


def epoch_flops(sweep) -> dict[str, float]:
    """Returns the model FLOPs of one warm (planner-collection) epoch: executed and useful, by phase.

    Executed FLOPs count every row of a bucket's (padded) variant axis at the bucket's width,
    which is what the device runs; useful FLOPs count each real variant at its own width. The
    oracle and the random baseline run the true dynamics and are not counted.
    """
    from augnes_jax.world_model import flops_per_sample

    cfg, s = sweep.cfg, sweep.settings
    obs, act, layers = sweep.obs_dim, sweep.act_dim, cfg.world_model.num_layers
    h = 7  # training = forward + weight gradients (as much again) + input gradients past layer 1
    rest = h * obs + (h * h if layers == 2 else 0)
    assert flops_per_sample(obs, act, h, layers) == 2 * forward_flops(obs, act, h, layers) + 2 * rest
    p, cp = s.planner, getattr(s, "collect_planner", s.planner)
    control_evals = cfg.planner.episodes_per_goal * len(sweep.goal_ids) * s.episode_length * p.iterations * p.num_samples * p.horizon
    collect_evals = s.collect_envs * s.episode_length * cp.iterations * cp.num_samples * cp.horizon
    eval_evals = int(sweep.val.obs.shape[0]) + int(sweep.val.obs_seq.shape[0]) * max(s.k_steps)
    train_samples = s.train_steps * cfg.world_model.batch_size

    def per_row(width: int, depth: int) -> dict[str, float]:
        f = forward_flops(obs, act, width, depth)
        return {"train": train_samples * flops_per_sample(obs, act, width, depth), "control": control_evals * f,
                "collect": collect_evals * f, "evaluate": eval_evals * f}

    executed = {"train": 0.0, "control": 0.0, "collect": 0.0, "evaluate": 0.0}
    useful = dict(executed)
    for r in sweep.runs:
        for k, v in per_row(r.bucket.max_width, r.bucket.num_layers).items():
            executed[k] += r.padded_size * v
        for variant in r.bucket.variants:
            for k, v in per_row(variant.hidden_dim, variant.num_layers).items():
                useful[k] += v
    return {"executed": sum(executed.values()), "useful": sum(useful.values()),
            "executed_by_phase": executed, "useful_by_phase": useful}


def matmul_peak(n: int, repeats: int = 5) -> dict[str, float]:
    """Returns the best measured FLOP/s of an ``n x n`` float32 matmul on the default device."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "seconds": best, "flop_per_s": 2.0 * n**3 / best}


# ----------------------------------------------------------------------------- one measurement


def measure(config: str | None, overrides: list[str], devices: str, epochs: int, flops: bool) -> dict:
    """Returns the warm-epoch throughput of one sweep (runs in the worker subprocess)."""
    import jax

    from augnes_jax.config import load_config
    from augnes_jax.sweep import Sweep

    cfg = load_config(config, overrides + [f"devices={devices}"])
    t0 = time.perf_counter()
    # the run directory is only checked for writing: run_epoch writes nothing
    with tempfile.TemporaryDirectory() as run_dir:
        sweep = Sweep(cfg, run_dir, progress=False)
    first = cfg.planner.random_collect_epochs
    for e in range(first + 1):  # compile the random and the planner collection paths
        sweep.run_epoch(e)
    t_compile = time.perf_counter() - t0
    times, cpu = [], []
    for e in range(first + 1, first + 1 + epochs):
        t, c = time.perf_counter(), time.process_time()
        sweep.run_epoch(e)  # returns host copies: the epoch is finished
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    n_variants = len(sweep.variants)
    epoch_s = min(times)
    leaf = jax.tree.leaves(sweep.runs[0].states)[0]
    out = {
        "devices": sweep.num_devices, "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind, "variants": n_variants,
        "padded_variants": sum(r.padded_size for r in sweep.runs),
        "buckets": {r.bucket.name: [len(r.bucket.variants), r.padded_size] for r in sweep.runs},
        "state_sharding": str(getattr(leaf.sharding, "spec", type(leaf.sharding).__name__)),
        "warm_epoch_s": times, "epoch_s_best": epoch_s, "epoch_s_median": sorted(times)[len(times) // 2],
        "variant_epochs_per_s": n_variants / epoch_s,
        # CPU seconds of all the process's threads per wall second: how many cores it really got
        "cores_used": sum(cpu) / sum(times),
        "first_epochs_s_incl_compile": t_compile,
    }
    if flops:
        f = epoch_flops(sweep)
        peak = matmul_peak(8192 if jax.devices()[0].platform == "gpu" else 1024)
        peak_all = peak["flop_per_s"] * sweep.num_devices
        out["flops"] = {
            "per_epoch": f, "executed_flop_per_s": f["executed"] / epoch_s, "useful_flop_per_s": f["useful"] / epoch_s,
            "matmul_peak_per_device": peak, "fraction_of_peak_executed": f["executed"] / epoch_s / peak_all,
            "fraction_of_peak_useful": f["useful"] / epoch_s / peak_all,
            "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
        }
    return out


def run_worker(spec: dict, *, fake_cpu_devices: int | None, timeout: float) -> dict:
    """Returns :func:`measure`'s result from a fresh subprocess (optionally with fake CPU devices)."""
    env = dict(os.environ)
    if fake_cpu_devices is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={fake_cpu_devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    lines = [x for x in res.stdout.splitlines() if x.startswith(RESULT)]
    if res.returncode != 0 or not lines:
        return {"error": f"worker exited {res.returncode}: {res.stderr.strip()[-2000:]}"}
    return json.loads(lines[-1][len(RESULT):])


def series(results: dict[int, dict]) -> dict:
    """Returns the throughput series with speedup and efficiency relative to one device."""
    base = results.get(1, {}).get("variant_epochs_per_s")
    rows = []
    for n, r in sorted(results.items()):
        row = {"devices": n, **{k: r.get(k) for k in ("variant_epochs_per_s", "epoch_s_best", "epoch_s_median",
                                                     "warm_epoch_s", "cores_used", "padded_variants",
                                                     "state_sharding", "error")}}
        if base and r.get("variant_epochs_per_s"):
            row["speedup"] = r["variant_epochs_per_s"] / base
            row["efficiency"] = row["speedup"] / n
        rows.append({k: v for k, v in row.items() if v is not None})
    return {"rows": rows, "baseline": "1 device, same config, same script",
            "figure": "variant-epochs per second of the best warm epoch"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--config", help="sweep config for the device series (default: the --quick sizes)")
    ap.add_argument("--quick", action="store_true", help="small sweep sizes (the default without --config)")
    ap.add_argument("--devices", default="1,2,4", help="device counts of the series (default 1,2,4)")
    ap.add_argument("--epochs", type=int, default=3, help="warm epochs timed per device count (best of)")
    ap.add_argument("--rounds", type=int, default=2, help="times the series is measured (best of)")
    ap.add_argument("--gpu-section", choices=("auto", "on", "off"), default="auto",
                    help="run --gpu-config with FLOP/s: auto = when the default device is a GPU")
    ap.add_argument("--gpu-config", default=str(ROOT / "configs" / "gpu.yaml"))
    ap.add_argument("--gpu-overrides", nargs="*", default=["epochs=3"], metavar="KEY=VALUE")
    ap.add_argument("--gpu-epochs", type=int, default=1, help="warm epochs timed for --gpu-config")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the series config")
    args = ap.parse_args()

    if args.worker:
        spec = json.loads(args.worker)
        print(RESULT + json.dumps(measure(spec["config"], spec["overrides"], spec["devices"], spec["epochs"],
                                          spec["flops"])), flush=True)
        return

    import jax

    info = device_info()
    config = args.config if args.config and not args.quick else None
    overrides = ([] if config else QUICK) + args.overrides
    counts = [int(x) for x in args.devices.split(",")]
    spec = {"config": config, "overrides": overrides, "epochs": args.epochs, "flops": False}

    load_before = os.getloadavg()[0]
    cpu: dict[int, dict] = {}
    for i in range(args.rounds):
        for n in (counts if i % 2 == 0 else counts[::-1]):
            r = run_worker({**spec, "devices": str(n)}, fake_cpu_devices=n, timeout=args.timeout)
            if n not in cpu or r.get("variant_epochs_per_s", 0) > cpu[n].get("variant_epochs_per_s", 0):
                cpu[n] = r
    out = {
        "benchmark": "sweep_scale",
        "device": info,
        "sizes": {"config": config or "--quick", "overrides": overrides, "variants": cpu[counts[0]].get("variants"),
                  "warm_epochs_timed": args.epochs, "rounds": args.rounds},
        "cpu_fake_devices": {**series(cpu), "host_cpus": os.cpu_count(),
                             "device_kind": cpu[counts[0]].get("device_kind"),
                             # other work on the host skews the series: its 1-minute load average
                             "load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if len(gpus) > 1:
        counts_gpu = [n for n in (1, 2, 4, 8, 16) if n <= len(gpus)]
        res = {n: run_worker({**spec, "devices": str(n)}, fake_cpu_devices=None, timeout=args.timeout) for n in counts_gpu}
        out["gpu_devices"] = {**series(res), "device_kind": gpus[0].device_kind}
    if args.gpu_section == "on" or (args.gpu_section == "auto" and gpus):
        gspec = {"config": args.gpu_config, "overrides": args.gpu_overrides, "epochs": args.gpu_epochs,
                 "flops": True, "devices": "auto"}
        out["gpu_config"] = {"config": os.path.relpath(args.gpu_config, ROOT), "overrides": args.gpu_overrides,
                             **run_worker(gspec, fake_cpu_devices=None, timeout=args.timeout)}
    emit(out)


if __name__ == "__main__":
    main()
