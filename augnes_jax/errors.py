"""The base class of every error that is the user's to fix (shell layer).

A :class:`UserError` names what was wrong (a config key, a file, a line) in one line. Every
``python -m augnes_jax.*`` command runs its body through :func:`augnes_jax.cli.run_command`,
which prints such an error as ``PROG: error: MESSAGE`` and exits with status 2. Anything else
that escapes is a bug and keeps its traceback.

The package's own error types subclass it beside the built-in type they have always been
(``class ConfigError(UserError, ValueError)``), so existing ``except ValueError`` code still
catches them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "UserError"]


class UserError(Exception):
    """An error in the user's input or environment, reported as one line with exit status 2."""


class ConfigError(UserError, ValueError):
    """A bad config value; ``str(err)`` is one line naming the key and the problem."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config error: {key}: {problem}" if key else f"config error: {problem}")
