"""The checkpoint ``meta`` item: the one place that writes and reads its format (shell layer).

A sweep checkpoint's ``meta`` item (orbax ``JsonSave``) is a JSON object::

    {"config": {...}, "env": str, "obs_dim": int, "act_dim": int, "num_layers": int,
     "epoch": int, ["learn_reward": bool, "num_goals": int,]
     "variants": [{"name", "hidden_dim", "buffer_size", "seed", "bucket", "index",
                   "max_width", "mask": [0/1 ...], "val_mse", "diverged"[, "num_layers"]}, ...],
     "checksums": {item: [[...], ...]}}

``bucket`` names the variant's bucket ``"w{max_width}"`` in the array items, and ``index`` is
the variant's position on that bucket's leading axis. A single world model (Stage 2 on its own)
is one bucket with one variant. ``mask`` has ``hidden_dim`` leading ones. ``val_mse`` is null
when not finite or diverged. A variant's own ``num_layers`` is recorded in a sweep over
more than one depth (``variants.num_layers``); elsewhere every model has the top-level
``num_layers``. ``learn_reward`` says whether the models have reward and
termination heads conditioned on a one-hot of ``num_goals`` goals; a checkpoint that does not
record it (written before heads existed) holds models without heads. ``checksums`` holds, per array item, the checksums of its arrays
(:mod:`augnes_jax.checksum`); :mod:`augnes_jax.checkpoint` adds it at save time with
:func:`with_checksums`.

Readers get the fields through :func:`model_sizes`, :func:`model_heads`, :func:`variant_record`,
:func:`recorded_checksums`, :func:`env_name` and :func:`saved_variants`; a field that is
missing or of the wrong type raises :class:`CheckpointError` naming the meta item. The checkpoint
errors live here too, so that this module imports neither orbax nor JAX.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from augnes_jax.errors import UserError

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "UnknownVariantError",
    "VariantRecord",
    "best_val_mse",
    "build_meta",
    "check_mask",
    "env_name",
    "meta_int",
    "model_heads",
    "model_sizes",
    "rank_val_mse",
    "recorded_checksums",
    "saved_variants",
    "select_variant",
    "variant_entry",
    "variant_record",
    "with_checksums",
]

Where = str | os.PathLike


class CheckpointError(UserError, RuntimeError):
    """A missing, partial or unreadable checkpoint; ``str(err)`` is one line naming the path."""


class UnknownVariantError(CheckpointError, KeyError):
    """The requested variant is not in the checkpoint; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, say); the run can be resumed once fixed."""


# ----------------------------------------------------------------------------- writing


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def variant_entry(*, name: str, hidden_dim: int, buffer_size: int, seed: int, bucket: str, index: int,
                  max_width: int, mask: Sequence[Any], val_mse: Any, diverged: bool,
                  num_layers: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Returns one variant's record; ``val_mse`` is stored only when finite and not diverged.

    ``num_layers``, the variant's own depth, is recorded when given (a sweep over depths).
    """
    entry = {
        "name": name, "hidden_dim": int(hidden_dim), "buffer_size": int(buffer_size), "seed": int(seed),
        "bucket": bucket, "index": int(index), "max_width": int(max_width),
        "mask": list(mask),
        "val_mse": None if diverged else _finite(val_mse),
        "diverged": bool(diverged),
    }
    if num_layers is not None:
        entry["num_layers"] = int(num_layers)
    return entry


def build_meta(*, config: Mapping[str, Any], env: str, obs_dim: int, act_dim: int, num_layers: int,
               epoch: int, variants: Sequence[Mapping[str, Any]], learn_reward: bool | None = None,
               num_goals: int | None = None) -> dict[str, Any]:
    """Returns the ``meta`` object of one sweep checkpoint.

    ``learn_reward`` and ``num_goals`` are recorded when given (the world model's reward heads).
    """
    meta = {"config": dict(config), "env": env, "obs_dim": int(obs_dim), "act_dim": int(act_dim),
            "num_layers": int(num_layers), "epoch": int(epoch), "variants": [dict(v) for v in variants]}
    if learn_reward is not None:
        meta["learn_reward"] = bool(learn_reward)
    if num_goals is not None:
        meta["num_goals"] = int(num_goals)
    return meta


def with_checksums(meta: Mapping[str, Any], checksums: Mapping[str, Any]) -> dict[str, Any]:
    """Returns `meta` with the ``checksums`` of its checkpoint's array items, ``{item: [...]}``."""
    return {**meta, "checksums": dict(checksums)}


# ----------------------------------------------------------------------------- reading


def rank_val_mse(values: Any) -> float:
    """Returns the ranking value of a mapping's ``val_mse``: the number, or +inf when missing or not finite.

    Ranks both a variant's record and a checkpoint step's metrics (lower is better).
    """
    try:
        value = float(values.get("val_mse"))
    except (AttributeError, TypeError, ValueError):
        return math.inf
    return value if math.isfinite(value) else math.inf


def best_val_mse(meta: Mapping[str, Any]) -> float | None:
    """Returns the lowest recorded ``val_mse`` over the variants, or None when none has one."""
    vals = [v["val_mse"] for v in meta.get("variants", []) if v.get("val_mse") is not None]
    return min(vals) if vals else None


