"""Will a sweep's variants fit in memory? An estimate of their bytes and the check (shell layer).

The environment-driven sweep counts buffers, parameters, optimizer state and collected
transitions; a data-only sweep (:func:`estimate_data_bytes`) counts buffers, parameters and
optimizer state, the rows it keeps of its file, the evaluation arrays and one chunk. Either is
compared with the default device's available memory (the host's on CPU) and refused above 0.8 of it.
"""

from __future__ import annotations

import math
import os

import jax

from augnes_jax.config import Config
from augnes_jax.sweep_errors import SweepError
from augnes_jax.transitions_stream import FileScan
from augnes_jax.variants import Bucket, Variant, variant_num_params
from augnes_jax.world_model import head_sizes

__all__ = ["available_memory_bytes", "check_data_memory", "check_memory", "estimate_bytes", "estimate_data_bytes"]


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
    item = _item_bytes(obs_dim, act_dim)
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


def _item_bytes(obs_dim: int, act_dim: int) -> int:
    """Returns one buffer item's bytes: obs, action, next_obs, goal id; reward (4) and terminated (1)."""
    return 4 * (2 * obs_dim + act_dim + 1) + 5


def _row_bytes(scan: FileScan) -> int:
    """Returns the bytes of one row of checked transitions as the host holds them."""
    optional = {"reward": 4, "terminated": 1, "episode_id": 8}
    return 4 * (2 * scan.obs_dim + scan.action_dim) + 4 + sum(b for k, b in optional.items() if k in scan.names)


def estimate_data_bytes(cfg: Config, buckets: list[Bucket], scan: FileScan, *, train_rows: int, eval_rows: int,
                        windows: int) -> dict[str, int]:
    """Returns the bytes a data-only sweep needs, by part; their sum is what it needs in all.

    Args:
      cfg: the config (world model, ``data.chunk_rows``, ``world_model.k_steps``).
      buckets: the width buckets.
      scan: the checked file.
      train_rows: training rows kept for the buffers (the largest buffer_size, or fewer).
      eval_rows: held-out rows evaluated on; windows: held-out k-step sequences used.

    Parts: ``ring_buffers`` (every variant's buffer at its bucket's largest size),
    ``params_optimizer`` (parameters and two Adam moments at the bucket's widest width),
    ``kept_rows`` (the host's kept training rows, evaluation rows and sequences),
    ``evaluation_arrays`` (each bucket's device copy of the evaluation rows and sequences),
    ``evaluation_activations`` (one hidden layer's activations over the evaluation rows, per
    variant: a lower estimate of the evaluation's working memory) and ``chunk`` (one chunk as
    stored in the file and as converted rows).
    """
    d, a, heads = scan.obs_dim, scan.action_dim, cfg.world_model.reward == "learned"
    k = max(cfg.world_model.k_steps)
    extra = head_sizes(scan.num_goals, heads)
    item, row = _item_bytes(d, a), _row_bytes(scan)
    seq = 4 * ((k + 1) * d + k * a) + 4  # one sequence and its goal
    device_eval = eval_rows * (4 * (2 * d + a) + 4 + (5 if heads else 0)) + windows * (seq - (0 if heads else 4))
    parts = {"ring_buffers": 0, "params_optimizer": 0, "evaluation_arrays": 0, "evaluation_activations": 0}
    for b in buckets:
        v = len(b.variants)
        n_params = variant_num_params(
            Variant("", b.max_width, 0, 0, b.name, 0, b.max_width, b.num_layers), d, a, extra)
        parts["ring_buffers"] += v * b.max_buffer_size * item
        parts["params_optimizer"] += v * n_params * 4 * 3
        parts["evaluation_arrays"] += device_eval
        parts["evaluation_activations"] += v * eval_rows * b.max_width * 4
    parts["kept_rows"] = (train_rows + eval_rows) * row + windows * seq
    parts["chunk"] = cfg.data.chunk_rows * (scan.file_row_bytes + row)
    return parts


def check_data_memory(cfg: Config, parts: dict[str, int]) -> tuple[int, int | None]:
    """Returns ``(needed, available)`` bytes of a data run (see :func:`estimate_data_bytes`).

    Raises:
      SweepError: the run needs more than 0.8 of the available memory.
    """
    need, have = sum(parts.values()), available_memory_bytes()
    if have is not None and need > 0.8 * have:
        raise SweepError(
            f"the data run needs about {need / 2**30:.2f} GiB but only {have / 2**30:.2f} GiB is available; "
            f"use fewer variants (variants.hidden_dims / buffer_sizes / seeds), a smaller largest buffer "
            f"(variants.buffer_sizes max = {max(cfg.variants.buffer_sizes)}), a smaller data.max_eval_rows "
            f"({cfg.data.max_eval_rows}) or data.chunk_rows ({cfg.data.chunk_rows})"
        )
    return need, have


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
