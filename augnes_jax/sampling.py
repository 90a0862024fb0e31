"""A sweep's random streams and its collection goal probabilities (shell layer, pure functions).

Every random stream is derived from (config seed, variant seed, purpose, epoch), never from the
variant's width or buffer size, so variants that differ only in capacity see the same random
numbers, and an interrupted run resumes onto the same streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["COLLECT", "DATA_LIMITED_WEIGHT", "EVAL", "INIT", "TRAIN", "VAL", "collection_goal_probabilities",
           "diagnosis_goal_probabilities",
           "eval_episodes", "goal_probabilities", "goal_verdicts", "ledger_goal_probabilities", "purpose_key",
           "variant_keys"]

# Key purposes (see the module docstring).
INIT, COLLECT, TRAIN, EVAL, VAL = range(5)
# regret.goal_sampling=diagnosis: a data-limited goal's weight; every other goal weighs 1
DATA_LIMITED_WEIGHT = 2.0


def purpose_key(cfg_seed: int, purpose: int, epoch: int = 0) -> jax.Array:
    """Returns the base key of one purpose at one epoch."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg_seed), purpose), epoch)


def variant_keys(cfg_seed: int, seeds: np.ndarray, purpose: int, epoch: int) -> jax.Array:
    """Returns ``[V]`` typed keys that depend only on (config seed, variant seed, purpose, epoch)."""
    base = purpose_key(cfg_seed, purpose, epoch)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(seeds, jnp.uint32))


def eval_episodes(cfg_seed: int, epoch: int, goal_ids: np.ndarray, per_goal: int) -> tuple[jax.Array, jax.Array]:
    """Returns the evaluation episodes' ``(keys[N], goals[N])``; shared by every variant (CRN)."""
    goals = jnp.repeat(jnp.asarray(goal_ids, jnp.int32), per_goal)
    return jax.random.split(purpose_key(cfg_seed, EVAL, epoch), goals.shape[0]), goals


def goal_probabilities(avg_regret: np.ndarray, counts: np.ndarray, mode: str, temperature: float, floor: float) -> np.ndarray:
    """Returns collection probabilities over goals ``[G]``.

    ``uniform`` gives every goal the same share. ``regret`` gives goals with a higher average
    regret so far a larger share: a softmax over standardised average regret at the given
    temperature, mixed with a uniform floor so no goal starves. Goals not yet judged count as
    average.
    """
    g = avg_regret.shape[0]
    if mode == "uniform" or not np.any(counts > 0):
        return np.full(g, 1.0 / g)
    seen = counts > 0
    r = np.where(seen, avg_regret, np.nan)
    mu = np.nanmean(r)
    sd = np.nanstd(r)
    z = np.where(seen, (r - mu) / (sd + 1e-8), 0.0)
    w = np.exp((z - z.max()) / temperature)
    p = w / w.sum()
    floor = min(floor, 1.0 / g)
    return floor + (1.0 - g * floor) * p


def ledger_goal_probabilities(entry: tuple[np.ndarray, np.ndarray] | None, goal_ids: np.ndarray, mode: str,
                              temperature: float, floor: float) -> np.ndarray:
    """Returns a variant's collection probabilities over ``goal_ids`` from its regret ledger entry.

    ``entry`` is ``(counts[G], sums[G])`` over every goal of the environment, None before the
    variant was first judged (then every goal gets the same share).
    """
    g = goal_ids
    if entry is None:
        return np.full(len(g), 1.0 / len(g))
    counts, sums = entry
    avg = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)[g]
    return goal_probabilities(avg, counts[g], mode, temperature, floor)


def diagnosis_goal_probabilities(verdicts: Mapping[int, str], goal_ids: np.ndarray,
                                 data_weight: float = DATA_LIMITED_WEIGHT) -> np.ndarray:
    """Returns collection probabilities over ``goal_ids`` from the latest per-goal verdicts.

    The rule of ``regret.goal_sampling=diagnosis``: a ``data_limited`` goal weighs
    ``data_weight`` (more data is what it lacks); every other goal (``capacity_limited``: more
    data does not help it; ``solved``, ``planner_limited``, ``inconclusive``, or no verdict yet)
    weighs 1. The probabilities are the weights over their sum, so before any verdict every goal
    gets the same share.

    The sweep takes the verdicts from each epoch's decision (the controller's per-goal diagnosis
    of the TensorBoard evidence, consulted every epoch: the config requires
    ``meta.consult_every_epoch``), so epoch ``e + 1`` collects by the verdicts of epoch ``e``; in
    this mode an epoch's writes never overlap the next epoch. The verdicts are not part of a
    checkpoint: a resumed run collects uniformly until its first decision.
    """
    w = np.asarray([data_weight if verdicts.get(int(g)) == "data_limited" else 1.0 for g in goal_ids], np.float64)
    return w / w.sum()


def goal_verdicts(decision: Any) -> dict[int, str]:
    """Returns ``{goal: verdict}`` from a decision's per-goal diagnosis (empty without one)."""
    goals = (getattr(decision, "analysis", None) or {}).get("goals") or {}
    return {int(g): str(d["verdict"]) for g, d in goals.items() if isinstance(d, Mapping) and "verdict" in d}


def collection_goal_probabilities(regret_cfg: Any, entry: tuple[np.ndarray, np.ndarray] | None,
                                  verdicts: Mapping[int, str], goal_ids: np.ndarray) -> np.ndarray:
    """Returns a variant's collection probabilities over ``goal_ids`` under ``regret.goal_sampling``.

    ``diagnosis`` follows the latest verdicts (:func:`diagnosis_goal_probabilities`, the same for
    every variant); ``uniform`` and ``regret`` follow the variant's ledger ``entry``
    (:func:`ledger_goal_probabilities`).
    """
    rc = regret_cfg
    if rc.goal_sampling == "diagnosis":
        return diagnosis_goal_probabilities(verdicts, goal_ids)
    return ledger_goal_probabilities(entry, goal_ids, rc.goal_sampling, rc.priority_temperature, rc.min_goal_share)
