"""``python -m augnes_jax.envs check NAME [--kwargs JSON] [--episode-length N]``.

Builds the environment ``NAME`` (a registered name, ``gymnax:<id>`` or an import path
``package.module:factory``) with the keyword arguments ``--kwargs`` and runs
:func:`augnes_jax.envs.check.run_checks` on it. Exit status 0 with a table of the checks when
none fails; 2 with one line per failure, each naming the method, otherwise.
"""

from __future__ import annotations

import json
import sys

from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.envs.check import FAILED, run_checks
from augnes_jax.envs.registry import EnvLookupError, make
from augnes_jax.errors import UserError

PROG = "python -m augnes_jax.envs"


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description="Checks an environment against the contract.")
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="run the contract checks on an environment")
    check.add_argument("name", help="registered name, gymnax:<id> or package.module:factory")
    check.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for the factory")
    check.add_argument("--episode-length", type=int, default=None,
                       help="time limit at which truncation is checked (default 4)")
    return ap


def _kwargs(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--kwargs: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise UserError(f"--kwargs: expected a JSON object, got {type(value).__name__}")
    return value


def check_command(name: str, kwargs_text: str, episode_length: int | None) -> int:
    """Prints the checks of environment ``name``; returns 0, or 2 when one fails."""
    if episode_length is not None and episode_length < 2:
        raise UserError(f"--episode-length: must be at least 2, got {episode_length}")
    try:
        env = make(name, **_kwargs(kwargs_text))
    except EnvLookupError as e:
        raise UserError(str(e)) from None
    checks = run_checks(env, episode_length=episode_length)
    failures = [c for c in checks if c.status == FAILED]
    if failures:
        for c in failures:
            print(f"{PROG} check: {c.problem}", file=sys.stderr)
        return 2
    action = (f"{env.num_actions} discrete actions" if getattr(env, "discrete", False)
              else f"continuous action_dim {env.action_dim}")
    print(f"{name}: {env.num_goals} goals, obs_dim {env.obs_dim}, {action}")
    width = max(len(c.name) for c in checks)
    for c in checks:
        note = f"  ({c.problem})" if c.problem else ""
        print(f"  {c.name:<{width}}  {c.status}{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: check_command(args.name, args.kwargs, args.episode_length))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
