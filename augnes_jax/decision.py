"""The controller's decision: marginal capacity gains and "expand" or "keep" (pure: no I/O).

Between consecutive capacities of a ladder (hidden_dim at a fixed buffer_size, and buffer_size
at a fixed hidden_dim) the marginal gain is the decrease of ``avg_regret`` (positive = better),
also relative to the smaller capacity and per extra parameter; ``avg_regret`` of a capacity is
the mean over its seeds of the window means (:mod:`augnes_jax.evidence`).

Confidence. A two-level bootstrap (seeds, then the per-goal-per-epoch regret cells within each
seed) gives a percentile 95% interval; it is paired when both capacities share their seeds,
because the sweep evaluates every variant on the same start states. With few seeds a
percentile bootstrap is too narrow (two seeds give it only three distinct seed-level draws), so
with two or more seeds the interval is widened to also cover a Student-t interval on the
per-seed differences. With one seed only the within-seed level remains.

Decision. On each ladder a step is *significant* when the lower bound of its interval exceeds
``epsilon`` (relative gain if ``relative``). The recommended capacity is the smallest one from
which no further tested step is significant (the smallest whose next expansion is not
significant, when gains diminish monotonically); across ladders the largest recommendation
wins, so no ladder is under-provisioned. "expand" iff on some ladder the step into its largest
tested capacity is significant; the suggestion is then to double that axis. Everything else is
"keep" — including the case of a single tested capacity, which is reported as "keep" with an
"insufficient evidence" reason, because noise or a lack of data must never buy a bigger model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.clock import utc_now
from augnes_jax.decision_analysis import AnalysisSettings, analyze
from augnes_jax.evidence import (
    NUM_PARAMS_TAG,
    REGRET_TAG,
    VariantEvidence,
    group_by_capacity,
    mean_or_none,
)
from augnes_jax.statistics import (
    hull,
    iqm,
    percentile_interval,
    t_interval,
    two_level_bootstrap,
    welch_t_interval,
)

__all__ = [
    "AXES",
    "SCHEMA",
    "Decision",
    "Gain",
    "avg_regret_ci",
    "decide",
    "latest_gains",
    "marginal_gain",
]

SCHEMA = 1
AXES = ("hidden_dim", "buffer_size")


@dataclasses.dataclass(frozen=True)
class Gain:
    """The marginal gain of one step on a capacity ladder (regret decrease, positive = better)."""

    axis: str
    ladder: Mapping[str, int]
    from_: int
    to: int
    avg_regret_from: float
    avg_regret_to: float
    gain: float
    gain_ci95: tuple[float, float]
    relative_gain: float | None
    relative_gain_ci95: tuple[float, float] | None
    gain_per_param: float | None
    significant: bool
    seeds: int
    paired: bool

    def compared(self, relative: bool) -> float | None:
        """Returns the value compared with epsilon: the relative gain if ``relative``, else the gain."""
        return self.relative_gain if relative else self.gain

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON form used in ``decision.json``."""
        return {
            "axis": self.axis,
            "ladder": dict(self.ladder),
            "from": self.from_,
            "to": self.to,
            "avg_regret_from": self.avg_regret_from,
            "avg_regret_to": self.avg_regret_to,
            "gain": self.gain,
            "gain_ci95": list(self.gain_ci95),
            "relative_gain": self.relative_gain,
            "relative_gain_ci95": list(self.relative_gain_ci95) if self.relative_gain_ci95 else None,
            "gain_per_param": self.gain_per_param,
            "significant": self.significant,
            "seeds": self.seeds,
            "paired": self.paired,
        }


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision of the controller and the evidence behind it."""

    decision: str  # "expand" | "keep"
    recommended: Mapping[str, int | None]
    suggested_next: Mapping[str, int] | None
    epsilon: float
    relative: bool
    k_last: int
    gains: tuple[Gain, ...]
    capacities: tuple[Mapping[str, Any], ...]
    evidence: Mapping[str, Any]
    reason: str
    generated_at: str
    epoch: int | None
    analysis: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def key(self) -> tuple:
        """Returns what identifies the decision for change detection (not its timestamp)."""
        nxt = tuple(sorted(self.suggested_next.items())) if self.suggested_next else None
        return (self.decision, tuple(sorted(self.recommended.items())), nxt)

    def history_entry(self) -> dict[str, Any]:
        """Returns the compact form kept in ``decision.json``'s history."""
        return {
            "epoch": self.epoch,
            "decision": self.decision,
            "recommended": dict(self.recommended),
            "suggested_next": dict(self.suggested_next) if self.suggested_next else None,
            "generated_at": self.generated_at,
        }

    def to_json(self, *, history: Sequence[Mapping[str, Any]] = (), growth: Sequence[Any] | None = None) -> dict[str, Any]:
        """Returns the ``decision.json`` document."""
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "generated_at": self.generated_at,
            "epoch": self.epoch,
            "decision": self.decision,
            "recommended": dict(self.recommended),
            "suggested_next": dict(self.suggested_next) if self.suggested_next else None,
            "epsilon": self.epsilon,
            "relative": self.relative,
            "k_last": self.k_last,
            "gains": [g.to_json() for g in self.gains],
            "capacities": [dict(c) for c in self.capacities],
            "evidence": dict(self.evidence),
            "history": [dict(h) for h in history],
            "reason": self.reason,
        }
        out.update(self.analysis)
        if growth is not None:
            out["growth"] = list(growth)
        return out


