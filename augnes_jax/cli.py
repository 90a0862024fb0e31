"""The argument parser every ``python -m augnes_jax.*`` command uses.

It is :class:`argparse.ArgumentParser` with one gap closed: argparse reads ``--opt=--`` as an
empty list instead of a value, which a command would then take for "no value" (and fall back to
a default path) or crash on. Here that is a usage error, exit status 2.
"""

from __future__ import annotations

import argparse

__all__ = ["ArgumentParser"]


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
