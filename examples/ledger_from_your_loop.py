"""The regret ledger and the capacity decision from your own training loop (NumPy only).

Your agent, your environment, your models: augnes_jax only needs each episode's outcome against
its goal. This script is a complete loop of its own, with nothing from augnes_jax inside it:

- a 2-D reacher whose actuator gain depends on where it is (``step``);
- a learned dynamics model: ridge regression of the state change on ``hidden_dim`` random
  Fourier features of ``(state, action)``, fitted to a replay buffer of ``buffer_size``
  transitions (``fit_model``);
- a one-step planner that picks, among sampled actions, the one whose predicted next state is
  closest to the goal (``run_episodes``). Planning with the true dynamics gives each goal's
  optimal return; the first sampled action gives a random baseline.

For every width, seed and epoch it writes one judgment per episode with
:class:`augnes_jax.JudgmentWriter` and :func:`augnes_jax.make_judgments`. Then it aggregates
the log per goal (:func:`augnes_jax.build_strategy_stats`, written as ``strategy_stats.json``)
and asks the controller whether a wider model is worth it
(:func:`augnes_jax.decide`). The
variant names are the loop's own ("rff4/seed0"): the controller identifies variants by their
``hidden_dim``, ``buffer_size`` and ``seed`` fields.

Run: ``python examples/ledger_from_your_loop.py --out DIR`` (a few seconds on a CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import augnes_jax as aj

GOALS = np.array([[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]])
EPISODE_LENGTH = 20
CANDIDATES = 32  # actions the planner compares at every step


def step(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Returns the next states ``[..., 2]``: the actuator's gain varies with the position."""
    gain = 0.15 * (1.0 + 0.6 * np.sin(3.0 * state[..., ::-1]))
    return np.clip(state + gain * np.clip(action, -1.0, 1.0), -1.0, 1.0)


class Model:
    """Ridge regression of ``next - state`` on random Fourier features of ``(state, action)``."""

    def __init__(self, hidden_dim: int, rng: np.random.Generator, scale: float = 2.0):
        self.w = rng.normal(0.0, scale, (4, hidden_dim))
        self.b = rng.uniform(0.0, 2 * np.pi, hidden_dim)
        self.coef = np.zeros((hidden_dim + 1, 2))

    def features(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        x = np.concatenate([state, action], axis=-1)
        phi = np.cos(x @ self.w + self.b) * np.sqrt(2.0 / self.w.shape[1])
        return np.concatenate([phi, np.ones((*phi.shape[:-1], 1))], axis=-1)

    def fit(self, state: np.ndarray, action: np.ndarray, nxt: np.ndarray, ridge: float = 1e-3) -> None:
        phi = self.features(state, action)
        gram = phi.T @ phi + ridge * np.eye(phi.shape[1])
        self.coef = np.linalg.solve(gram, phi.T @ (nxt - state))

    def predict(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        return state + self.features(state, action) @ self.coef


def run_episodes(predict, goals: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Returns ``(planned, optimal, baseline)`` returns ``[E]`` of one episode per goal row.

    All three policies see the same sampled actions at every step (common random numbers):
    ``predict`` plans, the true dynamics plan the optimum, the first sample is the baseline.
    """
    n = goals.shape[0]
    states = {"planned": np.zeros((n, 2)), "optimal": np.zeros((n, 2)), "baseline": np.zeros((n, 2))}
    returns = {k: np.zeros(n) for k in states}
    for _ in range(EPISODE_LENGTH):
        actions = rng.uniform(-1.0, 1.0, (n, CANDIDATES, 2))
        for name, model in (("planned", predict), ("optimal", step)):
            s = states[name]
            guess = model(np.repeat(s[:, None], CANDIDATES, 1), actions)
            best = np.argmin(np.linalg.norm(guess - goals[:, None], axis=-1), axis=1)
            states[name] = step(s, actions[np.arange(n), best])
        states["baseline"] = step(states["baseline"], actions[:, 0])
        for name, s in states.items():
            returns[name] -= np.linalg.norm(s - goals, axis=-1)
    return returns["planned"], returns["optimal"], returns["baseline"]


def train_and_judge(writer, hidden_dim: int, buffer_size: int, seed: int, args) -> None:
    """Trains one model variant epoch by epoch and writes its judgments."""
    rng = np.random.default_rng(seed)
    model = Model(hidden_dim, rng)
    buf_s, buf_a, buf_n = np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2))
    for epoch in range(args.epochs):
        s = rng.uniform(-1.0, 1.0, (args.samples_per_epoch, 2))
        a = rng.uniform(-1.0, 1.0, (args.samples_per_epoch, 2))
        buf_s, buf_a, buf_n = (np.concatenate([x, y])[-buffer_size:]
                               for x, y in ((buf_s, s), (buf_a, a), (buf_n, step(s, a))))  # fmt: skip
        model.fit(buf_s, buf_a, buf_n)
        goal_id = np.repeat(np.arange(len(GOALS)), args.episodes_per_goal)
        # evaluation episodes share their random numbers across variants (seeded by the epoch)
        eval_rng = np.random.default_rng([epoch, 7])
        planned, optimal, baseline = run_episodes(model.predict, GOALS[goal_id], eval_rng)
        writer.append(aj.make_judgments(
            goal_id, planned, optimal, baseline, np.arange(goal_id.shape[0]),
            run="ledger-example", variant=f"rff{hidden_dim}/seed{seed}", hidden_dim=hidden_dim,
            buffer_size=buffer_size, seed=seed, epoch=epoch, strategy="greedy_model_planner",
            oracle="greedy_true_dynamics",
        ))  # fmt: skip


def main(argv=None) -> dict:
    """Returns the summary printed as JSON: the log, the stats and the decision."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ledger_from_your_loop", help="output folder")
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[2, 64])
    parser.add_argument("--buffer-size", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples-per-epoch", type=int, default=500)
    parser.add_argument("--episodes-per-goal", type=int, default=4)
    parser.add_argument("--epsilon", type=float, default=0.5, help="smallest regret decrease worth paying for")
    args = parser.parse_args(argv)
    out = Path(args.out)
    log = out / "judgments.jsonl"
    log.unlink(missing_ok=True)  # a fresh log: the writer appends
    with aj.JudgmentWriter(log) as writer:
        for h in args.hidden_dims:
            for seed in args.seeds:
                train_and_judge(writer, h, args.buffer_size, seed, args)

    judgments = aj.read_judgments(log)
    stats = aj.build_strategy_stats(judgments, source=str(log))
    aj.write_strategy_stats(out / "strategy_stats.json", stats)
    decision = aj.decide(judgments, epsilon=args.epsilon)
    summary = {
        "judgments": str(log),
        "episodes": stats["episodes"],
        "avg_regret": {e["variant"]: e["avg_regret"] for e in stats["experiments"]},
        "decision": decision.decision,
        "recommended": dict(decision.recommended),
        "suggested_next": dict(decision.suggested_next) if decision.suggested_next else None,
        "reason": decision.reason,
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