def saved_variants(meta: Mapping[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Returns the recorded variants keyed by ``(bucket, index)``, their place on a bucket's axis.

    A variant's width and name may have grown during the run; its place does not.
    """
    return {(v["bucket"], int(v["index"])): v for v in meta.get("variants") or []}


def recorded_checksums(meta: Mapping[str, Any], item: str) -> Any:
    """Returns the checksums recorded for array item `item`, or None (saved before checksums)."""
    return meta.get("checksums", {}).get(item)


def env_name(meta: Mapping[str, Any]) -> str | None:
    """Returns the name of the environment the checkpoint's models were trained on, if recorded."""
    env = meta.get("env")
    return None if env is None else str(env)


def meta_int(meta: Mapping[str, Any], key: str, where: Where) -> int:
    """Returns the positive integer ``meta[key]``.

    Raises:
      CheckpointError: it is missing, not an integer (a bool is not one) or not positive.
    """
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{where}: meta field {key!r} must be a positive integer, got {value!r}"
        )
    return value


def model_sizes(meta: Mapping[str, Any], where: Where) -> tuple[int, int, int]:
    """Returns ``(obs_dim, act_dim, num_layers)`` of the checkpoint's world models."""
    return meta_int(meta, "obs_dim", where), meta_int(meta, "act_dim", where), meta_int(meta, "num_layers", where)


def model_heads(meta: Mapping[str, Any], where: Where) -> tuple[bool, int] | None:
    """Returns ``(learn_reward, num_goals)`` of the checkpoint's world models, None if not recorded.

    ``num_goals`` is 0 when it is not recorded and the models have no heads.

    Raises:
      CheckpointError: ``learn_reward`` is not a bool, or the models have heads and
        ``num_goals`` is not a positive integer.
    """
    if "learn_reward" not in meta:
        return None
    learn = meta["learn_reward"]
    if not isinstance(learn, bool):
        raise CheckpointError(f"{where}: meta field 'learn_reward' must be true or false, got {learn!r}")
    if not learn:
        goals = meta.get("num_goals", 0)
        return False, goals if isinstance(goals, int) and not isinstance(goals, bool) and goals >= 0 else 0
    return True, meta_int(meta, "num_goals", where)


def select_variant(meta: Mapping[str, Any], variant: str, where: Where) -> dict[str, Any]:
    """Returns the meta record of `variant` (``"best"``: lowest finite ``val_mse``).

    Raises:
      CheckpointError: ``variants`` is not a non-empty list of objects, or ``"best"`` was asked
        of several variants none of which has a finite ``val_mse``.
      UnknownVariantError: no variant has that name.
    """
    records = meta.get("variants")
    if (
        not isinstance(records, list)
        or not records
        or not all(isinstance(r, dict) for r in records)
    ):
        raise CheckpointError(f"{where}: meta field 'variants' must be a non-empty list of objects")
    names = [str(r.get("name")) for r in records]
    if variant == "best":
        scored = [(rank_val_mse(r), i) for i, r in enumerate(records)]
        finite = [s for s in scored if math.isfinite(s[0])]
        if finite:
            return records[min(finite)[1]]
        if len(records) == 1:
            return records[0]
        raise CheckpointError(
            f"{where}: no variant has a finite val_mse; name one of {', '.join(names)}"
        )
    for record in records:
        if record.get("name") == variant:
            return record
    raise UnknownVariantError(f"unknown variant {variant!r}; the checkpoint has {', '.join(names)}")


class VariantRecord(NamedTuple):
    """The fields of one variant's record that locate and shape its model.

    Attributes:
      name: the variant's name.
      hidden_dim: its width.
      bucket: the bucket it is stored in (a key of the array items), as recorded.
      index: its position on the bucket's leading axis, as recorded.
      mask: the recorded unit mask (a list of 0/1), or None.
      num_layers: its depth: its own recorded ``num_layers``, else the checkpoint's.
    """

    name: str
    hidden_dim: int
    bucket: Any
    index: Any
    mask: Any
    num_layers: int


def variant_record(meta: Mapping[str, Any], variant: str, where: Where) -> VariantRecord:
    """Returns the record of `variant` (see :func:`select_variant`) with a checked ``hidden_dim`` and depth."""
    record = select_variant(meta, variant, where)
    return VariantRecord(
        name=str(record.get("name")),
        hidden_dim=meta_int(record, "hidden_dim", where),
        bucket=record.get("bucket"),
        index=record.get("index"),
        mask=record.get("mask"),
        num_layers=meta_int(record if "num_layers" in record else meta, "num_layers", where),
    )


def check_mask(record: VariantRecord, where: Where) -> None:
    """Raises CheckpointError unless the recorded mask (if any) is ``hidden_dim`` leading ones."""
    mask, h = record.mask, record.hidden_dim
    if mask is not None and (not isinstance(mask, list) or mask != [1] * h + [0] * (len(mask) - h)):
        raise CheckpointError(f"{where}: variant {record.name!r} mask is not {h} leading ones")
