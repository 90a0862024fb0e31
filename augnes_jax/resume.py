"""Resuming a killed sweep: read its run directory and give back the state to continue from.

:func:`check_config` is the one check that a resumed run's config may replace the run's own
``config.yaml``. :func:`restore` then finds the newest intact checkpoint, drops every record of
the epochs after it (they are redone, so the result equals an uninterrupted run's) and returns
the host state of the epochs before it: diverged variants, growth, collection shares, the
world-model statistics and the regret ledger rebuilt from the kept judgments.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from augnes_jax import files
from augnes_jax.checkpoint_meta import CheckpointError
from augnes_jax.checkpoint_read import checkpoint_steps, restore_newest_intact
from augnes_jax.config import RESULT_NEUTRAL, Config, ConfigError, diff, load_config
from augnes_jax.distribution import sync_processes
from augnes_jax.host_state import HostState, rebuild_ledger
from augnes_jax.judgments import JudgmentError, read_judgments
from augnes_jax.sweep_errors import SweepError
from augnes_jax.world_model_stats import WorldModelStats

__all__ = ["Restored", "check_config", "kept_judgments", "newest_intact_checkpoint", "restore"]

log = logging.getLogger("augnes_jax.sweep")


class Restored(NamedTuple):
    """What a resume gives back.

    Attributes:
      start: the first epoch to run.
      checkpoint: ``(step, arrays, meta)`` of the checkpoint it starts from, None for none.
    """

    start: int
    checkpoint: tuple[int, dict, dict] | None


def check_config(run_dir: Path, cfg: Config, allow_changed: tuple[str, ...]) -> list[str]:
    """Returns the keys in which ``cfg`` differs from the run's own config (result-neutral keys aside).

    Raises:
      SweepError: the run has no usable ``config.yaml``, or a changed key is not in
        ``allow_changed``; the message is one line.
    """
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise SweepError(f"cannot resume: {saved} does not exist")
    try:
        old = load_config(saved)
    except ConfigError as e:
        raise SweepError(f"cannot resume: the run's own config is unusable ({e})") from None
    changed = [k for k in diff(old, cfg) if k not in RESULT_NEUTRAL]
    refused = [k for k in changed if k not in allow_changed]
    if refused:
        raise SweepError(f"cannot resume {run_dir}: config differs from the run's in {', '.join(refused)} "
                         f"(pass --allow-change KEY for each key that may change)")
    return changed


def newest_intact_checkpoint(run_dir: Path, primary: bool) -> tuple[int, dict, dict] | None:
    """Returns ``(step, arrays, meta)`` of the newest intact checkpoint, None if there is none.

    A damaged newer step (unreadable, or arrays that fail their checksums) is reported in one
    warning and moved to ``checkpoints_damaged/`` (kept for inspection, out of the way of the
    step that the resumed run writes again); the run then resumes from the step before it,
    and everything written after that step is truncated as after any crash.

    Raises:
      SweepError: checkpoints exist but none is intact.
    """
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    try:
        if not checkpoint_steps(ckpt_dir):
            return None
        step, arrays, meta, damaged = restore_newest_intact(ckpt_dir)
    except CheckpointError as e:
        raise SweepError(f"cannot resume: {e}") from None
    aside = run_dir / "checkpoints_damaged"
    for bad, reason in damaged:
        target = aside / str(bad)
        if primary:
            aside.mkdir(exist_ok=True)
            n = 1
            while target.exists():
                target, n = aside / f"{bad}.{n}", n + 1
            os.replace(ckpt_dir / str(bad), target)
            log.warning("resuming from checkpoint %d: checkpoint %d is damaged, moved to %s (%s)",
                        step, bad, target, reason)
    sync_processes("augnes_jax.sweep:checkpoints_checked")
    return step, arrays, meta


def kept_judgments(path: Path, start: int):
    """Returns ``(lines, judgments)`` to keep on resume: every judgment of epochs < ``start`` once.

    The file is read with :func:`augnes_jax.judgments.read_judgments`; ``lines`` are the kept
    judgments' own lines (bytes as written), ``judgments`` their columns, both in file order. A
    torn last line and duplicates of an already seen ``(variant, epoch, episode)`` are dropped.
    Returns ``([], None)`` when the file is missing or holds no judgments.

    Raises:
      SweepError: the file cannot be read, or holds a malformed line before its last.
    """
    if not path.exists():
        return [], None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SweepError(f"cannot resume: cannot read {path}: {e.strerror}") from None
    lines = [(number, raw) for number, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torn last line is reported below
            j = read_judgments(path)
    except JudgmentError as e:
        if str(e).endswith(": no judgments"):
            for number, _ in lines:
                log.warning("%s:%d: unreadable line dropped on resume (torn by the crash)", path, number)
            return [], None
        raise SweepError(f"cannot resume: {e}") from None
    n = len(j)
    if len(lines) == n + 1:  # the sweep appends whole lines: only a crash mid-append tears one
        log.warning("%s:%d: unreadable line dropped on resume (torn by the crash)", path, lines[-1][0])
    elif len(lines) != n:
        raise SweepError(f"cannot resume: {path} holds {len(lines)} lines but {n} judgments")
    keep: list[int] = []
    seen: set[tuple] = set()
    duplicates = 0
    for row in range(n):
        key = (j.variant[row], int(j.epoch[row]), int(j.episode[row]))
        if key[1] >= start:
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        keep.append(row)
    if duplicates:
        log.warning("%s: %d duplicate judgments dropped on resume", path, duplicates)
    return [lines[row][1].decode("utf-8").rstrip("\r") for row in keep], j.take(np.asarray(keep, np.int64))


def _sweep_state(run_dir: Path, start: int) -> tuple[dict[str, int], list[dict], dict[str, list]]:
    """Returns ``sweep_state.json``'s diverged variants, growth and collection shares of epochs < ``start``."""
    meta_path = run_dir / "sweep_state.json"
    if not meta_path.exists():
        return {}, [], {}
    try:
        state = files.read_json(meta_path)
        diverged_at = {str(d): int(e) for d, e in state.get("diverged", {}).items() if int(e) < start}
        growth = [g for g in state.get("growth", []) if int(g["epoch"]) < start]
        dropped_names = {g["to"] for g in state.get("growth", []) if int(g["epoch"]) >= start}
        collection = {str(k): list(v)[:start] for k, v in state.get("collection", {}).items()
                      if k not in dropped_names}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SweepError(f"cannot resume: {meta_path} is not a sweep state ({e})") from None
    return diverged_at, growth, collection


