"""Goal-conditioned environments, and how a config names one: ``make(name, **kwargs)``.

See :mod:`augnes_jax.envs.registry` for the names ``env.name`` accepts (registered names,
installed packages' entry points, import paths ``package.module:factory``).
"""

from __future__ import annotations

from augnes_jax.envs.base import Environment, Spec, StepOutput
from augnes_jax.envs.gridworld import GridWorld, value_iteration
from augnes_jax.envs.reacher import Reacher
from augnes_jax.envs.registry import (
    ENTRY_POINT_GROUP,
    EnvLookupError,
    declared_num_goals,
    import_path,
    is_import_path,
    is_known,
    known_names,
    make,
    register,
    resolve,
)


def registered_envs() -> dict[str, int]:
    """Returns ``{name: num_goals}`` for every registered or published environment.

    This builds each environment once with no arguments; a factory that needs arguments is
    left out.
    """
    out: dict[str, int] = {}
    for name in known_names():
        try:
            out[name] = int(make(name).num_goals)
        except (EnvLookupError, AttributeError, TypeError, ValueError):
            continue
    return out


__all__ = [
    "ENTRY_POINT_GROUP",
    "EnvLookupError",
    "Environment",
    "GridWorld",
    "Reacher",
    "Spec",
    "StepOutput",
    "declared_num_goals",
    "import_path",
    "is_import_path",
    "is_known",
    "known_names",
    "make",
    "register",
    "registered_envs",
    "resolve",
    "value_iteration",
]
