"""Predict with a saved world model from the command line (host shell).

Usage::

    python -m augnes_jax.infer RUN_DIR [--variant NAME|best] [--step N] --obs 0.1,0.2,... --action 0.5,...
    python -m augnes_jax.infer RUN_DIR --obs-file X.npy|X.csv --action-file Y.npy|Y.csv [--out PATH]

The single form prints ``{"variant", "hidden_dim", "step", "delta": [d], "next_obs": [d]}``; the
batch form (one sample per row) prints the same with lists of rows, or writes it atomically to
``--out``. A model with reward and termination heads takes the goal as an input: give
``--goal-id G`` (one goal for every sample) or ``--goal-file`` (one integer per row), and the
document adds ``"goal_id"``, ``"reward"`` and ``"terminal_prob"`` (the probability that the step
terminates). A model without heads ignores the goal. Bad input (wrong sizes, non-numbers, missing files, unknown variant, missing or corrupt
checkpoint) prints one line naming the argument or file on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

from augnes_jax.cli import ArgumentParser, os_error_line, run_command
from augnes_jax.errors import UserError


class InputError(UserError, ValueError):
    """Bad command-line input; the message names the argument or file."""


class _Parser(ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m augnes_jax.infer", description="Predict Δobs with a saved world model."
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (or its checkpoints/ directory)"
    )
    p.add_argument("--variant", default="best", help="variant name, or 'best' (lowest val MSE)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--obs", help="one observation: comma-separated numbers")
    p.add_argument("--action", help="one action: comma-separated numbers")
    p.add_argument("--obs-file", help="observations, one per row (.npy or .csv)")
    p.add_argument("--action-file", help="actions, one per row (.npy or .csv)")
    p.add_argument("--goal-id", type=int, default=None,
                   help="goal id of every sample (models with reward heads need a goal)")
    p.add_argument("--goal-file", help="goal ids, one integer per row (.npy or .csv)")
    p.add_argument("--out", help="write the JSON here (atomically) instead of printing it")
    return p


def parse_vector(text: str, arg: str) -> np.ndarray:
    """Returns the float vector written as comma-separated numbers in `text`."""
    parts = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in parts):
        raise InputError(f"{arg}: expected comma-separated numbers, got {text!r}")
    values = []
    for t in parts:
        try:
            values.append(float(t))
        except ValueError:
            raise InputError(f"{arg}: {t!r} is not a number") from None
    return _float32(np.asarray(values, np.float64), f"{arg}: values must be finite float32 numbers, got {text!r}")


def _float32(x: np.ndarray, message: str) -> np.ndarray:
    """Returns ``x`` as float32, or raises InputError(message) where a value is not finite in it."""
    if not np.all(np.isfinite(x)) or np.any(np.abs(x) > np.finfo(np.float32).max):
        raise InputError(message)
    return x.astype(np.float32)


def read_matrix(path: str, arg: str) -> np.ndarray:
    """Returns the ``[rows, cols]`` float matrix stored in a .npy or .csv file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{arg}: {path}: no such file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            data = np.load(file, allow_pickle=False)
        elif suffix == ".csv":
            data = np.loadtxt(file, delimiter=",", dtype=np.float64, ndmin=2)
        else:
            raise InputError(f"{arg}: {path}: expected a .npy or .csv file")
        data = np.asarray(data, dtype=np.float64)
    except InputError:
        raise
    except (ValueError, OSError, TypeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{arg}: {path}: cannot read numbers ({first})") from None
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[0] == 0:
        raise InputError(f"{arg}: {path}: expected a non-empty 2-D array, got shape {data.shape}")
    return _float32(data, f"{arg}: {path}: values must be finite float32 numbers")


def _check_width(x: np.ndarray, width: int, arg: str, what: str) -> None:
    if x.shape[-1] != width:
        raise InputError(f"{arg}: expected {width} values per sample ({what}), got {x.shape[-1]}")


def read_goals(args: argparse.Namespace, rows: int | None) -> np.ndarray | None:
    """Returns the goal ids of `--goal-id` (a scalar) or `--goal-file` (``int[rows]``), or None.

    `rows` is the batch size (None for the single form, which takes only ``--goal-id``).
    """
    if args.goal_id is not None and args.goal_file is not None:
        raise InputError("--goal-id and --goal-file cannot be mixed")
    if args.goal_file is not None:
        if rows is None:
            raise InputError("--goal-file: goes with --obs-file/--action-file; give --goal-id with --obs")
        goals = read_matrix(args.goal_file, "--goal-file")
        if goals.shape[1] != 1 and goals.shape[0] == 1:
            goals = goals.T  # a single line of ids
        if goals.shape != (rows, 1):
            raise InputError(f"--goal-file: {args.goal_file}: expected {rows} rows of one goal id, "
                             f"got shape {goals.shape}")
        if np.any(goals != np.round(goals)):
            raise InputError(f"--goal-file: {args.goal_file}: goal ids must be integers")
        return goals[:, 0].astype(np.int64)
    return None if args.goal_id is None else np.asarray(args.goal_id, np.int64)


def _check_goals(goals: np.ndarray | None, num_goals: int, arg: str) -> np.ndarray:
    if goals is None:
        raise InputError(f"{arg}: required: the model has reward heads conditioned on the goal "
                         f"(give --goal-id or --goal-file)")
    bad = goals[(goals < 0) | (goals >= num_goals)]
    if bad.size:
        raise InputError(f"{arg}: goal id {int(bad.flat[0])} is outside [0, {num_goals})")
    return goals.astype(np.int32)


def run(argv: list[str] | None = None) -> dict:
    """Returns the prediction document for the command-line arguments `argv`.

    Raises:
      InputError: bad arguments or input files.
      CheckpointError: missing, partial or corrupt checkpoint, or unknown variant.
    """
    args = _parser().parse_args(argv)
    single = args.obs is not None or args.action is not None
    batch = args.obs_file is not None or args.action_file is not None
    if single and batch:
        raise InputError("--obs/--action and --obs-file/--action-file cannot be mixed")
    if single:
        if args.obs is None or args.action is None:
            raise InputError("--obs and --action must be given together")
        obs, action = parse_vector(args.obs, "--obs"), parse_vector(args.action, "--action")
    elif batch:
        if args.obs_file is None or args.action_file is None:
            raise InputError("--obs-file and --action-file must be given together")
        obs = read_matrix(args.obs_file, "--obs-file")
        action = read_matrix(args.action_file, "--action-file")
        if obs.shape[0] != action.shape[0]:
            raise InputError(
                f"--action-file: {args.action_file}: {action.shape[0]} rows, but --obs-file has {obs.shape[0]}"
            )
    else:
        raise InputError("give --obs and --action, or --obs-file and --action-file")
    goals = read_goals(args, obs.shape[0] if batch else None)

    from augnes_jax.compile_cache import configure
    from augnes_jax.inference import load_world_model  # keep `--help` and input errors fast

    configure("auto")  # the environment's JAX_COMPILATION_CACHE_DIR, else the user cache directory

    predictor = load_world_model(args.run_dir, variant=args.variant, step=args.step)
    _check_width(obs, predictor.obs_dim, "--obs-file" if batch else "--obs", "obs_dim")
    _check_width(action, predictor.act_dim, "--action-file" if batch else "--action", "act_dim")
    base = {"variant": predictor.variant, "hidden_dim": predictor.hidden_dim, "step": predictor.step}
    if not predictor.learn_reward:
        delta = np.asarray(predictor.predict_delta(obs, action), np.float64)
        return {**base, "delta": delta.tolist(), "next_obs": (obs.astype(np.float64) + delta).tolist()}
    goals = _check_goals(goals, predictor.num_goals, "--goal-file" if args.goal_file else "--goal-id")
    if batch:
        goals = np.broadcast_to(goals, obs.shape[:1])
    delta = np.asarray(predictor.predict_delta(obs, action, goals), np.float64)
    _, reward, terminal = predictor.predict_step(obs, action, goals)
    return {
        **base,
        "delta": delta.tolist(),
        "next_obs": (obs.astype(np.float64) + delta).tolist(),
        "goal_id": goals.tolist(),
        "reward": np.asarray(reward, np.float64).tolist(),
        "terminal_prob": np.asarray(terminal, np.float64).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0, or 2 on bad input)."""
    from augnes_jax import files

    def body() -> int:
        doc = run(argv)
        out_path = _parser().parse_args(argv).out
        if out_path:
            try:
                files.write_json_atomic(out_path, doc)
            except files.ArtifactWriteError as e:
                raise InputError(f"--out: {os_error_line(e)}") from None
        else:
            sys.stdout.write(json.dumps(files.to_jsonable(doc)) + "\n")
        return 0

    return run_command("augnes_jax.infer", body)


if __name__ == "__main__":
    sys.exit(main())
