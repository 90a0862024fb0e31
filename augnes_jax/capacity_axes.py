"""Width or depth: which capacity axis pays more regret gain per unit of cost (pure: no I/O).

In a sweep over depths the controller has two ways to add capacity to the recommended model:
a wider network (``hidden_dim``) or a deeper one (``num_layers``). For each axis this module
takes the measured step from the recommended capacity to the next tested one on that axis, the
other axes held at their recommended values (where the recommended capacity is the axis' largest
tested one, the step into it), and prices it in ``meta.cost``:

- ``params``: the mean ``model/num_params`` over the capacity's seeds;
- ``flops``: those parameters times ``flops_per_param`` (training FLOPs per epoch);
- ``latency_ms``: the mean measured ``cost/latency_ms`` (planner milliseconds per control step).

The gain per unit of extra cost and its interval follow the one rule of
:func:`augnes_jax.scaling.add_gain_per_cost`, applied to the step's measured gain and interval.
The axis with the larger gain per cost pays more; ``line`` says so with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augnes_jax.evidence import VariantEvidence
from augnes_jax.scaling import add_gain_per_cost

__all__ = ["COMPARED", "compare_axes", "capacity_cost"]

COMPARED = {"hidden_dim": "width", "num_layers": "depth"}  # the axes compared, and what they add
_UNIT = {"params": "parameter", "flops": "training FLOP", "latency_ms": "ms of planner latency"}


def capacity_cost(evidence: Sequence[VariantEvidence], capacity: Mapping[str, int | None], *, measure: str,
                  flops_per_param: float | None) -> float | None:  # fmt: skip
    """Returns the mean cost over the seeds of one capacity (``{axis: value}``), or None where unknown."""
    evs = [e for e in evidence if all(getattr(e, a) == v for a, v in capacity.items())]
    if measure == "latency_ms":
        vals = [e.latency_ms for e in evs if e.latency_ms is not None]
        return float(np.mean(vals)) if vals else None
    vals = [e.num_params for e in evs if e.num_params is not None]
    if not vals:
        return None
    scale = 1.0 if measure == "params" else flops_per_param
    return None if scale is None else float(np.mean(vals)) * scale


def _step(gains: Sequence[Any], axis: str, rec: Mapping[str, int | None]) -> Any:
    """Returns the step on ``axis`` out of the recommended capacity (else into it), or None."""
    fixed = {a: v for a, v in rec.items() if a != axis}
    on = [g for g in gains if g.axis == axis and dict(g.ladder) == fixed]
    out = [g for g in on if g.from_ == rec[axis]] or [g for g in on if g.to == rec[axis]]
    return out[0] if out else None


def _axis_entry(evidence, gains, axis: str, rec, *, measure: str, flops_per_param, epsilon_per_cost) -> dict[str, Any]:
    g = _step(gains, axis, rec)
    if g is None:
        return {"from": None, "to": None, "gain": None, "gain_ci95": None, "cost_from": None, "cost_to": None,
                "gain_per_cost": None, "gain_per_cost_ci95": None, "epsilon_per_cost": epsilon_per_cost,
                "worth_it": None, "why": f"no tested {axis} step at the recommended capacity"}  # fmt: skip
    small, large = {**rec, axis: g.from_}, {**rec, axis: g.to}
    c_from = capacity_cost(evidence, small, measure=measure, flops_per_param=flops_per_param)
    c_to = capacity_cost(evidence, large, measure=measure, flops_per_param=flops_per_param)
    out: dict[str, Any] = {"from": g.from_, "to": g.to, "gain": g.gain, "gain_ci95": list(g.gain_ci95),
                           "cost_from": c_from, "cost_to": c_to, "gain_per_cost": None, "gain_per_cost_ci95": None,
                           "epsilon_per_cost": epsilon_per_cost, "worth_it": None}  # fmt: skip
    if c_from is None or c_to is None:
        out["why"] = f"{measure} not known at {axis} {g.from_ if c_from is None else g.to}"
    elif c_to <= c_from:
        out["why"] = f"{axis} {g.from_}->{g.to} does not cost more {measure}"
    else:
        out["why"] = f"measured step {axis} {g.from_}->{g.to}"
    measured = {"predicted_next_gain": g.gain, "predicted_next_gain_ci95": list(g.gain_ci95), "trusted": True}
    return add_gain_per_cost(out, measured, c_from, c_to, epsilon_per_cost)


def compare_axes(evidence: Sequence[VariantEvidence], gains: Sequence[Any], recommended: Mapping[str, int | None], *,
                 measure: str, flops_per_param: float | None = None,
                 epsilon_per_cost: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Returns ``decision.json``'s ``capacity_axes``: each compared axis' step, its gain per cost, and which pays more.

    ``gains`` are the decision's :class:`augnes_jax.decision.Gain` steps; ``recommended`` holds
    every axis' recommended value (``hidden_dim``, ``buffer_size``, ``num_layers``).
    """
    axes = {a: _axis_entry(evidence, gains, a, recommended, measure=measure, flops_per_param=flops_per_param,
                           epsilon_per_cost=epsilon_per_cost) for a in COMPARED}  # fmt: skip
    priced = {a: e["gain_per_cost"] for a, e in axes.items() if e["gain_per_cost"] is not None}
    where = ", ".join(f"{a} {v}" for a, v in recommended.items())
    unit = _UNIT.get(measure, measure)

    def step(a: str) -> str:
        e = axes[a]
        return f"{a} {e['from']}->{e['to']} gains {e['gain_per_cost']:.3g} per {unit}"

    if len(priced) == 2:
        best = max(priced, key=lambda a: priced[a])
        other = next(a for a in COMPARED if a != best)
        line = f"{COMPARED[best]} pays more per {unit} from {where}: {step(best)}, against {step(other)}"
    elif len(priced) == 1:  # nothing to compare it with: neither is said to pay more
        only = next(iter(priced))
        other = next(a for a in COMPARED if a != only)
        best = None
        line = f"only {COMPARED[only]} has a priced step from {where}: {step(only)} ({other}: {axes[other]['why']})"
    else:
        best = None
        line = f"neither width nor depth has a priced step from {where} ({'; '.join(e['why'] for e in axes.values())})"
    return {"measure": measure, "from": dict(recommended), "axes": axes, "pays_more": best, "line": line}
