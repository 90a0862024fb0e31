"""Environment steps per second of the jitted roll-out, against a plain NumPy loop.

For every built-in environment and 1, 64 and 1024 parallel environments it times one jitted
roll-out (``lax.scan`` over time, ``vmap`` over environments, random policy) and, in the same
process, a NumPy loop over the same dynamics (``augnes_jax.envs.numpy_reference``), batched
over environments the same way.

The gymnax section times gymnax FourRooms-misc and Pendulum-v1 through the adapter
(``env.name=gymnax:<id>``) against gymnax's own jitted roll-out of the same steps: the same
``lax.scan`` over time and ``vmap`` over environments, the same keys and actions, once calling
the adapter's ``step``, once gymnax's own auto-resetting ``step`` and once its bare ``step_env``
(what the adapter calls). ``adapter_overhead`` is the adapter's time over ``step_env``'s minus
one (the target is at most 0.10); ``adapter_over_gymnax_step`` compares it with gymnax's own
roll-out, which also draws a reset state every step. ``rollout_jit_over_gymnax_step`` times the
toolkit's full roll-out (``rollout_jit``: frozen finished episodes, stored transitions) against
gymnax's own. Prints one JSON object.

    python benchmarks/bench_rollout.py [--steps 200] [--envs 1,64,1024] [--sections builtin,gymnax]
"""

from __future__ import annotations

import argparse
import functools
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


def _head(out):
    return out.obs, out.state, out.reward


def _step_loop(step_fn, state0, keys, actions, params):
    """Returns the summed rewards of ``lax.scan`` over ``keys/actions[T, N]`` of a vmapped ``step_fn``."""

    def body(carry, xs):
        state, total = carry
        k, a = xs
        out = jax.vmap(step_fn, in_axes=(0, 0, 0, None))(k, state, a, params)
        return (out[1], total + out[2]), None

    (_, total), _ = jax.lax.scan(body, (state0, jnp.zeros(actions.shape[1], jnp.float32)), (keys, actions))
    return total


def _gymnax_timings(env, own, n: int, steps: int, rounds: int = 5) -> dict:
    """Times one size: the adapter's step, gymnax's own step and its step_env, the same steps."""
    params = env.default_params(episode_length=steps)
    keys = jax.random.split(jax.random.key(n), n)
    _, state0 = jax.vmap(env.reset, in_axes=(0, None, 0))(keys, params, jnp.zeros(n, jnp.int32))
    step_keys = jax.random.split(jax.random.key(n + 1), (steps, n))
    actions = jax.vmap(jax.vmap(env.sample_action))(jax.random.split(jax.random.key(n + 2), (steps, n)))
    own_actions = jax.vmap(jax.vmap(lambda a: env.env_action(a, params.env)))(actions)
    loops = {
        "adapter": (jax.jit(functools.partial(_step_loop, lambda *x: _head(env.step(*x)))), actions, params),
        "gymnax_step": (jax.jit(functools.partial(_step_loop, lambda *x: own.step(*x)[:3])), own_actions, params.env),
        "gymnax_step_env": (jax.jit(functools.partial(_step_loop, lambda *x: own.step_env(*x)[:3])), own_actions,
                            params.env),
    }
    calls = {name: (lambda loop=loop, acts=acts, p=p: jax.block_until_ready(loop(state0, step_keys, acts, p)))
             for name, (loop, acts, p) in loops.items()}
    compiles = {name: compile_and_run_time(call, repeats=1)[0] for name, call in calls.items()}
    times = {name: float("inf") for name in calls}
    for _ in range(rounds):  # interleaved, so a busy spell on a shared host hits every loop alike
        for name, call in calls.items():
            times[name] = min(times[name], best_time(call, repeats=3, warmup=0))
    _, t_rollout = compile_and_run_time(lambda: jax.block_until_ready(
        rollout_jit(env, params, random_policy(env), None, keys, jnp.zeros(n, jnp.int32), steps).returns))
    total = n * steps
    return {
        "env": env.name, "num_envs": n, "steps_per_call": total,
        "steps_per_s": {name: total / t for name, t in times.items()},
        "adapter_over_gymnax_step": times["adapter"] / times["gymnax_step"],
        "adapter_over_gymnax_step_env": times["adapter"] / times["gymnax_step_env"],
        "adapter_overhead": times["adapter"] / times["gymnax_step_env"] - 1.0,
        "rollout_jit_over_gymnax_step": t_rollout / times["gymnax_step"],
        "compile_s": compiles,
    }


def gymnax_section(sizes: list[int], steps: int) -> list[dict] | dict:
    """Returns the adapter-against-gymnax timings, or why they were not taken."""
    try:
        import gymnax  # noqa: PLC0415 - optional: the section is skipped without it
    except ImportError as e:
        return {"skipped": f"gymnax is not importable ({e})"}
    results = []
    for env_id in ("FourRooms-misc", "Pendulum-v1"):
        env = make(f"gymnax:{env_id}")
        own = gymnax.make(env_id)[0]
        results.extend(_gymnax_timings(env, own, n, steps) for n in sizes)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--envs", default="1,64,1024")
    ap.add_argument("--sections", default="builtin,gymnax")
    args = ap.parse_args()
    sizes = [int(x) for x in args.envs.split(",")]
    sections = set(args.sections.split(","))
    results = []
    rng = np.random.default_rng(0)
    for name in ("reacher", "gridworld") if "builtin" in sections else ():
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
    out = {"benchmark": "rollout", "device": device_info(), "episode_steps": args.steps, "results": results}
    if "gymnax" in sections:
        out["gymnax"] = gymnax_section(sizes, args.steps)
    emit(out)


if __name__ == "__main__":
    main()
