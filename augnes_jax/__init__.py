"""augnes_jax: per-goal regret, explicit world models and capacity sweeps for goal-conditioned agents.

The public API. The pure core (environments, roll-outs, buffer, world model, planner, regret)
is jittable and does no I/O; the shell (config, judgments, statistics, TensorBoard,
checkpoints, executor, sweep, controller, dashboard, inference) runs jitted chunks and writes
between them. See docs/ARCHITECTURE.md.

Every name below is imported on first use, so ``import augnes_jax.world_model`` loads the core
alone (no orbax, TensorBoard, omegaconf, matplotlib or rich), and a module that is also a
command-line entry point (``python -m augnes_jax.<name>``) is not imported twice.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_EXPORTS: dict[str, tuple[str, str | None]] = {
    # core
    "buffer": ("augnes_jax.buffer", None),
    "envs": ("augnes_jax.envs", None),
    "regret": ("augnes_jax.regret", None),
    "Environment": ("augnes_jax.envs", "Environment"),
    "make": ("augnes_jax.envs", "make"),
    "GoalAggregate": ("augnes_jax.regret", "GoalAggregate"),
    "PlannerSettings": ("augnes_jax.planner", "PlannerSettings"),
    "make_mpc_policy": ("augnes_jax.planner", "make_mpc_policy"),
    "plan": ("augnes_jax.planner", "plan"),
    "true_dynamics": ("augnes_jax.planner", "true_dynamics"),
    "RolloutResult": ("augnes_jax.rollout", "RolloutResult"),
    "Transitions": ("augnes_jax.rollout", "Transitions"),
    "random_policy": ("augnes_jax.rollout", "random_policy"),
    "rollout": ("augnes_jax.rollout", "rollout"),
    "WorldModel": ("augnes_jax.world_model", "WorldModel"),
    "WorldModelState": ("augnes_jax.world_model", "WorldModelState"),
    "make_world_model": ("augnes_jax.world_model", "make_world_model"),
    "dense_params": ("augnes_jax.world_model", "dense_params"),
    # shell
    "Alerter": ("augnes_jax.alerts", "Alerter"),
    "CheckpointError": ("augnes_jax.checkpoint_meta", "CheckpointError"),
    "SweepCheckpointer": ("augnes_jax.checkpoint", "SweepCheckpointer"),
    "load_world_model": ("augnes_jax.inference", "load_world_model"),
    "Predictor": ("augnes_jax.inference", "Predictor"),
    "Config": ("augnes_jax.config", "Config"),
    "ConfigError": ("augnes_jax.config", "ConfigError"),
    "load_config": ("augnes_jax.config", "load_config"),
    "Executor": ("augnes_jax.executor", "Executor"),
    "JudgmentError": ("augnes_jax.judgments", "JudgmentError"),
    "Judgments": ("augnes_jax.judgments", "Judgments"),
    "JudgmentWriter": ("augnes_jax.judgments", "JudgmentWriter"),
    "make_judgments": ("augnes_jax.judgments", "make_judgments"),
    "read_judgments": ("augnes_jax.judgments", "read_judgments"),
    "RunWriter": ("augnes_jax.tensorboard_io", "RunWriter"),
    "TensorBoardReader": ("augnes_jax.tensorboard_io", "TensorBoardReader"),
    "Sweep": ("augnes_jax.sweep", "Sweep"),
    "build_strategy_stats": ("augnes_jax.strategy_stats", "build_strategy_stats"),
    "write_strategy_stats": ("augnes_jax.strategy_stats", "write_strategy_stats"),
    "MetaJudgmentController": ("augnes_jax.meta", "MetaJudgmentController"),
    "Decision": ("augnes_jax.decision", "Decision"),
    "Gain": ("augnes_jax.decision", "Gain"),
    "decide": ("augnes_jax.judgment_decision", "decide"),
    "CapacityFieldsError": ("augnes_jax.judgment_evidence", "CapacityFieldsError"),
    "check_env": ("augnes_jax.envs", "check_env"),
    "load_transitions": ("augnes_jax.transitions", "load_transitions"),
    "DataError": ("augnes_jax.transitions", "DataError"),
    "render_dashboard": ("augnes_jax.dashboard", "render"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'augnes_jax' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
