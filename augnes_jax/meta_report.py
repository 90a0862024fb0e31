"""The one-screen explanation of a controller decision, rendered with rich."""

from __future__ import annotations

from typing import Any

from augnes_jax.decision import Decision

__all__ = ["explanation", "print_explanation"]


def explanation(decision: Decision):
    """Returns a rich renderable that explains ``decision`` on one screen."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    color = "bold green" if decision.decision == "keep" else "bold yellow"
    head = Text.assemble(
        ("decision: ", "bold"), (decision.decision.upper(), color),
        f"  recommended: {_capacity(decision.recommended)}",
    )  # fmt: skip
    if decision.suggested_next:
        head.append(f"\nnext to try: {_capacity(decision.suggested_next)}", style="yellow")
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
    short = {"hidden_dim": "h", "buffer_size": "b", "num_layers": "d"}
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
    parts = [head, table, foot]
    goals = decision.analysis.get("goals")
    if goals:
        parts.append(goal_table(decision.analysis))
    scaling = decision.analysis.get("scaling")
    if scaling:
        parts.append(Text(scaling_line(scaling, decision.analysis.get("cost"))))
    axes = decision.analysis.get("capacity_axes")
    if axes:
        parts.append(Text(f"width or depth: {axes['line']}"))
    return Group(*parts)


def _capacity(cap: Any) -> str:
    """Returns ``"hidden_dim H, buffer_size B"`` (and ``num_layers D`` in a sweep over depths)."""
    keys = [k for k in ("hidden_dim", "buffer_size", "num_layers") if k in cap]
    return ", ".join(f"{k} {cap.get(k)}" for k in keys)


_VERDICT_STYLE = {"capacity_limited": "yellow", "data_limited": "cyan", "planner_limited": "magenta",
                  "solved": "green", "inconclusive": "dim"}  # fmt: skip


def goal_table(analysis: dict[str, Any]):
    """Returns the per-goal verdict table: verdict, gain with its interval, and the reasoning with its numbers."""
    from rich.table import Table

    mc = analysis.get("multiple_comparisons", {})
    table = Table(
        title=f"per-goal diagnosis ({mc.get('name', 'n/a')} at level {mc.get('level', 'n/a')}, per axis)",
        title_justify="left", pad_edge=False, box=None,
    )  # fmt: skip
    for col in ("goal", "verdict", "gain", "95% CI", "why"):
        table.add_column(col, justify="right" if col in ("goal", "gain", "95% CI") else "left", no_wrap=col != "why")
    for g, d in sorted(analysis["goals"].items(), key=lambda kv: int(kv[0])):
        ci = d.get("gain_ci95")
        table.add_row(
            g,
            f"[{_VERDICT_STYLE.get(d['verdict'], '')}]{d['verdict']}[/]",
            "n/a" if d.get("gain") is None else f"{d['gain']:+.3g}",
            "n/a" if not ci else f"[{ci[0]:.3g}, {ci[1]:.3g}]",
            d.get("why", ""),
        )
    return table


def scaling_line(scaling: dict[str, Any], cost: dict[str, Any] | None) -> str:
    """Returns one line on the scaling fit, its advice and the cost of the next step."""
    if scaling.get("a") is None:
        text = f"scaling: {scaling.get('advice')} ({scaling.get('why')})"
    else:
        lo, hi = scaling["predicted_next_gain_ci95"]
        text = (
            f"scaling: regret(N) = {scaling['a']:.3g} N^-{scaling['b']:.3g} + {scaling['c']:.3g} "
            f"({scaling['N_unit']}); hidden_dim {scaling['from_width']}->{scaling['next_width']} predicted gain "
            f"{scaling['predicted_next_gain']:.3g} [{lo:.3g}, {hi:.3g}]; {scaling['advice']} ({scaling['why']})"
        )
    if cost and cost.get("recommended") is not None:
        nxt = "n/a" if cost.get("next") is None else f"{cost['next']:.3g}"
        text += f"\ncost ({cost['measure']}): recommended {cost['recommended']:.3g}, next {nxt}"
        if cost.get("gain_per_cost") is not None:
            text += f", gain per unit {cost['gain_per_cost']:.3g}"
        if cost.get("next") is None and cost.get("why"):
            text += f" ({cost['why']})"
    return text


def print_explanation(decision: Decision, console: Any = None) -> None:
    """Prints the one-screen explanation of ``decision`` (to stdout unless a console is given)."""
    from rich.console import Console

    (console or Console()).print(explanation(decision))
