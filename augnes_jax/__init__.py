"""augnes_jax: per-goal regret, explicit world models and capacity sweeps for goal-conditioned agents."""

__version__ = "0.1.0"
