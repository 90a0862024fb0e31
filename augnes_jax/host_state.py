"""A sweep's host state and the only functions that change it (shell layer, no I/O).

:class:`HostState` holds what the sweep knows on the host between epochs: the buckets and their
variants (names change when capacity grows), the diverged variants and the epoch each was first
flagged, the growth events, the per-goal regret ledger that drives regret-prioritised collection,
every judged episode per variant (the per-goal histograms), the collection shares by epoch and
the world-model statistics. :func:`judge_epoch` folds one epoch's outputs into it,
:func:`apply_growth` renames grown variants and :func:`rebuild_ledger` recomputes the ledger of
a resumed run from its judgments, with the same :func:`ledger_add` as the live run, so the float
sums are bit-identical.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from augnes_jax import regret
from augnes_jax.epoch import EpochOutputs
from augnes_jax.variants import Bucket, Variant
from augnes_jax.world_model_stats import WorldModelStats, head_metrics

__all__ = ["HostState", "JudgedEpoch", "VariantResult", "add_episodes", "apply_growth", "judge_epoch",
           "ledger_add", "rebuild_ledger", "set_bucket_variants", "snapshot", "state_record"]

log = logging.getLogger("augnes_jax.sweep")

Ledger = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class HostState:
    """What a sweep keeps on the host between epochs (see the module docstring).

    Attributes:
      buckets: the width buckets; their variants carry the current names.
      diverged: names of the variants excluded after non-finite training.
      diverged_at: the epoch at which each diverged variant was first flagged.
      growth: growth events ``{"epoch", "from", "to", "hidden_dim": [old, new]}`` in order.
      ledger: per variant ``(counts[G], regret sums[G])`` over every judged episode.
      episodes: per variant ``(goal ids, regret)`` of every judged episode, in judging order.
      collection: per variant the collection share of each selected goal, one row per epoch.
      wm_stats: the world-model statistics of every variant and epoch.
      verdicts: the latest decision's verdict per goal (``regret.goal_sampling=diagnosis``).
      verdicts_at: every decision's verdicts by the epoch it was made at (diagnosis mode only),
        so that a resumed run collects by the verdicts of the epoch before its start.
    """

    buckets: list[Bucket]
    wm_stats: WorldModelStats
    diverged: set[str] = dataclasses.field(default_factory=set)
    diverged_at: dict[str, int] = dataclasses.field(default_factory=dict)
    growth: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ledger: Ledger = dataclasses.field(default_factory=dict)
    episodes: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    collection: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)
    verdicts: dict[int, str] = dataclasses.field(default_factory=dict)
    verdicts_at: dict[int, dict[int, str]] = dataclasses.field(default_factory=dict)

    @property
    def variants(self) -> list[Variant]:
        """Returns every bucket's variants, bucket by bucket."""
        return [v for b in self.buckets for v in b.variants]


class VariantResult(NamedTuple):
    """One variant's judged epoch.

    ``regret`` and ``advantage`` are per evaluation episode (None for a diverged variant), with
    their means in ``avg_regret`` and ``avg_advantage``.
    """

    variant: Variant
    returns: np.ndarray
    metrics: dict[str, Any]
    share: np.ndarray
    diverged: bool
    regret: np.ndarray | None = None
    advantage: np.ndarray | None = None
    avg_regret: float | None = None
    avg_advantage: float | None = None


class JudgedEpoch(NamedTuple):
    """One epoch judged: the shared evaluation episodes and every variant's result, by name.

    ``planner_gap`` is, per evaluation episode, the exact optimum minus the evaluation planner's
    return on the true dynamics (None where the optimum is not exact); ``latency_ms`` maps each
    variant to its bucket's measured milliseconds per control step (absent where not timed).
    """

    epoch: int
    goals: np.ndarray
    optimal: np.ndarray
    baseline: np.ndarray
    variants: dict[str, VariantResult]
    planner_gap: np.ndarray | None = None
    latency_ms: dict[str, float] | None = None


def ledger_add(ledger: Ledger, name: str, goals: np.ndarray, reg: np.ndarray, num_goals: int) -> None:
    """Adds one epoch's episodes of variant ``name`` to its per-goal ledger (count and regret sum)."""
    counts, sums = ledger.get(name, (np.zeros(num_goals), np.zeros(num_goals)))
    ledger[name] = (counts + np.bincount(goals, minlength=num_goals),
                    sums + np.bincount(goals, weights=reg, minlength=num_goals))


