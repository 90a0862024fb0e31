"""world_model_stats.json and the ``world_model/*`` TensorBoard scalars (host shell).

File shape (written atomically; non-finite numbers become ``null``)::

    {"schema": 1, "generated_at": "2026-01-02T03:04:05Z", "epsilon": 0.001,
     "variants": {"h64-b10000-s0": {
         "hidden_dim": 64, "buffer_size": 10000, "seed": 0, "num_params": 4934,
         "epochs": [{"epoch": 0, "train_loss": 0.1, "val_mse": 0.002,
                     "per_dim_mse": [...], "per_goal_mse": {"0": 0.002, ...},
                     "k_step_mse": {"1": 0.002, "5": 0.03}, "samples_seen": 76800,
                     "nonfinite_updates": 0, "passed": false, "diverged": false}]}}}

A model with reward and termination heads adds, per epoch entry, ``reward_mse`` (original
units), ``per_goal_reward_mse`` (``{"0": ..., ...}``), ``termination_bce`` and
``termination_accuracy``; an entry of a model without heads has none of these keys, so its file
is what it always was. TensorBoard gets ``world_model/reward_mse``,
``world_model/termination_bce`` and ``world_model/termination_accuracy`` beside
``world_model/val_mse``.

``passed`` means ``val_mse < epsilon``. ``diverged`` (written by the sweep) flags an epoch at or
after which the variant's training went non-finite. Recording an epoch that is already present
replaces it, and :meth:`WorldModelStats.truncate` drops the epochs a resumed run redoes, so
neither duplicates an epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax import files
from augnes_jax.clock import utc_now

SCHEMA = 1
_META_KEYS = ("hidden_dim", "buffer_size", "seed", "num_params")
_METRIC_KEYS = (
    "train_loss",
    "val_mse",
    "per_dim_mse",
    "per_goal_mse",
    "k_step_mse",
    "samples_seen",
    "nonfinite_updates",
    "passed",
)
HEAD_SCALAR_KEYS = ("reward_mse", "termination_bce", "termination_accuracy")
HEAD_KEYS = (*HEAD_SCALAR_KEYS, "per_goal_reward_mse")


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return hasattr(value, "shape") and np.ndim(value) == 0


def _float(value: Any) -> float | None:
    if value is None:
        return None
    out = float(np.asarray(value))
    return out if math.isfinite(out) else None


def _int(value: Any) -> int:
    return int(np.asarray(value))


def _float_list(values: Any) -> list[float | None]:
    if values is None:
        return []
    return [_float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _goal_dict(values: Any) -> dict[str, float | None]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): _float(v) for k, v in values.items()}
    return {str(i): v for i, v in enumerate(_float_list(values))}


def _k_dict(values: Any) -> dict[str, float | None]:
    if not values:
        return {}
    items = sorted(((int(k), v) for k, v in values.items()), key=lambda kv: kv[0])
    return {str(k): _float(v) for k, v in items}


def head_metrics(one_step: Mapping[str, Any], goal_ids: Sequence[int]) -> dict[str, Any]:
    """Returns one variant's reward and termination head errors, keyed as WorldModelStats.record takes them.

    `one_step` is the variant's slice of
    :func:`~augnes_jax.world_model_eval.one_step_errors`' result; ``per_goal_reward_mse`` becomes
    ``{str(goal): value}`` over `goal_ids`. A model without heads gives ``{}``.
    """
    out: dict[str, Any] = {key: one_step[key] for key in HEAD_SCALAR_KEYS if key in one_step}
    per_goal = one_step.get("per_goal_reward_mse")
    if per_goal is not None:
        values = np.asarray(per_goal)
        out["per_goal_reward_mse"] = {str(int(g)): values[int(g)] for g in goal_ids}
    return out


class WorldModelStats:
    """Accumulates per-variant, per-epoch world-model error records."""

    def __init__(self, epsilon: float):
        """Creates an empty accumulator; `epsilon` is the val-MSE threshold for ``passed``."""
        self.epsilon = float(epsilon)
        self.variants: dict[str, dict[str, Any]] = {}

    def record(
        self,
        variant_name: str,
        epoch: int,
        metrics: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Returns the epoch entry stored for `variant_name` from `metrics` (arrays allowed).

        Args:
          variant_name: e.g. ``"h64-b10000-s0"``.
          epoch: epoch number; an existing entry for it is replaced.
          metrics: ``train_loss``, ``val_mse``, ``per_dim_mse`` ``[d]``, ``per_goal_mse``
            (``[G]`` or a dict), ``k_step_mse`` (``{k: mse}``), ``samples_seen``,
            ``nonfinite_updates``. Missing keys are recorded as null / empty; other scalar
            entries (e.g. ``diverged``) are kept as they are. The head errors of
            :data:`HEAD_KEYS` are recorded only when present.
          meta: ``hidden_dim``, ``buffer_size``, ``seed``, ``num_params`` (updated when given:
            a variant that grows records its new width), and ``num_layers`` in a sweep over depths.
        """
        variant = self.variants.setdefault(
            variant_name, {**{k: None for k in _META_KEYS}, "epochs": []}
        )
        for key in _META_KEYS:
            if meta is not None and meta.get(key) is not None:
                variant[key] = _int(meta[key])
        if meta is not None and meta.get("num_layers") is not None:  # a sweep over depths
            variant["num_layers"] = _int(meta["num_layers"])
        val = _float(metrics.get("val_mse"))
        entry = {
            "epoch": int(epoch),
            "train_loss": _float(metrics.get("train_loss")),
            "val_mse": val,
            "per_dim_mse": _float_list(metrics.get("per_dim_mse")),
            "per_goal_mse": _goal_dict(metrics.get("per_goal_mse")),
            "k_step_mse": _k_dict(metrics.get("k_step_mse")),
            "samples_seen": _int(metrics.get("samples_seen", 0)),
            "nonfinite_updates": _int(metrics.get("nonfinite_updates", 0)),
            "passed": bool(val is not None and val < self.epsilon),
        }
        for key in HEAD_SCALAR_KEYS:
            if key in metrics:
                entry[key] = _float(metrics[key])
        if "per_goal_reward_mse" in metrics:
            entry["per_goal_reward_mse"] = _goal_dict(metrics["per_goal_reward_mse"])
        # Extra scalar flags a caller adds (e.g. "diverged") are kept; arrays are not.
        for key, value in metrics.items():
            if key not in entry and key not in _METRIC_KEYS and key not in HEAD_KEYS and _is_scalar(value):
                entry[key] = files.to_jsonable(value)
        epochs = [e for e in variant["epochs"] if e["epoch"] != entry["epoch"]]
        epochs.append(entry)
        epochs.sort(key=lambda e: e["epoch"])
        variant["epochs"] = epochs
        return entry

    def record_variants(
        self,
        names: Sequence[str],
        epoch: int,
        metrics: Mapping[str, Any],
        metas: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Returns the entries recorded for every variant of a vmapped metrics tree.

        Every array in `metrics` (nested dicts allowed, e.g. ``k_step_mse``) has a leading
        variant axis ``[V]`` in the order of `names`.
        """

        def pick(tree: Any, i: int) -> Any:
            if isinstance(tree, Mapping):
                return {k: pick(v, i) for k, v in tree.items()}
            return np.asarray(tree)[i]

        out = []
        for i, name in enumerate(names):
            meta = metas[i] if metas is not None else None
            out.append(self.record(name, epoch, pick(metrics, i), meta))
        return out

    def truncate(self, start: int) -> list[str]:
        """Returns the names of the variants dropped after removing every epoch >= `start`.

        A resumed run calls this with its first epoch to run: records written after the last
        complete checkpoint are dropped, and a variant left with no epoch disappears entirely
        (it was first recorded after that checkpoint, e.g. a grown variant's new name).
        """
        dropped = []
        for name in list(self.variants):
            variant = self.variants[name]
            variant["epochs"] = [e for e in variant["epochs"] if e["epoch"] < start]
            if not variant["epochs"]:
                del self.variants[name]
                dropped.append(name)
        return dropped

    def latest(self, variant_name: str) -> dict[str, Any] | None:
        """Returns the last recorded epoch entry of a variant, or None."""
        epochs = self.variants.get(variant_name, {}).get("epochs", [])
        return epochs[-1] if epochs else None

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON document (strict JSON values) of everything recorded."""
        now = utc_now(timespec="seconds")
        return files.to_jsonable(
            {
                "schema": SCHEMA,
                "generated_at": now,
                "epsilon": self.epsilon,
                "variants": self.variants,
            }
        )

    def write(self, path: str | os.PathLike) -> None:
        """Writes the document to `path` atomically (errors name the path)."""
        files.write_json_atomic(path, self.to_dict())

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> WorldModelStats:
        """Returns an accumulator holding what `path` holds (to resume a run).

        Raises:
          ValueError: the file is not a world_model_stats document; the message names it.
          FileNotFoundError: no such file.
        """
        data = files.read_json(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a world_model_stats document of schema {SCHEMA}")
        variants = data.get("variants")
        if not isinstance(variants, dict):
            raise ValueError(f"{path}: 'variants' must be an object")
        try:
            stats = cls(float(data["epsilon"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: 'epsilon' must be a number") from None
        for name, variant in variants.items():
            if not isinstance(variant, dict) or not isinstance(variant.get("epochs"), list):
                raise ValueError(f"{path}: variant {name!r} must have an 'epochs' list")
            for entry in variant["epochs"]:
                if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
                    raise ValueError(f"{path}: variant {name!r} has an epoch without 'epoch'")
            stats.variants[str(name)] = variant
        return stats

    def write_tb(
        self,
        writer: Any,
        variant: str,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
    ) -> int:
        """Returns the number of scalars written under ``world_model/*`` and ``health/*`` at `epoch`.

        `writer` is the variant's own writer (``tb/<variant>/``): a tensorboardX
        ``SummaryWriter`` (anything with ``add_scalar(tag, value, step)``) or an object with
        ``scalars(step, {tag: value})``; the health counters ``health/nonfinite_updates`` and
        ``health/samples_seen`` go through its ``changed(step, {tag: value})`` when it has one
        (a point only when the counter changes, see :meth:`augnes_jax.tensorboard_io.RunWriter.changed`).
        With ``metrics=None`` the recorded entry of (`variant`, `epoch`) is written. Null and
        non-finite values are skipped, so readers never see NaN; a diverging model shows in
        ``health/nonfinite_updates``.
        """
        if metrics is None:
            entries = [
                e for e in self.variants.get(variant, {}).get("epochs", []) if e["epoch"] == epoch
            ]
            if not entries:
                raise KeyError(f"no world-model record for variant {variant!r} epoch {epoch}")
            metrics = entries[0]
        pairs: list[tuple[str, Any]] = [
            ("world_model/train_loss", metrics.get("train_loss")),
            ("world_model/val_mse", metrics.get("val_mse")),
        ]
        pairs += [(f"world_model/{key}", metrics[key]) for key in HEAD_SCALAR_KEYS if key in metrics]
        per_dim = metrics.get("per_dim_mse")
        if per_dim is not None:
            dims: Iterable[Any] = per_dim if isinstance(per_dim, list) else np.asarray(per_dim)
            pairs += [(f"world_model/val_mse/dim_{i}", v) for i, v in enumerate(dims)]
        for k, v in (metrics.get("k_step_mse") or {}).items():
            pairs.append((f"world_model/k{int(k)}_mse", v))
        health_pairs = [
            ("health/nonfinite_updates", metrics.get("nonfinite_updates")),
            ("health/samples_seen", metrics.get("samples_seen")),
        ]
        values = {tag: f for tag, v in pairs if (f := _float(v)) is not None}
        health = {tag: f for tag, v in health_pairs if (f := _float(v)) is not None}
        if hasattr(writer, "changed"):
            written = writer.changed(int(epoch), health)
        else:
            values.update(health)
            written = 0
        if hasattr(writer, "add_scalar"):
            for tag, value in values.items():
                writer.add_scalar(tag, value, int(epoch))
        else:
            writer.scalars(int(epoch), values)
        return len(values) + written
