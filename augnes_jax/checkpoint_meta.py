"""The checkpoint ``meta`` item: the one place that writes and reads its format (shell layer).

A sweep checkpoint's ``meta`` item is a JSON object::

    {"config": {...}, "env": str, "obs_dim": int, "act_dim": int, "num_layers": int,
     "epoch": int,
     "variants": [{"name", "hidden_dim", "buffer_size", "seed", "bucket", "index",
                   "max_width", "mask": [0/1 ...], "val_mse", "diverged"}, ...],
     "checksums": {...}}

``index`` is the variant's position on its bucket's leading axis; ``checksums`` is added by
:mod:`augnes_jax.checkpoint` at save time. This module imports neither orbax nor JAX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["best_val_mse", "build_meta", "saved_variants", "variant_entry"]


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def variant_entry(*, name: str, hidden_dim: int, buffer_size: int, seed: int, bucket: str, index: int,
                  max_width: int, mask: Sequence[Any], val_mse: Any, diverged: bool) -> dict[str, Any]:
    """Returns one variant's record; ``val_mse`` is stored only when finite and not diverged."""
    return {
        "name": name, "hidden_dim": int(hidden_dim), "buffer_size": int(buffer_size), "seed": int(seed),
        "bucket": bucket, "index": int(index), "max_width": int(max_width),
        "mask": list(mask),
        "val_mse": None if diverged else _finite(val_mse),
        "diverged": bool(diverged),
    }


def build_meta(*, config: Mapping[str, Any], env: str, obs_dim: int, act_dim: int, num_layers: int,
               epoch: int, variants: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Returns the ``meta`` object of one sweep checkpoint."""
    return {"config": dict(config), "env": env, "obs_dim": int(obs_dim), "act_dim": int(act_dim),
            "num_layers": int(num_layers), "epoch": int(epoch), "variants": [dict(v) for v in variants]}


def best_val_mse(meta: Mapping[str, Any]) -> float | None:
    """Returns the lowest recorded ``val_mse`` over the variants, or None when none has one."""
    vals = [v["val_mse"] for v in meta.get("variants", []) if v.get("val_mse") is not None]
    return min(vals) if vals else None


def saved_variants(meta: Mapping[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Returns the recorded variants keyed by ``(bucket, index)``, their place on a bucket's axis.

    A variant's width and name may have grown during the run; its place does not.
    """
    return {(v["bucket"], int(v["index"])): v for v in meta.get("variants") or []}
