"""Environment steps per second of the jitted roll-out, against a plain NumPy loop.

For every built-in environment and 1, 64 and 1024 parallel environments it times one jitted
roll-out (``lax.scan`` over time, ``vmap`` over environments, random policy) and, in the same
process, a NumPy loop over the same dynamics (``augnes_jax.envs.numpy_reference``), batched
over environments the same way. Prints one JSON object.

    python benchmarks/bench_rollout.py [--steps 200] [--envs 1,64,1024]
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import best_time, compile_and_run_time, device_info, emit  # noqa: E402

from augnes_jax.envs import make  # noqa: E402
from augnes_jax.envs.numpy_reference import grid_step, reacher_obs, reacher_reward, reacher_step  # noqa: E402
from augnes_jax.rollout import random_policy, rollout_jit  # noqa: E402


def numpy_loop(name: str, n: int, steps: int, rng: np.random.Generator) -> None:
    """Runs ``steps`` batched NumPy steps of ``n`` environments with random actions."""
    if name == "reacher":
        q = rng.uniform(-np.pi, np.pi, (n, 2))
        dq = rng.uniform(-0.5, 0.5, (n, 2))
        goal = np.zeros((n, 2))
        total = np.zeros(n)
        for _ in range(steps):
            a = rng.uniform(-1, 1, (n, 2))
            q, dq = reacher_step(q, dq, a)
            reacher_obs(q, dq)
            total += reacher_reward(q, goal)
    else:
        env = make("gridworld")
        walls = np.asarray(env.default_params().walls)
        pos = np.tile(np.array([[1, 1]]), (n, 1))
        for _ in range(steps):
            pos = grid_step(pos, rng.integers(0, 4, n), walls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--envs", default="1,64,1024")
    args = ap.parse_args()
    sizes = [int(x) for x in args.envs.split(",")]
    results = []
    rng = np.random.default_rng(0)
    for name in ("reacher", "gridworld"):
        env = make(name)
        params = env.default_params(episode_length=args.steps)
        for n in sizes:
            keys = jax.random.split(jax.random.key(0), n)
            goals = jnp.zeros(n, jnp.int32)

            def jax_run(keys=keys, goals=goals, env=env, params=params):
                jax.block_until_ready(rollout_jit(env, params, random_policy(env), None, keys, goals, args.steps).returns)

            compile_s, t_jax = compile_and_run_time(jax_run)
            t_np = best_time(lambda name=name, n=n: numpy_loop(name, n, args.steps, rng), repeats=2)
            steps = n * args.steps
            results.append({
                "env": name, "num_envs": n, "steps_per_call": steps,
                "jax_steps_per_s": steps / t_jax, "numpy_steps_per_s": steps / t_np,
                "speedup_vs_numpy": t_np / t_jax,
                "compile_s": compile_s, "run_s": t_jax,
            })
    emit({"benchmark": "rollout", "device": device_info(), "episode_steps": args.steps,
          "results": results})


if __name__ == "__main__":
    main()