def add_episodes(episodes: dict[str, tuple[np.ndarray, np.ndarray]], name: str, goals: np.ndarray,
                 reg: np.ndarray) -> None:
    """Appends one epoch's episodes of variant ``name`` (goal ids and regret) to its history."""
    seen_g, seen_r = episodes.get(name, (np.zeros(0, np.int64), np.zeros(0)))
    episodes[name] = (np.concatenate([seen_g, goals]), np.concatenate([seen_r, reg]))


def _metrics(i: int, out, goal_ids: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Returns variant ``i``'s model metrics (without ``diverged``) and its returns."""
    one = jax.tree.map(lambda x: np.asarray(x[i]), out.one_step)
    ks = jax.tree.map(lambda x: np.asarray(x[i]), out.k_step)
    train = jax.tree.map(lambda x: np.asarray(x[i]), out.train)
    metrics = {"train_loss": train["train_loss"], "val_mse": one["val_mse"],
               "per_dim_mse": one["per_dim_mse"], "per_goal_mse": {str(g): one["per_goal_mse"][g] for g in goal_ids},
               "k_step_mse": {str(k): ks[k] for k in sorted(ks)}, "samples_seen": int(train["samples_seen"]),
               "nonfinite_updates": int(train["nonfinite_updates"])}
    metrics.update(head_metrics(one, goal_ids))  # reward and termination heads' errors, where learned
    return metrics, np.asarray(out.returns[i], np.float64)


def judge_epoch(host: HostState, outputs: EpochOutputs, epoch: int, goal_ids: np.ndarray, num_goals: int,
                num_params: Callable[[Variant], int]) -> JudgedEpoch:
    """Returns epoch ``epoch`` judged, after folding it into ``host``.

    A variant whose training went non-finite, or whose model error or returns are not finite, is
    flagged diverged from here on (its episodes are not judged). Every variant's model metrics and
    collection shares are recorded; every other variant's regret and advantage per episode are
    added to its episode history and ledger.
    """
    optimal = np.asarray(outputs.optimal, np.float64)
    baseline = np.asarray(outputs.baseline, np.float64)
    goals = np.asarray(outputs.goals, np.int64)
    planner_gap = (None if outputs.planner is None
                   else regret.episode_regret(np.asarray(outputs.planner, np.float64), optimal))
    latency = _latency_by_variant(host.buckets, outputs.control_ms)
    results: dict[str, VariantResult] = {}
    for bucket, out in zip(host.buckets, outputs.buckets, strict=True):
        for i, v in enumerate(bucket.variants):
            metrics, returns = _metrics(i, out, goal_ids)
            nonfinite = metrics["nonfinite_updates"]
            diverged = (v.name in host.diverged or nonfinite > 0 or not np.isfinite(metrics["val_mse"])
                        or not np.all(np.isfinite(returns)))
            if diverged and v.name not in host.diverged:
                log.warning("variant %s diverged at epoch %d (non-finite updates: %d); it is excluded "
                            "from here on, the other variants continue", v.name, epoch, nonfinite)
                host.diverged.add(v.name)
            if diverged:
                host.diverged_at.setdefault(v.name, epoch)
            metrics["diverged"] = diverged
            meta = {"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed,
                    "num_params": num_params(v)}
            if v.named_depth is not None:  # a sweep over depths
                meta["num_layers"] = v.named_depth
            host.wm_stats.record(v.name, epoch, metrics, meta)
            counts = np.asarray(out.counts[i], np.float64)
            share = (counts / max(counts.sum(), 1.0))[goal_ids]
            host.collection.setdefault(v.name, []).append([float(x) for x in share])
            results[v.name] = VariantResult(v, returns, metrics, share, diverged)
    for name, res in results.items():
        if res.diverged:
            continue
        reg = regret.episode_regret(res.returns, optimal)
        adv = regret.episode_advantage(res.returns, baseline)
        add_episodes(host.episodes, name, goals, reg)
        ledger_add(host.ledger, name, goals, reg, num_goals)
        results[name] = res._replace(regret=reg, advantage=adv, avg_regret=float(reg.mean()),
                                     avg_advantage=float(adv.mean()))
    return JudgedEpoch(epoch, goals, optimal, baseline, results, planner_gap, latency)


def _latency_by_variant(buckets: Sequence[Bucket], control_ms: Sequence[float | None] | None) -> dict[str, float]:
    """Returns each variant's bucket latency per control step (variants of untimed buckets are absent)."""
    if control_ms is None:
        return {}
    return {v.name: float(ms) for b, ms in zip(buckets, control_ms, strict=True) if ms is not None
            for v in b.variants}


def apply_growth(host: HostState, epoch: int, old: Sequence[Variant], new: Sequence[Variant],
                 num_goals: int) -> None:
    """Records that variants ``old`` became ``new`` at ``epoch`` (same order).

    Each new name takes over its predecessor's ledger, episodes and collection history, and a
    diverged variant stays excluded under its new name.
    """
    for v, nv in zip(old, new, strict=True):
        host.growth.append({"epoch": epoch, "from": v.name, "to": nv.name,
                            "hidden_dim": [v.hidden_dim, nv.hidden_dim]})
        host.ledger[nv.name] = host.ledger.get(v.name, (np.zeros(num_goals), np.zeros(num_goals)))
        if v.name in host.episodes:
            host.episodes[nv.name] = host.episodes[v.name]
        host.collection[nv.name] = list(host.collection.get(v.name, []))
        if v.name in host.diverged:
            host.diverged.add(nv.name)
            host.diverged_at.setdefault(nv.name, host.diverged_at.get(v.name, epoch))


def set_bucket_variants(host: HostState, b_index: int, variants: Sequence[Variant]) -> Bucket:
    """Returns bucket ``b_index`` with its variants replaced by ``variants`` (the host's copy too)."""
    bucket = dataclasses.replace(host.buckets[b_index], variants=tuple(variants))
    host.buckets[b_index] = bucket
    return bucket


def snapshot(host: HostState) -> HostState:
    """Returns a copy of ``host`` that later changes to ``host`` leave as it is.

    For a writer that writes epoch ``e`` while epoch ``e + 1`` is judged into ``host``. Arrays and
    growth events are never changed in place once recorded, so they are shared.
    """
    return HostState(buckets=list(host.buckets), wm_stats=copy.deepcopy(host.wm_stats),
                     diverged=set(host.diverged), diverged_at=dict(host.diverged_at), growth=list(host.growth),
                     ledger=dict(host.ledger), episodes=dict(host.episodes),
                     collection={k: list(v) for k, v in host.collection.items()}, verdicts=dict(host.verdicts),
                     verdicts_at=dict(host.verdicts_at))


def state_record(host: HostState, epoch: int, flop_fraction: float) -> dict[str, Any]:
    """Returns ``sweep_state.json``'s content after ``epoch``: what a resume gives back to the host."""
    record = {"schema": 1, "epoch": epoch,
              "diverged": {d: host.diverged_at.get(d, epoch) for d in sorted(host.diverged)},
              "collection": host.collection, "growth": host.growth, "useful_flop_fraction": flop_fraction}
    if host.verdicts_at:  # regret.goal_sampling=diagnosis
        record["verdicts"] = {str(e): {str(g): v for g, v in sorted(vs.items())}
                              for e, vs in sorted(host.verdicts_at.items())}
    return record


def rebuild_ledger(variant: Sequence[str], epoch: Sequence[int], episode: Sequence[int], goal_id: Sequence[int],
                   reg: Sequence[float], growth: Sequence[dict], num_goals: int) -> tuple[Ledger, dict]:
    """Returns ``(ledger, episodes)`` recomputed from judgments (columns, in file order).

    The ledger is accumulated exactly as :func:`judge_epoch` accumulates it, epoch by epoch and
    episode by episode, with a variant's ledger handed on to its new name where it grew, so the
    float sums (and the regret-prioritised goal probabilities drawn from them) are bit-identical
    to those of an uninterrupted run.
    """
    by_epoch: dict[int, dict[str, list[int]]] = {}
    for row, (name, e) in enumerate(zip(variant, epoch, strict=True)):
        by_epoch.setdefault(int(e), {}).setdefault(name, []).append(row)
    growth_at: dict[int, list[dict]] = {}
    for event in growth:
        growth_at.setdefault(int(event["epoch"]), []).append(event)
    ledger: Ledger = {}
    episodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for e in sorted(set(by_epoch) | set(growth_at)):
        for name, rows in by_epoch.get(e, {}).items():
            rows = sorted(rows, key=lambda r: int(episode[r]))
            goals = np.asarray([int(goal_id[r]) for r in rows], np.int64)
            regs = np.asarray([float(reg[r]) for r in rows], np.float64)
            ledger_add(ledger, name, goals, regs, num_goals)
            add_episodes(episodes, name, goals, regs)
        for event in growth_at.get(e, []):
            ledger[event["to"]] = ledger.get(event["from"], (np.zeros(num_goals), np.zeros(num_goals)))
            if event["from"] in episodes:
                episodes[event["to"]] = episodes[event["from"]]
    return ledger, episodes