def _verdicts(path: Path, start: int) -> dict[int, dict[int, str]]:
    """Returns the per-goal verdicts ``sweep_state.json`` holds of the decisions before ``start``."""
    try:
        saved = files.read_json(path).get("verdicts", {})
        return {int(e): {int(g): str(v) for g, v in vs.items()} for e, vs in saved.items() if int(e) < start}
    except (ValueError, TypeError, AttributeError) as e:
        raise SweepError(f"cannot resume: {path} is not a sweep state (verdicts: {e})") from None


def restore(run_dir: Path, cfg: Config, host: HostState, num_goals: int, primary: bool) -> Restored:
    """Returns where a resumed run starts, after restoring ``host`` and truncating the run's records.

    ``judgments.jsonl`` keeps its lines of epochs before the start once each,
    ``world_model_stats.json`` its entries of those epochs, and ``sweep_state.json`` gives back
    the diverged variants, collection shares and growth of those epochs. The regret ledger is
    rebuilt from the kept judgments (:func:`augnes_jax.host_state.rebuild_ledger`).

    Call :func:`check_config` first: it decides whether the run may be resumed with ``cfg``.

    Raises:
      SweepError: the run cannot be resumed; the message is one line and names the artifact.
    """
    checkpoint = newest_intact_checkpoint(run_dir, primary) if cfg.checkpoint.enabled else None
    start = 0 if checkpoint is None else checkpoint[0] + 1
    if (run_dir / "sweep_state.json").exists():
        host.diverged_at, host.growth, host.collection = _sweep_state(run_dir, start)
        host.diverged = set(host.diverged_at)
        host.verdicts_at = _verdicts(run_dir / "sweep_state.json", start)
        host.verdicts = host.verdicts_at[max(host.verdicts_at)] if host.verdicts_at else {}
    judgments_path = run_dir / "judgments.jsonl"
    lines, kept = kept_judgments(judgments_path, start)
    if primary and judgments_path.exists():
        files.write_text_atomic(judgments_path, "".join(line + "\n" for line in lines))
    if kept is not None:
        host.ledger, host.episodes = rebuild_ledger(kept.variant, kept.epoch, kept.episode, kept.goal_id,
                                                    kept.regret, host.growth, num_goals)
    else:
        host.ledger, host.episodes = rebuild_ledger([], [], [], [], [], host.growth, num_goals)
    wm_path = run_dir / "world_model_stats.json"
    if wm_path.exists():
        try:
            host.wm_stats = WorldModelStats.from_file(wm_path)
        except (ValueError, OSError) as e:
            raise SweepError(f"cannot resume: {e}") from None
        host.wm_stats.truncate(start)
    log.info("resuming %s at epoch %d of %d", run_dir, start, cfg.epochs)
    return Restored(start, checkpoint)

