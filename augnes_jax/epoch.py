"""The jitted work of one sweep epoch, vmapped over a bucket's variant axis. Pure core: no I/O.

For one width bucket :func:`make_bucket_fns` builds four jitted functions whose arguments carry a
leading variant axis ``[V]``:

* ``collect(wm_states, buffers, keys, goal_probs, use_random)``: roll out each variant's
  collection policy (uniformly random, or MPC on the variant's own model with exploration noise)
  on goals drawn from ``goal_probs[V, G]``, and add the valid transitions to its ring buffer.
* ``train(wm_states, buffers, keys)``: one world-model training epoch per variant.
* ``evaluate(wm_states, val)``: one-step, per-dimension, per-goal and k-step model errors.
* ``control(wm_states, keys, goals)``: MPC on each variant's model over the evaluation episodes.

:func:`make_reference_fn` scores the same evaluation episodes (same keys: common random
numbers) with the oracle and the random baseline, and, where the optimum is exact, with the
evaluation planner on the true dynamics (the planner's own gap); it does not depend on the
variant, so it runs once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import buffer as rb
from augnes_jax.envs.base import Environment
from augnes_jax.planner import (
    Model,
    PlannerSettings,
    learned_model,
    make_mpc_policy,
    observation_model,
    simulator_model,
)
from augnes_jax.rollout import flatten, random_policy, rollout
from augnes_jax.world_model import WorldModel, jitted_train_epoch
from augnes_jax.world_model_eval import k_step_errors, one_step_errors


@dataclass(frozen=True)
class EpochSettings:
    """Static sizes of one epoch."""

    episode_length: int
    samples_per_epoch: int
    train_steps: int
    planner: PlannerSettings
    collect_planner: PlannerSettings
    exploration_noise: float
    k_steps: tuple[int, ...]
    # where planning on a model gets the reward and termination (see :func:`reward_sources`)
    learn_reward: bool = False
    env_reward: bool = True
    env_termination: bool = True

    @property
    def collect_envs(self) -> int:
        """Returns the number of parallel collection episodes per variant."""
        return max(1, math.ceil(self.samples_per_epoch / self.episode_length))


class ValidationSet(NamedTuple):
    """Held-out transitions ``[N]`` and open-loop sequences ``[M, K+1]`` for model evaluation.

    ``reward`` and ``terminated`` score a model's reward and termination heads; ``seq_goal_id``
    is each sequence's goal, an input of a model with heads.
    """

    obs: jax.Array
    action: jax.Array  # float action features
    next_obs: jax.Array
    goal_id: jax.Array
    obs_seq: jax.Array  # [M, K + 1, d]
    action_seq: jax.Array  # [M, K, a]
    reward: jax.Array  # [N] float32
    terminated: jax.Array  # [N] bool
    seq_goal_id: jax.Array  # [M] int32


def buffer_item(env: Environment, obs_dim: int) -> dict[str, jax.Array]:
    """Returns an example buffer item (shapes and dtypes of one stored transition).

    ``reward`` and ``terminated`` are always stored: a world model with reward and termination
    heads trains on them, one without ignores them.
    """
    return {
        "obs": jnp.zeros((obs_dim,), jnp.float32),
        "action": jnp.zeros((env.action_feature_dim,), jnp.float32),
        "next_obs": jnp.zeros((obs_dim,), jnp.float32),
        "goal_id": jnp.zeros((), jnp.int32),
        "reward": jnp.zeros((), jnp.float32),
        "terminated": jnp.zeros((), jnp.bool_),
    }


def _items(env: Environment, flat) -> dict[str, jax.Array]:
    return {
        "obs": flat.obs,
        "action": jax.vmap(env.action_features)(flat.action),
        "next_obs": flat.next_obs,
        "goal_id": flat.goal_id,
        "reward": flat.reward,
        "terminated": flat.terminated,
    }


def make_validation_set(
    env: Environment, env_params: Any, key: jax.Array, goal_ids: np.ndarray, size: int,
    episode_length: int, k_max: int,
) -> ValidationSet:
    """Returns a held-out set from random-policy episodes (host-side filtering of invalid steps)."""
    n_eps = max(2, math.ceil(size / episode_length))
    goals = jnp.asarray(np.resize(goal_ids, n_eps), jnp.int32)
    res = jax.jit(rollout, static_argnames=("env", "policy", "num_steps"))(
        env, env_params, random_policy(env), None, jax.random.split(key, n_eps), goals, episode_length)
    tr = jax.device_get(res.transitions)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tr)
    valid = flat.valid
    feats = np.asarray(jax.vmap(env.action_features)(jnp.asarray(flat.action)))
    long_enough = np.asarray(res.lengths) >= k_max
    seq_obs = np.concatenate([tr.obs[:, : k_max], tr.next_obs[:, k_max - 1 : k_max]], axis=1)[long_enough]
    seq_act = np.asarray(jax.vmap(jax.vmap(env.action_features))(jnp.asarray(tr.action[:, :k_max])))[long_enough]
    return ValidationSet(
        obs=jnp.asarray(flat.obs[valid][:size]), action=jnp.asarray(feats[valid][:size]),
        next_obs=jnp.asarray(flat.next_obs[valid][:size]), goal_id=jnp.asarray(flat.goal_id[valid][:size]),
        obs_seq=jnp.asarray(seq_obs), action_seq=jnp.asarray(seq_act),
        reward=jnp.asarray(flat.reward[valid][:size], jnp.float32),
        terminated=jnp.asarray(flat.terminated[valid][:size], jnp.bool_),
        seq_goal_id=jnp.asarray(np.asarray(goals)[long_enough], jnp.int32),
    )


class BucketFns(NamedTuple):
    """The jitted, vmapped functions of one bucket (see the module docstring)."""

    collect: Any
    train: Any
    evaluate: Any
    control: Any


def model_dynamics(env: Environment, wm: WorldModel):
    """Returns ``(wm_state, obs, action) -> next_obs`` predicted by the world model."""

    def dynamics(wm_state, obs, action):
        return wm.predict_next(wm_state, obs, env.action_features(action))

    return dynamics


def reward_sources(mode: str, env: Environment) -> dict[str, bool]:
    """Returns where planning on a model gets the reward and termination, as EpochSettings fields.

    ``mode`` is ``world_model.reward``: ``auto`` learns reward and termination heads only where
    the env does not state them as functions of observations (``known_reward`` /
    ``known_termination``) and plans with the env's own where it does; ``learned`` learns the
    heads and plans with them alone.
    """
    if mode == "learned":
        return {"learn_reward": True, "env_reward": False, "env_termination": False}
    known_r, known_t = bool(env.known_reward), bool(env.known_termination)
    return {"learn_reward": not (known_r and known_t), "env_reward": known_r, "env_termination": known_t}


def planning_model(env: Environment, env_params: Any, wm: WorldModel, s: EpochSettings) -> Model:
    """Returns the model the agents plan with: the world model's Δs with the reward sources of ``s``."""
    if not s.learn_reward:
        return observation_model(env, env_params, model_dynamics(env, wm))

    def predict(wm_state, obs, action, goal_id):
        return wm.predict_step(wm_state, obs, env.action_features(action), goal_id)

    return learned_model(env, env_params, predict, env_reward=s.env_reward, env_termination=s.env_termination)


