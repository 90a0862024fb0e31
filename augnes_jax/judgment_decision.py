"""The controller's decision on anyone's judgments: :func:`decide`, and its command line.

``decide(judgments, epsilon=...)`` takes a judgments log (a :class:`Judgments`, a list of
records, or a path) and returns the :class:`augnes_jax.decision.Decision` the controller would
make, without writing anything: the evidence comes straight from the judgments
(:mod:`augnes_jax.judgment_evidence`), variants are identified by the rows' own
``hidden_dim``, ``buffer_size`` and ``seed`` fields, and :func:`augnes_jax.decision.decide`
decides. The answer equals ``python -m augnes_jax.meta`` on the TensorBoard runs that
``python -m augnes_jax.stats LOG --tb RUN/tb`` writes (and, for a sweep's own log, on the
sweep's runs, but for the evidence only TensorBoard holds: ``world_model/val_mse``, and
``model/num_params`` unless given).

``python -m augnes_jax.judgment_decision LOG --epsilon E [--k K] [--relative] [--out PATH]``
prints the explanation (and writes ``decision.json`` atomically with ``--out``). A log the
controller cannot compare (no capacity fields) is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augnes_jax import decision as decision_lib
from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.decision import Decision
from augnes_jax.files import write_json_atomic
from augnes_jax.judgment_evidence import judgment_evidence
from augnes_jax.judgments_columns import Judgments, as_judgments
from augnes_jax.judgments_reader import read_judgments

__all__ = ["decide", "main"]


def decide(
    judgments: Judgments | Sequence[Mapping[str, Any]] | str | os.PathLike,
    *,
    epsilon: float,
    relative: bool = False,
    k_last: int = 2,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    align_epochs: bool = True,
    num_goals: int | None = None,
    num_params: Mapping[int, float] | None = None,
) -> Decision:
    """Returns the controller's decision on a judgments log ("expand" or "keep"); writes nothing.

    Args:
      judgments: a :class:`Judgments`, a list of judgment records (dicts), or the path of a
        judgments log (read with :func:`augnes_jax.judgments.read_judgments`).
      epsilon: the smallest marginal gain (absolute, or relative if ``relative``) worth paying
        for, as ``meta.epsilon``.
      relative, k_last, bootstrap_samples, seed, align_epochs: as the
        :class:`augnes_jax.meta.MetaJudgmentController`'s (``seed`` seeds the bootstrap).
      num_goals: G (default: the largest goal_id + 1).
      num_params: the model's parameter count per ``hidden_dim``, for the gain per parameter.

    Variants are identified by the rows' ``hidden_dim``, ``buffer_size`` and ``seed``; the
    window of each is its last ``k_last`` epochs of per-goal regret means.

    Raises:
      TypeError: ``judgments`` is none of the above.
      JudgmentError: a bad record or file (named).
      CapacityFieldsError: nothing to compare, e.g. ``"no hidden_dim field: nothing to
        compare"`` (a :class:`augnes_jax.errors.UserError`).
      ValueError: a setting out of range.
    """
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if k_last < 1:
        raise ValueError(f"k_last must be >= 1, got {k_last!r}")
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be >= 1, got {bootstrap_samples!r}")
    if isinstance(judgments, (str, os.PathLike)):
        judgments = read_judgments(judgments)
    judgments = as_judgments(judgments, caller="decide")
    evidence, excluded = judgment_evidence(
        judgments, k_last=k_last, align_epochs=align_epochs, num_goals=num_goals, num_params=num_params
    )
    return decision_lib.decide(
        evidence,
        epsilon=epsilon,
        relative=relative,
        k_last=k_last,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        excluded=excluded,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.judgment_decision`` (0 ok, 2 bad input)."""
    from augnes_jax.cli import non_negative_float, positive_int

    parser = ArgumentParser(
        prog="python -m augnes_jax.judgment_decision",
        description="Decide expand or keep on a judgments log whose rows carry hidden_dim, "
        "buffer_size and seed.",
    )
    parser.add_argument("judgments", help="the judgments log (JSONL)")
    parser.add_argument("--epsilon", type=non_negative_float, required=True,
                        help="smallest marginal gain worth paying for")  # fmt: skip
    parser.add_argument("--k", type=positive_int, default=2, help="epochs per evidence window")
    parser.add_argument("--relative", action="store_true", help="compare relative gains with epsilon")
    parser.add_argument("--bootstrap-samples", type=positive_int, default=2000)
    parser.add_argument("--out", help="also write the decision to this JSON file")
    args = parser.parse_args(argv)
    return run_command("augnes_jax.judgment_decision", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from augnes_jax.meta_report import print_explanation

    decision = decide(
        args.judgments,
        epsilon=args.epsilon,
        relative=args.relative,
        k_last=args.k,
        bootstrap_samples=args.bootstrap_samples,
    )
    if args.out:
        write_json_atomic(Path(args.out), decision.to_json())
    print_explanation(decision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
