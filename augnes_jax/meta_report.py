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