# ----------------------------------------------------------------------------- intervals


def avg_regret_ci(
    seeds: Sequence[VariantEvidence], *, bootstrap_samples: int = 1000, rng: np.random.Generator
) -> tuple[float, float]:
    """Returns the 95% interval of a capacity's ``avg_regret`` (same method as the gains).

    The two-level bootstrap percentile interval around the point estimate, widened to a
    Student-t interval over the per-seed window means when there are two or more seeds.
    """
    point = float(np.mean([e.avg_regret for e in seeds]))
    boot = two_level_bootstrap([[e.cells for e in seeds]], rng, bootstrap_samples)[:, 0]
    center = float(np.mean([e.cells.mean() for e in seeds]))
    return hull(percentile_interval(point, boot, center), t_interval([e.avg_regret for e in seeds]))


def _seed_interval(small: Sequence[VariantEvidence], large: Sequence[VariantEvidence], paired: bool):
    """Returns the t-interval of the regret difference over seeds (paired or Welch), or None."""
    a = np.asarray([e.avg_regret for e in small], np.float64)
    b = np.asarray([e.avg_regret for e in large], np.float64)
    return t_interval(a - b) if paired else welch_t_interval(a, b)


def marginal_gain(
    axis: str,
    ladder: Mapping[str, int],
    small: Sequence[VariantEvidence],
    large: Sequence[VariantEvidence],
    *,
    epsilon: float,
    relative: bool,
    bootstrap_samples: int,
    rng: np.random.Generator,
) -> Gain:
    """Returns the marginal gain of going from capacity ``small`` to ``large`` (seeds of each).

    Point estimates use the per-seed window means of ``regret/avg``; the interval is the
    two-level bootstrap's percentile interval around them (widened to a Student-t interval on
    the per-seed values with two or more seeds). A step is significant when the interval's
    lower bound exceeds ``epsilon`` and each side has more than one observation.
    """
    small = sorted(small, key=lambda e: e.seed)
    large = sorted(large, key=lambda e: e.seed)
    ra = float(np.mean([e.avg_regret for e in small]))
    rb = float(np.mean([e.avg_regret for e in large]))
    gain = ra - rb
    paired = [e.seed for e in small] == [e.seed for e in large] and all(
        len(x.cells) == len(y.cells) for x, y in zip(small, large, strict=True)
    )
    if paired:
        boot = two_level_bootstrap([[e.cells for e in small], [e.cells for e in large]], rng, bootstrap_samples)
        a_boot, b_boot = boot[:, 0], boot[:, 1]
    else:
        a_boot = two_level_bootstrap([[e.cells for e in small]], rng, bootstrap_samples)[:, 0]
        b_boot = two_level_bootstrap([[e.cells for e in large]], rng, bootstrap_samples)[:, 0]
    ca = float(np.mean([e.cells.mean() for e in small]))
    cb = float(np.mean([e.cells.mean() for e in large]))
    t_ci = _seed_interval(small, large, paired)
    ci = hull(percentile_interval(gain, a_boot - b_boot, ca - cb), t_ci)

    rel = rel_ci = None
    if ra > 0 and ca > 0:
        rel = gain / ra
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_boot = np.where(a_boot > 0, (a_boot - b_boot) / a_boot, np.nan)
        rel_t = (t_ci[0] / ra, t_ci[1] / ra) if t_ci is not None else None
        rel_ci = hull(percentile_interval(rel, rel_boot, (ca - cb) / ca), rel_t)

    lower = (rel_ci[0] if rel_ci is not None else None) if relative else ci[0]
    # Without any replication (one seed, one cell) the interval has no width but says nothing.
    replicated = all(len(side) >= 2 or min(len(e.cells) for e in side) >= 2 for side in (small, large))
    return Gain(
        axis=axis,
        ladder=dict(ladder),
        from_=getattr(small[0], axis),
        to=getattr(large[0], axis),
        avg_regret_from=ra,
        avg_regret_to=rb,
        gain=gain,
        gain_ci95=ci,
        relative_gain=rel,
        relative_gain_ci95=rel_ci,
        gain_per_param=_gain_per_param(gain, small, large),
        significant=bool(replicated and lower is not None and lower > epsilon),
        seeds=min(len(small), len(large)),
        paired=paired,
    )