def make_bucket_fns(
    env: Environment, env_params: Any, wm: WorldModel, goal_ids: np.ndarray, num_goals: int,
    s: EpochSettings,
) -> BucketFns:
    """Returns the jitted epoch functions of one bucket; every argument is vmapped over ``[V]``."""
    model = planning_model(env, env_params, wm, s)
    explore = make_mpc_policy(env, model, s.collect_planner, s.exploration_noise)
    greedy = make_mpc_policy(env, model, s.planner)
    rand = random_policy(env)
    goal_table = jnp.asarray(goal_ids, jnp.int32)
    n_envs = s.collect_envs

    def collect_one(wm_state, buf, key, goal_probs, use_random):
        k_goal, k_ep = jax.random.split(key)
        idx = jax.random.categorical(k_goal, jnp.log(goal_probs)[None], shape=(n_envs,))
        goals = goal_table[idx]
        policy = rand if use_random else explore
        res = rollout(env, env_params, policy, wm_state, jax.random.split(k_ep, n_envs), goals, s.episode_length)
        flat = flatten(res.transitions)
        buf = rb.add(buf, _items(env, flat), flat.valid)
        counts = jax.ops.segment_sum(flat.valid.astype(jnp.int32), flat.goal_id, num_segments=num_goals)
        return buf, counts

    def collect(wm_states, buffers, keys, goal_probs, use_random: bool):
        return jax.vmap(lambda w, b, k, p: collect_one(w, b, k, p, use_random))(wm_states, buffers, keys, goal_probs)

    def evaluate_one(wm_state, val: ValidationSet):
        one = one_step_errors(wm, wm_state, val.obs, val.action, val.next_obs, val.goal_id, num_goals,
                              val.reward, val.terminated)
        ks = k_step_errors(wm, wm_state, val.obs_seq, val.action_seq, s.k_steps, val.seq_goal_id)
        return one, ks

    def control_one(wm_state, keys, goals):
        return rollout(env, env_params, greedy, wm_state, keys, goals, s.episode_length).returns

    return BucketFns(
        collect=jax.jit(collect, static_argnames=("use_random",)),
        train=jitted_train_epoch(wm, s.train_steps, max_traces=2),
        evaluate=jax.jit(jax.vmap(evaluate_one, in_axes=(0, None))),
        control=jax.jit(jax.vmap(control_one, in_axes=(0, None, None))),
    )


