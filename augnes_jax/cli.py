"""What every ``python -m augnes_jax.*`` command shares: its argument parser and its error exit.

:class:`ArgumentParser` is :class:`argparse.ArgumentParser` with one gap closed: argparse reads
``--opt=--`` as an empty list instead of a value, which a command would then take for "no
value" (and fall back to a default path) or crash on. Here that is a usage error, exit status 2.

:func:`run_command` runs a command's body and turns the package's own errors
(:class:`augnes_jax.errors.UserError`) and operating-system failures into one line
``PROG: error: MESSAGE`` on stderr with exit status 2. A genuine bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from augnes_jax.errors import UserError

__all__ = ["ArgumentParser", "non_negative_float", "os_error_line", "positive_int", "run_command"]


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose single-value options always hold one value (or their default)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            single = type(action) is argparse._StoreAction and action.nargs is None
            if single and isinstance(getattr(ns, action.dest, None), list):
                name = "/".join(action.option_strings) or action.dest
                self.error(f"argument {name}: expected one value")
        return ns, extras


def os_error_line(e: OSError) -> str:
    """Returns one line naming the file and the reason an operating-system call failed."""
    text = str(e).strip()
    reason = e.strerror or (text.splitlines()[0] if text else type(e).__name__)
    return f"cannot write {e.filename}: {reason}" if e.filename else reason


def fail(prog: str, message: str) -> int:
    """Prints ``PROG: error: MESSAGE`` (first line only) to stderr; returns exit status 2."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "failed"
    print(f"{prog}: error: {first}", file=sys.stderr)
    return 2


def run_command(prog: str, body: Callable[[], int | None]) -> int:
    """Returns ``body()``'s exit status (``None`` counts as 0), or 2 for a user's error.

    :class:`UserError` and :class:`OSError` become one line on stderr (see :func:`fail`).
    """
    try:
        status = body()
    except UserError as e:
        return fail(prog, str(e))
    except OSError as e:
        return fail(prog, os_error_line(e) if not isinstance(e, UserError) else str(e))
    return 0 if status is None else int(status)


def non_negative_float(text: str) -> float:
    """Returns ``text`` as a finite float >= 0 (an argparse type)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """Returns ``text`` as an int >= 1 (an argparse type)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return v