def _gain_per_param(gain: float, small: Sequence[VariantEvidence], large: Sequence[VariantEvidence]) -> float | None:
    pa = [e.num_params for e in small if e.num_params is not None]
    pb = [e.num_params for e in large if e.num_params is not None]
    if pa and pb and np.mean(pb) > np.mean(pa):
        return gain / float(np.mean(pb) - np.mean(pa))
    return None


def latest_gains(gains: Iterable[Gain]) -> list[Gain]:
    """Returns, per ladder (axis and fixed capacity), its step into the largest capacity, in order of first appearance."""
    last: dict[tuple, Gain] = {}
    for g in gains:
        key = (g.axis, tuple(sorted(g.ladder.items())))
        if key not in last or g.to > last[key].to:
            last[key] = g
    return list(last.values())


# ------------------------------------------------------------------------------ decision


def _ladders(evidence: Sequence[VariantEvidence], axis: str) -> dict[int, dict[int, list[VariantEvidence]]]:
    """Returns ``{fixed value: {capacity on axis: [seed evidence]}}`` for one axis."""
    other = "buffer_size" if axis == "hidden_dim" else "hidden_dim"
    out: dict[int, dict[int, list[VariantEvidence]]] = {}
    for e in evidence:
        out.setdefault(getattr(e, other), {}).setdefault(getattr(e, axis), []).append(e)
    return out


@dataclasses.dataclass
class _AxisResult:
    gains: list[Gain]
    recommended: int | None
    expand_to: int | None  # the largest tested capacity when its step is significant


def _axis(evidence: Sequence[VariantEvidence], ax_id: int, *, epsilon: float, relative: bool,
          bootstrap_samples: int, seed: int) -> _AxisResult:  # fmt: skip
    """Returns the gains of every ladder along ``AXES[ax_id]`` and what they recommend.

    The bootstrap of every step draws from its own generator, seeded from ``seed`` and the
    step's identity, so a step's interval does not depend on which other steps exist.
    """
    axis, other = AXES[ax_id], AXES[1 - ax_id]
    ladders = _ladders(evidence, axis)
    gains: list[Gain] = []
    recs, single = [], []
    expand_to = None
    for fixed in sorted(ladders):
        caps = sorted(ladders[fixed])
        if len(caps) == 1:
            single.append(caps[0])
            continue
        steps = []
        for a, b in zip(caps[:-1], caps[1:], strict=True):
            rng = np.random.default_rng([seed, ax_id, fixed, a, b])
            steps.append(
                marginal_gain(
                    axis, {other: fixed}, ladders[fixed][a], ladders[fixed][b],
                    epsilon=epsilon, relative=relative, bootstrap_samples=bootstrap_samples, rng=rng,
                )
            )  # fmt: skip
        gains.extend(steps)
        sig = [i for i, g in enumerate(steps) if g.significant]
        recs.append(caps[sig[-1] + 1] if sig else caps[0])
        if steps[-1].significant:
            expand_to = max(expand_to or 0, caps[-1])
    pool = recs or single
    return _AxisResult(gains, max(pool) if pool else None, expand_to)


def _capacities(evidence: Sequence[VariantEvidence]) -> list[dict[str, Any]]:
    return [
        {
            "hidden_dim": h,
            "buffer_size": b,
            "avg_regret": float(np.mean([e.avg_regret for e in evs])),
            "seeds": sorted(e.seed for e in evs),
            "num_params": mean_or_none([e.num_params for e in evs]),
            "avg_advantage": mean_or_none([e.avg_advantage for e in evs]),
            "val_mse": mean_or_none([e.val_mse for e in evs]),
        }
        for (h, b), evs in sorted(group_by_capacity(evidence).items())
    ]