class Reference(NamedTuple):
    """The references of the evaluation episodes ``[N]``.

    Attributes:
      optimal: the optimal return of each episode (exact where ``env.exact``).
      baseline: the uniformly random policy's return.
      planner: where ``env.exact``, the return of the evaluation planner run on the environment's
        own ``step`` from the true state (so ``optimal - planner`` is the planner's own gap);
        None where the optimum is itself that planner's return.
    """

    optimal: Any
    baseline: Any
    planner: Any = None


def make_reference_fn(env: Environment, env_params: Any, s: EpochSettings, *, with_planner: bool = False):
    """Returns jitted ``(keys[N], goals[N]) -> (optimal[N], baseline[N])`` for evaluation episodes.

    The optimum is exact where the environment has a solver (``env.exact``) and otherwise the
    return of the MPC planner on the environment's own ``step`` from the true state; the
    baseline is a uniformly random policy. Both use the episodes' own keys, so they start where
    the agents start.

    With ``with_planner`` the function returns a :class:`Reference`: where ``env.exact`` it also
    rolls out the same planner (settings ``s.planner``) on the true dynamics over the same keys
    (common random numbers), so ``optimal - planner`` per episode is the planner's own gap
    (``>= 0`` up to float error: the exact optimum bounds every policy's return from the same
    start). Where the optimum is not exact, ``planner`` is None: the oracle is that planner.
    """
    oracle = make_mpc_policy(env, simulator_model(env), s.planner)
    rand = random_policy(env)
    exact = env.exact

    def on_truth(keys, goals):
        return rollout(env, env_params, oracle, env_params, jax.random.clone(keys), goals, s.episode_length,
                       policy_sees_state=True).returns

    def reference(keys, goals):
        base = rollout(env, env_params, rand, None, jax.random.clone(keys), goals, s.episode_length)
        planner = None
        if exact:
            optimal = jax.vmap(env.exact_optimal_return, in_axes=(0, None))(base.initial_state, env_params)
            if with_planner:
                planner = on_truth(keys, goals)
        else:
            optimal = on_truth(keys, goals)
        if with_planner:
            return Reference(optimal, base.returns, planner)
        return optimal, base.returns

    return jax.jit(reference)


def init_bucket_states(wm: WorldModel, keys: jax.Array, hidden_dims: jax.Array):
    """Returns ``[V]`` stacked world-model states, one per (key, hidden_dim)."""
    return jax.vmap(wm.init)(keys, hidden_dims)


def init_bucket_buffers(item: dict, max_size: int, capacities: jax.Array):
    """Returns ``[V]`` stacked ring buffers allocated at ``max_size`` with per-variant capacities."""
    return jax.vmap(lambda c: rb.init(item, max_size, c))(capacities)


class BucketOutputs(NamedTuple):
    """What one epoch computed for one bucket; every field carries the padded variant axis ``[V]``.

    Attributes:
      counts: transitions collected per goal ``[V, G]``.
      train: the training epoch's metrics (``train_loss``, ``samples_seen``, ``nonfinite_updates``).
      one_step: one-step model errors (``val_mse``, ``per_dim_mse``, ``per_goal_mse``).
      k_step: open-loop model errors by horizon ``k``.
      returns: evaluation returns ``[V, N]``.
      probs: the collection goal probabilities used ``[V, G_selected]``.
    """

    counts: Any
    train: Any
    one_step: Any
    k_step: Any
    returns: Any
    probs: Any


class EpochOutputs(NamedTuple):
    """What one epoch computed: every bucket's outputs and the shared evaluation episodes' references.

    Attributes:
      buckets: one :class:`BucketOutputs` per bucket, in bucket order.
      optimal: the optimal return of each evaluation episode ``[N]``.
      baseline: the random baseline's return of each evaluation episode ``[N]``.
      goals: each evaluation episode's goal ``[N]``.
      planner: where the optimum is exact, the evaluation planner's return on the true dynamics
        ``[N]`` (:class:`Reference`); None otherwise.
      control_ms: per bucket, the measured milliseconds per control step of one variant (see
        ``augnes_jax.sweep.Sweep.run_epoch``), None where the call was not timed (it compiled).
    """

    buckets: list[BucketOutputs]
    optimal: Any
    baseline: Any
    goals: Any
    planner: Any = None
    control_ms: Any = None
