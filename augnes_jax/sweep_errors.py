"""The error a sweep raises when it cannot start or continue (shell layer)."""

from __future__ import annotations

from augnes_jax.errors import UserError


class SweepError(UserError, RuntimeError):
    """A sweep cannot start or continue; the message is one line for the user."""