def _evidence_summary(evidence: Sequence[VariantEvidence], excluded: Sequence[str]) -> dict[str, Any]:
    tags = sorted({t for e in evidence for t in e.cell_tags} | ({REGRET_TAG} if evidence else set()))
    if any(e.num_params is not None for e in evidence):
        tags.append(NUM_PARAMS_TAG)
    return {
        "tags": tags,
        "steps": sorted({s for e in evidence for s in e.steps}),
        "runs": sorted(e.name for e in evidence),
        "excluded_diverged": sorted(excluded),
    }


def decide(
    evidence: Sequence[VariantEvidence],
    *,
    epsilon: float,
    relative: bool = False,
    k_last: int = 2,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    excluded: Sequence[str] = (),
    analysis: AnalysisSettings | None = None,
    with_analysis: bool = True,
) -> Decision:
    """Returns the decision for a set of variant evidence windows (pure: no I/O).

    The bootstrap of every step draws from its own generator, seeded from ``seed`` and the
    step's identity, so a step's interval does not depend on which other steps exist.
    ``analysis`` (default settings when None) adds the per-goal verdicts, the scaling curve,
    the robust aggregates and the cost (:mod:`augnes_jax.decision_analysis`); with
    ``statistic="iqm"`` each variant's value is the IQM of its window cells instead of its mean.
    ``with_analysis=False`` leaves those sections out (the decision itself is the same).
    """
    analysis = analysis or AnalysisSettings()
    if analysis.statistic == "iqm":
        evidence = [dataclasses.replace(e, avg_regret=float(iqm(e.cells))) for e in evidence]
    gains: list[Gain] = []
    rec: dict[str, int | None] = {}
    tested_max: dict[str, int] = {}  # axes to expand, in AXES order, and their largest capacity
    for ax_id, axis in enumerate(AXES):
        res = _axis(evidence, ax_id, epsilon=epsilon, relative=relative, bootstrap_samples=bootstrap_samples, seed=seed)
        gains.extend(res.gains)
        rec[axis] = res.recommended
        if res.expand_to is not None:
            tested_max[axis] = res.expand_to
    expand_axes = list(tested_max)
    decision = "expand" if expand_axes else "keep"
    suggested = None
    if expand_axes:
        suggested = {axis: (2 * tested_max[axis] if axis in expand_axes else rec[axis]) for axis in AXES}
    reason = _reason(decision, rec, suggested, gains, evidence, epsilon, relative, expand_axes)
    if any(g.seeds == 1 for g in gains):
        reason += "; note: a step with one seed measures episode noise only, not seed-to-seed variation"
    summary = _evidence_summary(evidence, excluded)
    return Decision(
        decision=decision,
        recommended=rec,
        suggested_next=suggested,
        epsilon=float(epsilon),
        relative=bool(relative),
        k_last=int(k_last),
        gains=tuple(gains),
        capacities=tuple(_capacities(evidence)),
        evidence=summary,
        reason=reason,
        generated_at=utc_now("seconds"),
        epoch=summary["steps"][-1] if summary["steps"] else None,
        analysis=analyze(evidence, recommended=rec, epsilon=epsilon, settings=analysis, seed=seed) if with_analysis else {},
    )


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _ladder_str(ladder: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in ladder.items())


def _reason(decision, rec, suggested, gains, evidence, epsilon, relative, expand_axes) -> str:
    what = "relative gain" if relative else "gain"
    if not evidence:
        return "no evidence yet: no variant has written regret/avg; keep until evidence arrives"
    if not gains:
        return (
            f"insufficient evidence: only one capacity per ladder (hidden_dim {rec['hidden_dim']}, "
            f"buffer_size {rec['buffer_size']}); keep until a second capacity is measured"
        )

    def describe(g: Gain) -> str:
        lo, hi = g.relative_gain_ci95 if (relative and g.relative_gain_ci95) else g.gain_ci95
        return f"{g.axis} {g.from_}->{g.to} ({_ladder_str(g.ladder)}): {what} {_fmt(g.compared(relative), 3)} [{_fmt(lo, 3)}, {_fmt(hi, 3)}]"

    last = latest_gains(gains)
    if decision == "expand":
        lead = [g for g in last if g.significant]
        parts = "; ".join(describe(g) for g in lead[:2])
        nxt = ", ".join(f"{a} {suggested[a]}" for a in expand_axes)
        return f"the largest tested step still gains significantly more than epsilon={epsilon:g} ({parts}): try {nxt}"
    parts = "; ".join(describe(g) for g in last[:2])
    return (
        f"no tested expansion beyond hidden_dim {rec['hidden_dim']}, buffer_size {rec['buffer_size']} "
        f"gains significantly more than epsilon={epsilon:g} ({parts})"
    )
