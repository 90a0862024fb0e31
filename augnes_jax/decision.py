"""The controller's decision: marginal capacity gains and "expand" or "keep" (pure: no I/O).

Between consecutive capacities of a ladder (hidden_dim at a fixed buffer_size, and buffer_size
at a fixed hidden_dim; in a sweep over depths also num_layers at a fixed hidden_dim and
buffer_size, every ladder then fixing the depth too) the marginal gain is the decrease of
``avg_regret`` (positive = better), also relative to the smaller capacity and per extra parameter; ``avg_regret`` of a capacity is
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
A depth to expand is suggested one layer deeper.

Depth. When the evidence holds more than one depth, ``num_layers`` is a third axis (:data:`DEPTH`):
its gains, its recommendation and ``capacity_axes`` (:mod:`augnes_jax.capacity_axes`: whether
width or depth pays more gain per unit of ``meta.cost`` from the recommended capacity, named in
the reason) enter ``decision.json``; the analysis sections are computed at the recommended depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.capacity_axes import compare_axes
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
    "DEPTH",
    "SCHEMA",
    "Decision",
    "Gain",
    "avg_regret_ci",
    "decide",
    "decision_axes",
    "latest_gains",
    "marginal_gain",
]

SCHEMA = 1
AXES = ("hidden_dim", "buffer_size")
DEPTH = "num_layers"  # the third axis, in a sweep over depths


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


def decision_axes(evidence: Sequence[VariantEvidence]) -> tuple[str, ...]:
    """Returns the capacity axes of the evidence: :data:`AXES`, and :data:`DEPTH` where it holds two depths or more."""
    return (*AXES, DEPTH) if len({e.num_layers for e in evidence} - {None}) > 1 else AXES


def _ladders(evidence: Sequence[VariantEvidence], axis: str,
             axes: Sequence[str] = AXES) -> dict[tuple[int, ...], dict[int, list[VariantEvidence]]]:  # fmt: skip
    """Returns ``{fixed values of the other axes: {capacity on axis: [seed evidence]}}`` for one axis."""
    others = [a for a in axes if a != axis]
    out: dict[tuple[int, ...], dict[int, list[VariantEvidence]]] = {}
    for e in evidence:
        fixed = tuple(getattr(e, o) for o in others)
        out.setdefault(fixed, {}).setdefault(getattr(e, axis), []).append(e)
    return out


@dataclasses.dataclass
class _AxisResult:
    gains: list[Gain]
    recommended: int | None
    expand_to: int | None  # the largest tested capacity when its step is significant


def _axis(evidence: Sequence[VariantEvidence], ax_id: int, *, epsilon: float, relative: bool,
          bootstrap_samples: int, seed: int, axes: Sequence[str] = AXES) -> _AxisResult:  # fmt: skip
    """Returns the gains of every ladder along ``axes[ax_id]`` and what they recommend.

    The bootstrap of every step draws from its own generator, seeded from ``seed`` and the
    step's identity, so a step's interval does not depend on which other steps exist.
    """
    axis = axes[ax_id]
    others = [a for a in axes if a != axis]
    ladders = _ladders(evidence, axis, axes)
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
            rng = np.random.default_rng([seed, ax_id, *fixed, a, b])
            steps.append(
                marginal_gain(
                    axis, dict(zip(others, fixed, strict=True)), ladders[fixed][a], ladders[fixed][b],
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


def _capacities(evidence: Sequence[VariantEvidence], depth: bool = False) -> list[dict[str, Any]]:
    """Returns one record per capacity; with ``depth`` each depth's capacities apart, named by ``num_layers``."""
    groups = {d: group_by_capacity(e for e in evidence if e.num_layers == d)
              for d in sorted({e.num_layers for e in evidence})} if depth else {None: group_by_capacity(evidence)}  # fmt: skip
    return [
        {
            **({DEPTH: d} if depth else {}),
            "hidden_dim": h,
            "buffer_size": b,
            "avg_regret": float(np.mean([e.avg_regret for e in evs])),
            "seeds": sorted(e.seed for e in evs),
            "num_params": mean_or_none([e.num_params for e in evs]),
            "avg_advantage": mean_or_none([e.avg_advantage for e in evs]),
            "val_mse": mean_or_none([e.val_mse for e in evs]),
        }
        for d, by_cap in groups.items()
        for (h, b), evs in sorted(by_cap.items())
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
    With two depths or more (:func:`decision_axes`), ``num_layers`` is a third axis and the
    ``capacity_axes`` section says whether width or depth pays more per unit of ``analysis.cost``.
    """
    analysis = analysis or AnalysisSettings()
    if analysis.statistic == "iqm":
        evidence = [dataclasses.replace(e, avg_regret=float(iqm(e.cells))) for e in evidence]
    axes = decision_axes(evidence)
    gains: list[Gain] = []
    rec: dict[str, int | None] = {}
    tested_max: dict[str, int] = {}  # axes to expand, in axes order, and their largest capacity
    for ax_id, axis in enumerate(axes):
        res = _axis(evidence, ax_id, epsilon=epsilon, relative=relative, bootstrap_samples=bootstrap_samples, seed=seed,
                    axes=axes)  # fmt: skip
        gains.extend(res.gains)
        rec[axis] = res.recommended
        if res.expand_to is not None:
            tested_max[axis] = res.expand_to
    expand_axes = list(tested_max)
    decision = "expand" if expand_axes else "keep"
    suggested = None
    if expand_axes:
        suggested = {axis: (_next_capacity(axis, tested_max[axis]) if axis in expand_axes else rec[axis]) for axis in axes}
    reason = _reason(decision, rec, suggested, gains, evidence, epsilon, relative, expand_axes)
    if any(g.seeds == 1 for g in gains):
        reason += "; note: a step with one seed measures episode noise only, not seed-to-seed variation"
    extra = _analysis(evidence, rec, epsilon, analysis, seed) if with_analysis else {}
    if DEPTH in axes:
        extra["capacity_axes"] = compare_axes(evidence, gains, rec, measure=analysis.cost,
                                              flops_per_param=analysis.flops_per_param,
                                              epsilon_per_cost=analysis.epsilon_per_cost)  # fmt: skip
        reason += "; " + extra["capacity_axes"]["line"]
    summary = _evidence_summary(evidence, excluded)
    return Decision(
        decision=decision,
        recommended=rec,
        suggested_next=suggested,
        epsilon=float(epsilon),
        relative=bool(relative),
        k_last=int(k_last),
        gains=tuple(gains),
        capacities=tuple(_capacities(evidence, DEPTH in axes)),
        evidence=summary,
        reason=reason,
        generated_at=utc_now("seconds"),
        epoch=summary["steps"][-1] if summary["steps"] else None,
        analysis=extra,
    )


def _next_capacity(axis: str, largest: int) -> int:
    """Returns the capacity suggested past the largest tested one: one layer deeper, else twice as large."""
    return largest + 1 if axis == DEPTH else 2 * largest


def _analysis(evidence: Sequence[VariantEvidence], rec: Mapping[str, int | None], epsilon: float,
              settings: AnalysisSettings, seed: int) -> dict[str, Any]:  # fmt: skip
    """Returns the analysis sections, on the evidence at the recommended depth in a sweep over depths."""
    if rec.get(DEPTH) is not None:
        evidence = [e for e in evidence if e.num_layers == rec[DEPTH]]
    return analyze(evidence, recommended=rec, epsilon=epsilon, settings=settings, seed=seed)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _ladder_str(ladder: Mapping[str, int | None]) -> str:
    return ", ".join(f"{k} {v}" for k, v in ladder.items())


def _reason(decision, rec, suggested, gains, evidence, epsilon, relative, expand_axes) -> str:
    what = "relative gain" if relative else "gain"
    if not evidence:
        return "no evidence yet: no variant has written regret/avg; keep until evidence arrives"
    if not gains:
        return (
            f"insufficient evidence: only one capacity per ladder ({_ladder_str(rec)}); "
            "keep until a second capacity is measured"
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
        f"no tested expansion beyond {_ladder_str(rec)} "
        f"gains significantly more than epsilon={epsilon:g} ({parts})"
    )
