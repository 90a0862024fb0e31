"""augnes_jax: per-goal regret, explicit world models and capacity sweeps for goal-conditioned agents.

The public API, re-exported explicitly. The pure core (environments, roll-outs, buffer, world
model, planner, regret) is jittable and does no I/O; the shell (config, judgments, stats,
tensorboard_io, checkpoint, executor, sweep, meta, dashboard, infer) runs jitted chunks and writes
between them.
"""

from augnes_jax import buffer, envs, regret
from augnes_jax.alerts import Alerter
from augnes_jax.checkpoint import CheckpointError, SweepCheckpointer, load_world_model
from augnes_jax.config import Config, ConfigError, load_config
from augnes_jax.envs import Environment, make
from augnes_jax.executor import Executor
from augnes_jax.judgments import (
    JudgmentError,
    Judgments,
    JudgmentWriter,
    make_judgments,
    read_judgments,
)
from augnes_jax.planner import PlannerSettings, make_mpc_policy, plan, true_dynamics
from augnes_jax.regret import GoalAggregate
from augnes_jax.rollout import RolloutResult, Transitions, random_policy, rollout
from augnes_jax.tensorboard_io import RunWriter, TensorBoardReader
from augnes_jax.world_model import WorldModel, WorldModelState, make_world_model

__version__ = "0.1.0"

# Modules that are also command-line entry points (python -m augnes_jax.<name>) are imported on
# first use, so that running them as __main__ does not import them twice.
_LAZY = {
    "Sweep": ("augnes_jax.sweep", "Sweep"),
    "build_strategy_stats": ("augnes_jax.stats", "build_strategy_stats"),
    "write_strategy_stats": ("augnes_jax.stats", "write_strategy_stats"),
    "MetaJudgmentController": ("augnes_jax.meta", "MetaJudgmentController"),
    "Decision": ("augnes_jax.meta", "Decision"),
    "render_dashboard": ("augnes_jax.dashboard", "render"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'augnes_jax' has no attribute {name!r}")


__all__ = [
    "Alerter",
    "CheckpointError",
    "Config",
    "ConfigError",
    "Decision",
    "Environment",
    "Executor",
    "GoalAggregate",
    "JudgmentError",
    "JudgmentWriter",
    "Judgments",
    "MetaJudgmentController",
    "PlannerSettings",
    "RolloutResult",
    "RunWriter",
    "Sweep",
    "SweepCheckpointer",
    "TensorBoardReader",
    "Transitions",
    "WorldModel",
    "WorldModelState",
    "buffer",
    "build_strategy_stats",
    "envs",
    "load_config",
    "load_world_model",
    "make",
    "make_judgments",
    "make_mpc_policy",
    "make_world_model",
    "plan",
    "random_policy",
    "read_judgments",
    "regret",
    "render_dashboard",
    "rollout",
    "true_dynamics",
    "write_strategy_stats",
]
