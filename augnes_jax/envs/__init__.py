"""Goal-conditioned environments, and how a config names one: ``make(name, **kwargs)``.

See :mod:`augnes_jax.envs.registry` for the names ``env.name`` accepts (registered names,
installed packages' entry points, import paths ``package.module:factory`` and ``gymnax:<id>``),
:mod:`augnes_jax.envs.check` for the contract an environment must keep (``check_env``),
:mod:`augnes_jax.envs.contract` for what the toolkit supplies on top of it (``adapt``) and
:mod:`augnes_jax.envs.gymnax_adapter` for gymnax environments (gymnax is imported only to build
one).
"""

from __future__ import annotations

from augnes_jax.envs.base import Environment, Spec, StepOutput
from augnes_jax.envs.check import Check, check_env, run_checks
from augnes_jax.envs.contract import (
    ContractEnv,
    EnvContractError,
    action_bounds,
    adapt,
    as_step_output,
    provided,
)
from augnes_jax.envs.gridworld import GridWorld, value_iteration
from augnes_jax.envs.gymnax_adapter import GymnaxEnv, maze_values
from augnes_jax.envs.reacher import Reacher
from augnes_jax.envs.registry import (
    ENTRY_POINT_GROUP,
    GYMNAX_PREFIX,
    EnvLookupError,
    declared_num_goals,
    import_path,
    is_gymnax,
    is_import_path,
    is_known,
    known_names,
    make,
    recorded_name,
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
    "GYMNAX_PREFIX",
    "Check",
    "ContractEnv",
    "EnvContractError",
    "EnvLookupError",
    "Environment",
    "GridWorld",
    "GymnaxEnv",
    "Reacher",
    "Spec",
    "StepOutput",
    "action_bounds",
    "adapt",
    "as_step_output",
    "check_env",
    "declared_num_goals",
    "import_path",
    "is_gymnax",
    "is_import_path",
    "is_known",
    "known_names",
    "make",
    "provided",
    "recorded_name",
    "maze_values",
    "register",
    "registered_envs",
    "resolve",
    "run_checks",
    "value_iteration",
]
