"""Controller evidence: a sweep's TensorBoard scalars as arrays, and each variant's window.

The controller reads only TensorBoard event files (through any :class:`ScalarReader`, by
default :class:`augnes_jax.tensorboard_io.TensorBoardReader`), never JSON artifacts or the
sweep's memory, so it gives the same answer next to a live run and after the fact.

Per variant (``h{H}-b{B}-s{S}``, or ``d{D}-h{H}-b{B}-s{S}`` in a sweep over depths, whose
depth is then ``num_layers``), the window is the last ``k_last`` epochs of ``regret/avg``. By
default the window of every variant ends at the latest epoch that all non-diverged variants
have reached (``align_epochs``), so a live read never compares a variant one epoch ahead with
one that lags.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from augnes_jax.variants import parse_variant_name

__all__ = [
    "ADVANTAGE_TAG",
    "DIVERGED_TAG",
    "GOAL_REGRET_RE",
    "LATENCY_TAG",
    "NUM_PARAMS_TAG",
    "PLANNER_GAP_RE",
    "REFERENCE_RUN",
    "REGRET_TAG",
    "VAL_MSE_TAG",
    "ScalarReader",
    "VariantData",
    "VariantEvidence",
    "collect_evidence",
    "group_by_capacity",
    "mean_or_none",
    "planner_gap_tag",
    "read_planner_gap",
    "read_variants",
    "variant_evidence",
]

GOAL_REGRET_RE = re.compile(r"^regret/goal_(\d+)/avg$")
REGRET_TAG = "regret/avg"
ADVANTAGE_TAG = "advantage/avg"
VAL_MSE_TAG = "world_model/val_mse"
NUM_PARAMS_TAG = "model/num_params"  # written when it changes (at growth)
DIVERGED_TAG = "health/diverged"  # written when it changes
LATENCY_TAG = "cost/latency_ms"  # the bucket's planner milliseconds per control step of one variant
# the run beside the variants that holds what does not depend on the model: the planner's own gap
REFERENCE_RUN = "_reference"
PLANNER_GAP_RE = re.compile(r"^planner_gap/goal_(\d+)$")
# the tags runs written before the health/ namespace carry, read under the current names
_LEGACY_TAGS = {"capacity/num_params": NUM_PARAMS_TAG, "world_model/diverged": DIVERGED_TAG}
_SCALAR_TAGS = (REGRET_TAG, ADVANTAGE_TAG, VAL_MSE_TAG, NUM_PARAMS_TAG, DIVERGED_TAG, LATENCY_TAG)


class ScalarReader(Protocol):
    """The reading interface of :class:`augnes_jax.tensorboard_io.TensorBoardReader`."""

    def reload(self) -> ScalarReader: ...
    def runs(self) -> list[str]: ...
    def tags(self, run: str) -> list[str]: ...
    def scalars(self, run: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class VariantData:
    """Scalars of one variant's TensorBoard run: ``series[tag] = (steps [T], values [T])``.

    ``num_layers`` is the variant's depth where its name states one (a sweep over depths), else None.
    """

    name: str
    hidden_dim: int
    buffer_size: int
    seed: int
    series: Mapping[str, tuple[np.ndarray, np.ndarray]]
    num_layers: int | None = None

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
    ``goal_regret`` maps each goal id to the mean of its window values (empty without goal tags).
    ``latency_ms`` is the mean of ``cost/latency_ms`` over every epoch it was measured (the
    planner's speed does not change with training), None where it never was. ``num_layers`` is
    the variant's depth in a sweep over depths, else None.
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
    goal_regret: Mapping[int, float] = dataclasses.field(default_factory=dict)
    latency_ms: float | None = None
    num_layers: int | None = None


def read_variants(reader: ScalarReader) -> list[VariantData]:
    """Returns the scalars of every variant run the reader knows (non-variant runs are skipped)."""
    out = []
    for run in reader.runs():
        parsed = parse_variant_name(run)
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
        out.append(VariantData(run, parsed.hidden_dim, parsed.buffer_size, parsed.seed, series=series,
                               num_layers=parsed.num_layers))
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
    cell_parts, cell_tags, goal_regret = [], [], {}
    for g in v.goal_ids():
        tag = f"regret/goal_{g}/avg"
        vals = _values_at(v.series.get(tag), steps)
        vals = vals[np.isfinite(vals)]
        if len(vals):
            cell_parts.append(vals)
            cell_tags.append(tag)
            goal_regret[g] = float(vals.mean())
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
        goal_regret=goal_regret,
        latency_ms=_finite_mean(v.series[LATENCY_TAG][1]) if LATENCY_TAG in v.series else None,
        num_layers=v.num_layers,
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


def group_by_capacity(evidence: Iterable[VariantEvidence]) -> dict[tuple[int, int], list[VariantEvidence]]:
    """Returns the evidence windows by capacity ``(hidden_dim, buffer_size)``, seeds in input order."""
    out: dict[tuple[int, int], list[VariantEvidence]] = {}
    for e in evidence:
        out.setdefault((e.hidden_dim, e.buffer_size), []).append(e)
    return out


def mean_or_none(xs: Iterable[float | None]) -> float | None:
    """Returns the mean of the finite values of ``xs``, or None when there are none."""
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(vals)) if vals else None


def planner_gap_tag(goal: int) -> str:
    """Returns the ``_reference`` run's tag of one goal's planner gap."""
    return f"planner_gap/goal_{int(goal)}"


def read_planner_gap(reader: ScalarReader, steps: Iterable[int] | None = None) -> dict[int, float] | None:
    """Returns ``{goal: mean planner gap}`` from the ``_reference`` run, or None where it has none.

    The gap of a goal is the exact optimum minus the evaluation planner's return on the true
    dynamics, averaged over the epochs in ``steps`` (every recorded epoch when None, or when
    none of ``steps`` was recorded).
    """
    if REFERENCE_RUN not in reader.runs():
        return None
    wanted = None if steps is None else np.asarray(sorted(set(steps)), np.int64)
    out = {}
    for tag in reader.tags(REFERENCE_RUN):
        m = PLANNER_GAP_RE.match(tag)
        if m is None:
            continue
        s, v, _ = reader.scalars(REFERENCE_RUN, tag)
        s, v = np.asarray(s, np.int64), np.asarray(v, np.float64)
        sel = v if wanted is None else _values_at((s, v), wanted)
        mean = _finite_mean(sel) if len(sel) else _finite_mean(v)
        if mean is not None:
            out[int(m.group(1))] = mean
    return out or None
