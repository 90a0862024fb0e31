"""MetaJudgmentController: reads a sweep's TensorBoard runs and decides "expand" or "keep".

Evidence comes only from the run's TensorBoard event files (read incrementally through
:class:`augnes_jax.tensorboard_io.TensorBoardReader`), never from JSON artifacts or in-memory sweep
state, so the controller gives the same answer in the sweep's process, in ``--watch`` mode next
to a live run, and after the fact.

Evidence. Per variant (``h{H}-b{B}-s{S}``), the window is the last ``k_last`` epochs of
``regret/avg``; ``avg_regret`` of a capacity is the mean over its seeds of the window means.
By default the window of every variant ends at the latest epoch that all non-diverged variants
have reached (``align_epochs``), so a live read never compares a variant one epoch ahead with
one that lags. Between consecutive capacities of a ladder (hidden_dim at a fixed buffer_size,
and buffer_size at a fixed hidden_dim) the marginal gain is the decrease of ``avg_regret``
(positive = better), also relative to the smaller capacity and per extra parameter.

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

import argparse
import dataclasses
import datetime as _dt
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from augnes_jax import files
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError

log = logging.getLogger(__name__)

SCHEMA = 1
VARIANT_RE = re.compile(r"^h(\d+)-b(\d+)-s(\d+)$")
GOAL_REGRET_RE = re.compile(r"^regret/goal_(\d+)/avg$")
REGRET_TAG = "regret/avg"
ADVANTAGE_TAG = "advantage/avg"
VAL_MSE_TAG = "world_model/val_mse"
NUM_PARAMS_TAG = "model/num_params"  # written when it changes (at growth)
DIVERGED_TAG = "health/diverged"  # written when it changes
# the tags runs written before the health/ namespace carry, read under the current names
_LEGACY_TAGS = {"capacity/num_params": NUM_PARAMS_TAG, "world_model/diverged": DIVERGED_TAG}
_SCALAR_TAGS = (REGRET_TAG, ADVANTAGE_TAG, VAL_MSE_TAG, NUM_PARAMS_TAG, DIVERGED_TAG)
AXES = ("hidden_dim", "buffer_size")

# Two-sided 97.5% Student-t quantiles for 1..30 degrees of freedom.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054


class ScalarReader(Protocol):
    """The reading interface of :class:`augnes_jax.tensorboard_io.TensorBoardReader`."""

    def reload(self) -> ScalarReader: ...
    def runs(self) -> list[str]: ...
    def tags(self, run: str) -> list[str]: ...
    def scalars(self, run: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def t_quantile_975(df: float) -> float:
    """Returns the 97.5% quantile of Student's t with ``df`` degrees of freedom (floored below 31)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df < 31:
        # Fractional (Welch) degrees of freedom round down: the interval only gets wider.
        return _T975[min(int(math.floor(df)), 30) - 1]
    z = _Z975
    # Cornish-Fisher expansion; its error is below 1e-4 for df > 30.
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


# --------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class VariantData:
    """Scalars of one variant's TensorBoard run: ``series[tag] = (steps [T], values [T])``."""

    name: str
    hidden_dim: int
    buffer_size: int
    seed: int
    series: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @property
    def diverged(self) -> bool:
        """Returns True when ``health/diverged`` was ever raised for this variant."""
        s = self.series.get(DIVERGED_TAG)
        return bool(s is not None and np.any(s[1] >= 0.5))  # NaN compares False

    @property
    def latest_step(self) -> int | None:
        """Returns the latest epoch with a ``regret/avg`` value, or None."""
        s = self.series.get(REGRET_TAG)
        return int(s[0][-1]) if s is not None and len(s[0]) else None

    def goal_ids(self) -> list[int]:
        """Returns the sorted goal ids that have a ``regret/goal_{g}/avg`` series."""
        return sorted(int(m.group(1)) for t in self.series if (m := GOAL_REGRET_RE.match(t)))


