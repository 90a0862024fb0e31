"""Goal-conditioned environments and their registry: ``make(name)``."""

from __future__ import annotations

from augnes_jax.envs.base import Environment, Spec, StepOutput
from augnes_jax.envs.gridworld import GridWorld, value_iteration
from augnes_jax.envs.reacher import Reacher

_REGISTRY: dict[str, type[Environment]] = {
    "gridworld": GridWorld,
    "reacher": Reacher,
}


def make(name: str) -> Environment:
    """Returns a new environment object registered under ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered_envs() -> dict[str, int]:
    """Returns ``{name: num_goals}`` for every registered environment."""
    return {name: cls.num_goals for name, cls in _REGISTRY.items()}


__all__ = ["Environment", "GridWorld", "Reacher", "Spec", "StepOutput", "make", "registered_envs", "value_iteration"]
