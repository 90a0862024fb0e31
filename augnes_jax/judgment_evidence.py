"""Controller evidence from a judgments log: the scalars a variant's TensorBoard run would hold.

The controller compares capacity variants. In a judgments log a variant is identified by its
rows' own ``hidden_dim``, ``buffer_size`` and ``seed`` fields, whatever its ``variant`` string
says; in a sweep over depths the rows also state the model's depth, ``num_layers`` (an extra
field), and the variant is named ``d{D}-h{H}-b{B}-s{S}``. Per variant and epoch (rows without an epoch count as epoch 0) the regret of the rows is
aggregated per goal with :func:`augnes_jax.regret.aggregate` in float32, exactly as
``python -m augnes_jax.stats --tb`` writes it: ``regret/avg``, ``regret/goal_{g}/avg`` and
``advantage/avg``, rounded to float32 as TensorBoard stores them. A variant with a row marked
``"diverged": true`` carries ``health/diverged``. The series are
:class:`augnes_jax.evidence.VariantData`, so the windows (:func:`judgment_evidence`) are those
:mod:`augnes_jax.evidence` cuts from TensorBoard, and a decision on them equals the controller's
on the runs ``stats --tb`` writes.

Rows are grouped by experiment (:func:`augnes_jax.strategy_stats.experiment_keys`) and capacity
fields (:func:`variant_groups`); the controller needs every group with all three fields to have
a capacity of its own (:func:`capacity_variants`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from augnes_jax import regret as regret_lib
from augnes_jax.errors import UserError
from augnes_jax.evidence import (
    ADVANTAGE_TAG,
    DIVERGED_TAG,
    NUM_PARAMS_TAG,
    REGRET_TAG,
    VariantData,
    VariantEvidence,
    collect_evidence,
)
from augnes_jax.judgments_columns import Judgments
from augnes_jax.strategy_stats import aggregate_np, experiment_keys, index_keys
from augnes_jax.variants import variant_name

__all__ = [
    "CAPACITY_FIELDS",
    "CapacityFieldsError",
    "EpochAggregates",
    "GroupKey",
    "capacity_variants",
    "diverged_groups",
    "epoch_aggregates",
    "judgment_evidence",
    "judgment_variants",
    "variant_groups",
]

CAPACITY_FIELDS = ("hidden_dim", "buffer_size", "seed")


class CapacityFieldsError(UserError, ValueError):
    """The judgments give the controller nothing to compare; the message is one line."""


class GroupKey(NamedTuple):
    """The rows of one experiment with one capacity (-1: the field is absent)."""

    experiment: str
    hidden_dim: int
    buffer_size: int
    seed: int
    num_layers: int = -1  # the depth rows of a sweep over depths state

    @property
    def depth(self) -> int | None:
        """Returns the depth the rows state, or None."""
        return self.num_layers if self.num_layers >= 0 else None

    @property
    def complete(self) -> bool:
        """Returns whether all three capacity fields are given."""
        return min(self.hidden_dim, self.buffer_size, self.seed) >= 0


class EpochAggregates(NamedTuple):
    """Per group, epoch and goal aggregates of a log, flat ``[K * T * G]`` (group-major).

    ``epochs`` are the distinct epochs in order of first appearance and ``cell`` the
    ``group * T + epoch index`` of each row.
    """

    epochs: list[int]
    num_goals: int
    cell: np.ndarray
    regret: regret_lib.GoalAggregate
    advantage: regret_lib.GoalAggregate


def variant_groups(judgments: Judgments) -> tuple[np.ndarray, list[GroupKey]]:
    """Returns ``(group index per row, groups in order of first appearance)``.

    A group is an experiment (``variant``, else ``strategy``, else ``"all"``) with one value of
    each capacity field and of ``num_layers`` (-1 where a row states none, or no positive
    integer); in a sweep's log every variant is one group.
    """
    keys = zip(experiment_keys(judgments), judgments.hidden_dim.tolist(), judgments.buffer_size.tolist(),
               judgments.seed.tolist(), [_depth(e) for e in judgments.extra], strict=True)  # fmt: skip
    idx, uniq = index_keys(list(keys))
    return idx, [GroupKey(*k) for k in uniq]


def _depth(extra: Mapping[str, Any]) -> int:
    d = extra.get("num_layers") if extra else None
    return d if isinstance(d, int) and not isinstance(d, bool) and d >= 1 else -1


def epoch_aggregates(
    judgments: Judgments, group_idx: np.ndarray, num_groups: int, num_goals: int
) -> EpochAggregates:
    """Returns the regret and advantage aggregates per group, epoch and goal of a log."""
    epoch = np.maximum(judgments.epoch, 0)  # rows without an epoch count as epoch 0
    ep_idx, epochs = index_keys(epoch.tolist())
    T, G = len(epochs), int(num_goals)
    cell = group_idx * T + ep_idx
    seg = cell * G + judgments.goal_id
    reg = aggregate_np(judgments.regret, seg, num_groups * T * G)
    adv_v = judgments.advantage
    adv = aggregate_np(adv_v, seg, num_groups * T * G, np.isfinite(adv_v))
    return EpochAggregates([int(e) for e in epochs], G, cell, reg, adv)


def diverged_groups(judgments: Judgments, group_idx: np.ndarray) -> dict[int, int]:
    """Returns ``{group: first epoch of a row marked "diverged": true}``."""
    out: dict[int, int] = {}
    epoch = np.maximum(judgments.epoch, 0)
    for i, ext in enumerate(judgments.extra):
        if ext and ext.get("diverged") is True:
            k = int(group_idx[i])
            out[k] = min(out.get(k, int(epoch[i])), int(epoch[i]))
    return out


def capacity_variants(judgments: Judgments, groups: Sequence[GroupKey]) -> list[int]:
    """Returns the groups the controller compares: those with all three capacity fields.

    Raises:
      CapacityFieldsError: no row has the fields (``"no hidden_dim field: nothing to
        compare"``), or two experiments share one capacity (the controller could not tell them
        apart).
    """
    for field in CAPACITY_FIELDS:
        if not (getattr(judgments, field) >= 0).any():
            raise CapacityFieldsError(f"{_where(judgments)}no {field} field: nothing to compare")
    chosen = [k for k, g in enumerate(groups) if g.complete]
    if not chosen:
        raise CapacityFieldsError(
            f"{_where(judgments)}no judgment has all of hidden_dim, buffer_size and seed: "
            "nothing to compare"
        )
    owner: dict[tuple[int, int, int], str] = {}
    for k in chosen:
        g = groups[k]
        other = owner.setdefault(g[1:], g.experiment)
        if other != g.experiment:
            raise CapacityFieldsError(
                f"{_where(judgments)}variants {other!r} and {g.experiment!r} both have hidden_dim "
                f"{g.hidden_dim}, buffer_size {g.buffer_size}, seed {g.seed}"
                f"{f', num_layers {g.depth}' if g.depth else ''}: the controller "
                "cannot tell them apart (compare one of them)"
            )
    return chosen


def _where(judgments: Judgments) -> str:
    return f"{judgments.path}: " if judgments.path else ""


def judgment_variants(
    judgments: Judgments,
    *,
    num_goals: int | None = None,
    num_params: Mapping[int, float] | None = None,
) -> list[VariantData]:
    """Returns each capacity variant's series, as its TensorBoard run would hold them.

    Args:
      judgments: the log.
      num_goals: G (default: the largest goal_id + 1), as ``stats --num-goals``.
      num_params: the model's parameter count per ``hidden_dim`` (``model/num_params``, which
        gives the gain per parameter); widths it does not name have none.

    Raises:
      CapacityFieldsError: see :func:`capacity_variants`.
    """
    if len(judgments) == 0:
        raise CapacityFieldsError(f"{_where(judgments)}no judgments: nothing to compare")
    group_idx, groups = variant_groups(judgments)
    chosen = capacity_variants(judgments, groups)
    max_goal = int(judgments.goal_id.max())
    G = max_goal + 1 if num_goals is None else int(num_goals)
    if max_goal >= G:
        raise ValueError(f"goal_id {max_goal} is not below num_goals {G}")
    agg = epoch_aggregates(judgments, group_idx, len(groups), G)
    T = len(agg.epochs)
    K = len(groups)
    reg = jax.tree.map(lambda a: a.reshape(K, T, G), agg.regret)
    adv = jax.tree.map(lambda a: a.reshape(K, T, G), agg.advantage)
    reg_tot = jax.tree.map(lambda a: np.asarray(a)[..., 0], regret_lib.total(reg))
    adv_tot = jax.tree.map(lambda a: np.asarray(a)[..., 0], regret_lib.total(adv))
    diverged = diverged_groups(judgments, group_idx)
    order = sorted(range(T), key=lambda t: agg.epochs[t])
    steps = np.asarray([agg.epochs[t] for t in order], np.int64)
    out = []
    for k in chosen:
        series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        _put(series, REGRET_TAG, steps, reg_tot.count[k, order], reg_tot.mean[k, order])
        _put(series, ADVANTAGE_TAG, steps, adv_tot.count[k, order], adv_tot.mean[k, order])
        for g in range(G):
            _put(series, f"regret/goal_{g}/avg", steps, reg.count[k, order, g], reg.mean[k, order, g])
        g = groups[k]
        h, b, s = g.hidden_dim, g.buffer_size, g.seed
        if k in diverged:
            series[DIVERGED_TAG] = (np.asarray([diverged[k]], np.int64), np.ones(1))
        if num_params is not None and num_params.get(h) is not None and len(steps):
            series[NUM_PARAMS_TAG] = (steps[:1], np.asarray([num_params[h]], np.float32).astype(np.float64))
        out.append(VariantData(variant_name(h, b, s, g.depth), h, b, s, series=series, num_layers=g.depth))
    return out


def _put(series: dict, tag: str, steps: np.ndarray, count: Any, mean: Any) -> None:
    """Adds ``tag``'s finite means at the steps with episodes, as float32 values (TensorBoard's)."""
    values = np.asarray(mean, np.float32).astype(np.float64)
    keep = (np.asarray(count) > 0) & np.isfinite(values)
    if keep.any():
        series[tag] = (steps[keep], values[keep])


def judgment_evidence(
    judgments: Judgments,
    *,
    k_last: int,
    align_epochs: bool = True,
    num_goals: int | None = None,
    num_params: Mapping[int, float] | None = None,
) -> tuple[list[VariantEvidence], list[str]]:
    """Returns ``(evidence, excluded)``: each variant's window and the diverged variants' names.

    The windows are :func:`augnes_jax.evidence.collect_evidence`'s over
    :func:`judgment_variants` (same arguments), so they equal the controller's on the runs
    ``stats --tb`` writes.
    """
    variants = judgment_variants(judgments, num_goals=num_goals, num_params=num_params)
    return collect_evidence(variants, k_last, align_epochs=align_epochs)