@dataclasses.dataclass(frozen=True)
class VariantEvidence:
    """The evidence window of one variant.

    ``cells`` holds the per-goal-per-epoch regret values of the window, flattened ``[G * k]``
    (goal-major); runs without goal tags fall back to the ``regret/avg`` values ``[k]``.
    """

    name: str
    hidden_dim: int
    buffer_size: int
    seed: int
    steps: tuple[int, ...]
    avg_regret: float
    cells: np.ndarray
    cell_tags: tuple[str, ...]
    num_params: float | None
    avg_advantage: float | None
    val_mse: float | None


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
        if growth is not None:
            out["growth"] = list(growth)
        return out


# ------------------------------------------------------------------------------ reading


def parse_variant(name: str) -> tuple[int, int, int] | None:
    """Returns ``(hidden_dim, buffer_size, seed)`` parsed from a variant name, or None."""
    m = VARIANT_RE.match(name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def read_variants(reader: ScalarReader) -> list[VariantData]:
    """Returns the scalars of every variant run the reader knows (non-variant runs are skipped)."""
    out = []
    for run in reader.runs():
        parsed = parse_variant(run)
        if parsed is None:
            continue
        series = {}
        tags = reader.tags(run)
        for tag in tags:
            key = _LEGACY_TAGS.get(tag, tag)
            if key in series or (key != tag and key in tags):
                continue  # a current tag wins over its legacy name
            if key in _SCALAR_TAGS or GOAL_REGRET_RE.match(tag):
                steps, values, _ = reader.scalars(run, tag)
                series[key] = (np.asarray(steps, np.int64), np.asarray(values, np.float64))
        out.append(VariantData(run, *parsed, series=series))
    return out


def _values_at(series: tuple[np.ndarray, np.ndarray] | None, steps: np.ndarray) -> np.ndarray:
    if series is None or len(steps) == 0:
        return np.zeros((0,))
    s, v = series
    idx = np.searchsorted(s, steps)
    idx = np.minimum(idx, len(s) - 1)
    hit = s[idx] == steps
    return v[idx[hit]]


def _finite_mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def variant_evidence(v: VariantData, k_last: int, *, end_step: int | None = None) -> VariantEvidence | None:
    """Returns the evidence window of ``v`` (its last ``k_last`` epochs up to ``end_step``), or None.

    None means the variant has no finite ``regret/avg`` in range yet.
    """
    reg = v.series.get(REGRET_TAG)
    if reg is None or len(reg[0]) == 0:
        return None
    steps, values = reg
    ok = np.isfinite(values)
    if end_step is not None:
        ok &= steps <= end_step
    steps, values = steps[ok][-k_last:], values[ok][-k_last:]
    if len(steps) == 0:
        return None
    cell_parts, cell_tags = [], []
    for g in v.goal_ids():
        tag = f"regret/goal_{g}/avg"
        vals = _values_at(v.series.get(tag), steps)
        vals = vals[np.isfinite(vals)]
        if len(vals):
            cell_parts.append(vals)
            cell_tags.append(tag)
    if cell_parts:
        cells = np.concatenate(cell_parts)
    else:
        cells, cell_tags = values.copy(), [REGRET_TAG]
    num_params = v.series.get(NUM_PARAMS_TAG)
    return VariantEvidence(
        name=v.name,
        hidden_dim=v.hidden_dim,
        buffer_size=v.buffer_size,
        seed=v.seed,
        steps=tuple(int(s) for s in steps),
        avg_regret=float(values.mean()),
        cells=cells,
        cell_tags=tuple(cell_tags),
        num_params=float(num_params[1][-1]) if num_params is not None and len(num_params[1]) else None,
        avg_advantage=_finite_mean(_values_at(v.series.get(ADVANTAGE_TAG), steps)),
        val_mse=_finite_mean(_values_at(v.series.get(VAL_MSE_TAG), steps)),
    )


def collect_evidence(
    variants: Sequence[VariantData], k_last: int, *, align_epochs: bool = True
) -> tuple[list[VariantEvidence], list[str]]:
    """Returns ``(evidence, excluded)``: one window per usable variant, and the diverged names."""
    excluded = sorted(v.name for v in variants if v.diverged)
    live = [v for v in variants if not v.diverged and v.latest_step is not None]
    end = min(v.latest_step for v in live) if (align_epochs and live) else None
    out = []
    for v in live:
        # A variant that only started after the common epoch (e.g. grown later) keeps its own window.
        ev = variant_evidence(v, k_last, end_step=end) or variant_evidence(v, k_last)
        if ev is not None:
            out.append(ev)
    return out, excluded


# ----------------------------------------------------------------------------- statistics


def two_level_bootstrap(
    groups: Sequence[Sequence[np.ndarray]], rng: np.random.Generator, num_samples: int
) -> np.ndarray:
    """Returns bootstrap means ``[num_samples, len(groups)]`` resampling seeds, then cells.

    ``groups[j][s]`` is the cell vector of seed ``s`` in group ``j``; all groups share the seed
    and cell draws (a paired bootstrap), so every group must have the same number of seeds and,
    per seed, the same number of cells. Each replicate draws ``S`` seeds with replacement and,
    independently for every drawn seed, its cells with replacement, and averages.
    """
    num_groups, num_seeds = len(groups), len(groups[0])
    seed_idx = rng.integers(0, num_seeds, size=(num_samples, num_seeds))
    means = np.zeros((num_samples, num_seeds, num_groups))
    for s in range(num_seeds):
        mask = seed_idx == s
        n = int(mask.sum())
        if n == 0:
            continue
        size = len(groups[0][s])
        cell_idx = rng.integers(0, size, size=(n, size))
        for j in range(num_groups):
            means[mask, j] = groups[j][s][cell_idx].mean(axis=1)
    return means.mean(axis=1)


def _percentile_ci(point: float, boot: np.ndarray, center: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        return (point, point)
    lo, hi = np.quantile(boot - center, [0.025, 0.975])
    return (float(point + lo), float(point + hi))


def _t_interval(a: Sequence[float], b: Sequence[float], paired: bool) -> tuple[float, float] | None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if paired:
        if len(a) < 2:
            return None
        d = a - b
        half = t_quantile_975(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        return (float(d.mean() - half), float(d.mean() + half))
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(a.mean() - b.mean())
    if se == 0.0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(max(df, 1.0)) * se
    return (diff - half, diff + half)


def _hull(x: tuple[float, float], y: tuple[float, float] | None) -> tuple[float, float]:
    return x if y is None else (min(x[0], y[0]), max(x[1], y[1]))


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
    ci = _percentile_ci(point, boot, center)
    vals = np.asarray([e.avg_regret for e in seeds], np.float64)
    if len(vals) >= 2:
        half = t_quantile_975(len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
        ci = _hull(ci, (point - half, point + half))
    return ci


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
    t_ci = _t_interval([e.avg_regret for e in small], [e.avg_regret for e in large], paired)
    ci = _hull(_percentile_ci(gain, a_boot - b_boot, ca - cb), t_ci)

    rel = rel_ci = None
    if ra > 0 and ca > 0:
        rel = gain / ra
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_boot = np.where(a_boot > 0, (a_boot - b_boot) / a_boot, np.nan)
        rel_t = (t_ci[0] / ra, t_ci[1] / ra) if t_ci is not None else None
        rel_ci = _hull(_percentile_ci(rel, rel_boot, (ca - cb) / ca), rel_t)

    per_param = None
    pa = [e.num_params for e in small if e.num_params is not None]
    pb = [e.num_params for e in large if e.num_params is not None]
    if pa and pb and np.mean(pb) > np.mean(pa):
        per_param = gain / float(np.mean(pb) - np.mean(pa))

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
        gain_per_param=per_param,
        significant=bool(replicated and lower is not None and lower > epsilon),
        seeds=min(len(small), len(large)),
        paired=paired,
    )


# ------------------------------------------------------------------------------ decision


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ladders(evidence: Sequence[VariantEvidence], axis: str) -> dict[int, dict[int, list[VariantEvidence]]]:
    """Returns ``{fixed value: {capacity on axis: [seed evidence]}}`` for one axis."""
    other = "buffer_size" if axis == "hidden_dim" else "hidden_dim"
    out: dict[int, dict[int, list[VariantEvidence]]] = {}
    for e in evidence:
        out.setdefault(getattr(e, other), {}).setdefault(getattr(e, axis), []).append(e)
    return out


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def decide(
    evidence: Sequence[VariantEvidence],
    *,
    epsilon: float,
    relative: bool = False,
    k_last: int = 2,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    excluded: Sequence[str] = (),
) -> Decision:
    """Returns the decision for a set of variant evidence windows (pure: no I/O).

    The bootstrap of every step draws from its own generator, seeded from ``seed`` and the
    step's identity, so a step's interval does not depend on which other steps exist.
    """
    gains: list[Gain] = []
    rec: dict[str, int | None] = {"hidden_dim": None, "buffer_size": None}
    expand_axes: list[str] = []
    tested_max: dict[str, int] = {}
    for ax_id, axis in enumerate(AXES):
        other = AXES[1 - ax_id]
        ladders = _ladders(evidence, axis)
        recs, single = [], []
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
                if axis not in expand_axes:
                    expand_axes.append(axis)
                tested_max[axis] = max(tested_max.get(axis, 0), caps[-1])
        pool = recs or single
        rec[axis] = max(pool) if pool else None

    caps_summary = []
    for (h, b), evs in sorted(_group(evidence).items()):
        caps_summary.append(
            {
                "hidden_dim": h,
                "buffer_size": b,
                "avg_regret": float(np.mean([e.avg_regret for e in evs])),
                "seeds": sorted(e.seed for e in evs),
                "num_params": _mean_or_none([e.num_params for e in evs]),
                "avg_advantage": _mean_or_none([e.avg_advantage for e in evs]),
                "val_mse": _mean_or_none([e.val_mse for e in evs]),
            }
        )

    decision = "expand" if expand_axes else "keep"
    suggested = None
    if expand_axes:
        suggested = {
            axis: (2 * tested_max[axis] if axis in expand_axes else rec[axis]) for axis in AXES
        }
    reason = _reason(decision, rec, suggested, gains, evidence, epsilon, relative, expand_axes)
    if any(g.seeds == 1 for g in gains):
        reason += "; note: a step with one seed measures episode noise only, not seed-to-seed variation"
    steps_used = sorted({s for e in evidence for s in e.steps})
    tags = sorted({t for e in evidence for t in e.cell_tags} | ({REGRET_TAG} if evidence else set()))
    if any(e.num_params is not None for e in evidence):
        tags.append(NUM_PARAMS_TAG)
    return Decision(
        decision=decision,
        recommended=rec,
        suggested_next=suggested,
        epsilon=float(epsilon),
        relative=bool(relative),
        k_last=int(k_last),
        gains=tuple(gains),
        capacities=tuple(caps_summary),
        evidence={
            "tags": tags,
            "steps": steps_used,
            "runs": sorted(e.name for e in evidence),
            "excluded_diverged": sorted(excluded),
        },
        reason=reason,
        generated_at=_now(),
        epoch=steps_used[-1] if steps_used else None,
    )


def _group(evidence: Iterable[VariantEvidence]) -> dict[tuple[int, int], list[VariantEvidence]]:
    out: dict[tuple[int, int], list[VariantEvidence]] = {}
    for e in evidence:
        out.setdefault((e.hidden_dim, e.buffer_size), []).append(e)
    return out


def _mean_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(vals)) if vals else None


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

    last = {}
    for g in gains:
        key = (g.axis, tuple(sorted(g.ladder.items())))
        if key not in last or g.to > last[key].to:
            last[key] = g
    if decision == "expand":
        lead = [g for g in last.values() if g.significant]
        parts = "; ".join(describe(g) for g in lead[:2])
        nxt = ", ".join(f"{a} {suggested[a]}" for a in expand_axes)
        return f"the largest tested step still gains significantly more than epsilon={epsilon:g} ({parts}): try {nxt}"
    parts = "; ".join(describe(g) for g in list(last.values())[:2])
    return (
        f"no tested expansion beyond hidden_dim {rec['hidden_dim']}, buffer_size {rec['buffer_size']} "
        f"gains significantly more than epsilon={epsilon:g} ({parts})"
    )


def _ladder_str(ladder: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in ladder.items())


# ---------------------------------------------------------------------------- controller


def _default_reader(tb_root: Path) -> ScalarReader:
    from augnes_jax.tensorboard_io import TensorBoardReader  # on first use: tensorboard loads slowly

    return TensorBoardReader(str(tb_root))


class MetaJudgmentController:
    """Reads a run's TensorBoard scalars incrementally and decides "expand" or "keep".

    Args:
      run_dir: the run directory (``RUN/``); TensorBoard runs are read from ``RUN/tb/``.
      epsilon: the smallest marginal gain (absolute, or relative if ``relative``) worth paying for.
      k_last: epochs per variant in the evidence window.
      bootstrap_samples: replicates of the two-level bootstrap.
      seed: seed of the bootstrap generators.
      align_epochs: end every window at the latest epoch all live variants reached.
      alerter: where alerts go; by default an :class:`augnes_jax.alerts.Alerter` without webhook.
      reader: a :class:`ScalarReader`; by default ``TensorBoardReader(RUN/tb)``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        epsilon: float,
        k_last: int = 2,
        relative: bool = False,
        bootstrap_samples: int = 2000,
        seed: int = 0,
        align_epochs: bool = True,
        alerter: Any = None,
        reader: ScalarReader | None = None,
    ):
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        if k_last < 1:
            raise ValueError(f"k_last must be >= 1, got {k_last!r}")
        if bootstrap_samples < 1:
            raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples!r}")
        self.run_dir = Path(run_dir)
        self.tb_root = self.run_dir / "tb"
        self.epsilon = float(epsilon)
        self.k_last = int(k_last)
        self.relative = bool(relative)
        self.bootstrap_samples = int(bootstrap_samples)
        self.seed = int(seed)
        self.align_epochs = align_epochs
        self._alerter = alerter
        self._reader = reader
        self.variants: list[VariantData] = []
        self.evidence: list[VariantEvidence] = []
        self.decision: Decision | None = None
        self.history: list[dict[str, Any]] = self._load_history()

    @classmethod
    def from_config(cls, run_dir: str | Path, cfg: Any, **kwargs: Any) -> MetaJudgmentController:
        """Returns a controller configured from a :class:`augnes_jax.config.Config`."""
        from augnes_jax.alerts import Alerter

        if kwargs.get("alerter") is None:
            kwargs["alerter"] = Alerter.from_config(run_dir, cfg.alerts)
        return cls(
            run_dir,
            epsilon=cfg.meta.epsilon,
            k_last=cfg.meta.last_k_epochs,
            relative=cfg.meta.relative,
            bootstrap_samples=cfg.meta.bootstrap_samples,
            seed=cfg.seed,
            **kwargs,
        )

    @property
    def reader(self) -> ScalarReader:
        """Returns the (lazily created) incremental TensorBoard reader."""
        if self._reader is None:
            self._reader = _default_reader(self.tb_root)
        return self._reader

    @property
    def alerter(self) -> Any:
        """Returns the (lazily created) alert sink."""
        if self._alerter is None:
            from augnes_jax.alerts import Alerter

            self._alerter = Alerter(self.run_dir)
        return self._alerter

    def _load_history(self) -> list[dict[str, Any]]:
        path = self.run_dir / "decision.json"
        if not path.exists():
            return []
        try:
            hist = files.read_json(path).get("history", [])
        except (ValueError, OSError, AttributeError) as e:
            log.warning("ignoring the history of %s: %s", path, e)
            return []
        return [h for h in hist if isinstance(h, dict)]

    def update(self) -> Decision:
        """Returns the decision recomputed after reloading new TensorBoard events."""
        self.reader.reload()
        self.variants = read_variants(self.reader)
        self.evidence, excluded = collect_evidence(self.variants, self.k_last, align_epochs=self.align_epochs)
        self.decision = decide(
            self.evidence,
            epsilon=self.epsilon,
            relative=self.relative,
            k_last=self.k_last,
            bootstrap_samples=self.bootstrap_samples,
            seed=self.seed,
            excluded=excluded,
        )
        return self.decision

    def alerts(self) -> list[dict[str, Any]]:
        """Returns the alert payloads the current decision calls for (before de-duplication).

        One per ladder whose latest step (into its largest capacity) gains less than epsilon.
        """
        from augnes_jax.alerts import marginal_gain_alert

        if self.decision is None:
            return []
        latest: dict[tuple, Gain] = {}
        for g in self.decision.gains:
            key = (g.axis, tuple(sorted(g.ladder.items())))
            if key not in latest or g.to > latest[key].to:
                latest[key] = g
        out = []
        for g in latest.values():
            value = g.compared(self.relative)
            if value is not None and value < self.epsilon:
                out.append(marginal_gain_alert(g, epsilon=self.epsilon, relative=self.relative, decision=self.decision.decision))
        return out

    def write(self, run_dir: str | Path | None = None, *, growth: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Returns the alerts raised after writing ``decision.json`` atomically.

        Args:
          run_dir: where ``decision.json`` goes (default: the controller's run directory).
          growth: the sweep's capacity growth history, included verbatim when given.
        """
        decision = self.decision if self.decision is not None else self.update()
        entry = decision.history_entry()
        last = self.history[-1] if self.history else None
        if last is None or [last.get(k) for k in ("epoch", "decision", "recommended", "suggested_next")] != [
            entry[k] for k in ("epoch", "decision", "recommended", "suggested_next")
        ]:
            self.history.append(entry)
        target = Path(run_dir) if run_dir is not None else self.run_dir
        files.write_json_atomic(target / "decision.json", decision.to_json(history=self.history, growth=growth))
        return self.alerter.raise_alerts(self.alerts(), step=decision.epoch)

    def close(self) -> None:
        """Releases the alert sink (flushes its TensorBoard writer)."""
        if self._alerter is not None:
            self._alerter.close()


# ----------------------------------------------------------------------------- explanation


def explanation(decision: Decision):
    """Returns a rich renderable that explains ``decision`` on one screen."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    color = "bold green" if decision.decision == "keep" else "bold yellow"
    head = Text.assemble(
        ("decision: ", "bold"), (decision.decision.upper(), color),
        f"  recommended: hidden_dim {decision.recommended.get('hidden_dim')}, "
        f"buffer_size {decision.recommended.get('buffer_size')}",
    )  # fmt: skip
    if decision.suggested_next:
        head.append(
            f"\nnext to try: hidden_dim {decision.suggested_next['hidden_dim']}, "
            f"buffer_size {decision.suggested_next['buffer_size']}",
            style="yellow",
        )
    mode = "relative" if decision.relative else "absolute"
    table = Table(
        title=f"marginal gains = regret decrease (epsilon {decision.epsilon:g} {mode}, last {decision.k_last} epochs)",
        title_justify="left",
        pad_edge=False,
        box=None,
    )
    for col in ("step", "avg regret", "gain", "95% CI", "rel.", "/param", ">eps"):
        table.add_column(col, justify="left" if col == "step" else "right", no_wrap=True)
    shown = list(decision.gains)
    if len(shown) > 16:  # keep it to one screen: the latest steps matter most
        shown = shown[-16:]
    short = {"hidden_dim": "h", "buffer_size": "b"}
    for g in shown:
        at = " ".join(f"{short[k]}={v}" for k, v in g.ladder.items())
        table.add_row(
            f"{short[g.axis]} {g.from_}->{g.to} @{at}",
            f"{g.avg_regret_from:.3g}->{g.avg_regret_to:.3g}",
            f"{g.gain:+.3g}",
            f"[{g.gain_ci95[0]:.2g}, {g.gain_ci95[1]:.2g}]",
            "n/a" if g.relative_gain is None else f"{100 * g.relative_gain:+.0f}%",
            "n/a" if g.gain_per_param is None else f"{g.gain_per_param:.1e}",
            "[yellow]yes[/yellow]" if g.significant else "no",
        )
    ev = decision.evidence
    foot = Text(
        f"evidence: {len(ev.get('runs', []))} runs, epochs {ev.get('steps', [])}, "
        f"excluded (diverged): {len(ev.get('excluded_diverged', []))}\nreason: {decision.reason}"
    )
    return Group(head, table, foot)


def print_explanation(decision: Decision, console: Any = None) -> None:
    """Prints the one-screen explanation of ``decision`` (to stdout unless a console is given)."""
    from rich.console import Console

    (console or Console()).print(explanation(decision))


# ------------------------------------------------------------------------------------- CLI


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return v


def run_settings(run_dir: Path) -> dict[str, Any]:
    """Returns the meta/alerts settings from ``RUN/config.yaml`` (schema defaults without one)."""
    from augnes_jax.config import AlertsConfig, MetaConfig, load_config

    path = run_dir / "config.yaml"
    if path.exists():
        cfg = load_config(path)
        meta, alerts, seed = cfg.meta, cfg.alerts, cfg.seed
    else:
        meta, alerts, seed = MetaConfig(), AlertsConfig(), 0
    return {"meta": meta, "alerts": alerts, "seed": seed}


def has_tensorboard_runs(tb_root: Path) -> bool:
    """Returns True when ``tb_root`` holds at least one run folder with an event file."""
    if not tb_root.is_dir():
        return False
    return any(p.is_dir() and any(q.name.startswith("events.out.tfevents") for q in p.iterdir()) for p in tb_root.iterdir())


def run_dir_problem(run_dir: Path) -> str | None:
    """Returns why ``run_dir`` cannot be read as a sweep's run directory (one line), or None."""
    if not run_dir.is_dir():
        return f"RUN_DIR {run_dir}: no such directory"
    if not has_tensorboard_runs(run_dir / "tb"):
        return f"{run_dir / 'tb'}: no TensorBoard runs"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.meta RUN_DIR [...]``."""
    parser = ArgumentParser(prog="python -m augnes_jax.meta", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--epsilon", type=_positive_float, default=None, help="default: meta.epsilon of the run's config")
    parser.add_argument("--k", type=_positive_int, default=None, help="epochs per evidence window (meta.last_k_epochs)")
    parser.add_argument("--relative", action="store_true", default=None, help="compare relative gains with epsilon")
    parser.add_argument("--bootstrap-samples", type=_positive_int, default=None)
    parser.add_argument("--watch", action="store_true", help="poll the run and alert as evidence arrives")
    parser.add_argument("--interval", type=_positive_float, default=5.0, help="seconds between polls (--watch)")
    parser.add_argument("--max-polls", type=_positive_int, default=None, help="stop watching after N polls")
    args = parser.parse_args(argv)
    return run_command("augnes_jax.meta", lambda: _run(args))


def _run(args) -> int:
    from augnes_jax.config import ConfigError

    run_dir = Path(args.run_dir)
    if (problem := run_dir_problem(run_dir)) is not None:
        raise UserError(problem)
    try:
        settings = run_settings(run_dir)
    except ConfigError as e:
        raise UserError(f"{run_dir / 'config.yaml'}: {e}") from None
    meta, alerts_cfg = settings["meta"], settings["alerts"]
    from augnes_jax.alerts import Alerter

    alerter = Alerter.from_config(run_dir, alerts_cfg)
    ctrl = MetaJudgmentController(
        run_dir,
        epsilon=meta.epsilon if args.epsilon is None else args.epsilon,
        k_last=meta.last_k_epochs if args.k is None else args.k,
        relative=meta.relative if args.relative is None else True,
        bootstrap_samples=meta.bootstrap_samples if args.bootstrap_samples is None else args.bootstrap_samples,
        seed=settings["seed"],
        alerter=alerter,
    )
    try:
        if not args.watch:
            decision = ctrl.update()
            ctrl.write()
            print_explanation(decision)
            return 0
        return _watch(ctrl, interval=args.interval, max_polls=args.max_polls)
    except KeyboardInterrupt:
        return 0
    finally:
        ctrl.close()
        alerter.wait(timeout=alerts_cfg.timeout_s * (alerts_cfg.retries + 1) + 1.0)


def _watch(ctrl: MetaJudgmentController, *, interval: float, max_polls: int | None) -> int:
    """Returns 0 after polling ``max_polls`` times (forever when None), printing on changes."""
    last_key = None
    last_evidence = None
    polls = 0
    while max_polls is None or polls < max_polls:
        if polls:
            time.sleep(interval)
        polls += 1
        decision = ctrl.update()
        evidence = (tuple(decision.evidence["runs"]), tuple(decision.evidence["steps"]))
        if evidence != last_evidence:
            last_evidence = evidence
            ctrl.write()
        if decision.key() != last_key:
            last_key = decision.key()
            print_explanation(decision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
