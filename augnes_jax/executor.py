"""The executor: an asynchronous task queue and the feedback path that records judgments.

:class:`Executor` runs submitted tasks on worker threads. A task that raises does not stop
the executor: its traceback is kept in ``failures`` (and passed to ``on_error``, else logged)
and later tasks still run. On :meth:`Executor.shutdown` queued tasks either finish or, with
``cancel_pending=True``, are cancelled and listed in ``cancelled``; none is dropped silently.

The feedback path is where an episode's outcome becomes a judgment: :meth:`store_feedback`
computes regret and advantage at the moment the feedback is stored and appends the judgment to
``judgments.jsonl`` through a :class:`~augnes_jax.judgments.JudgmentWriter`;
:meth:`store_feedback_batch` does the same for arrays of episodes.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from augnes_jax.judgments import (
    SCHEMA_VERSION,
    JudgmentWriter,
    canonical_record,
    make_judgments,
    utc_now,
)
from augnes_jax.regret import episode_advantage, episode_regret

__all__ = ["Executor", "TaskFailure"]

log = logging.getLogger("augnes_jax.executor")


@dataclasses.dataclass(frozen=True)
class TaskFailure:
    """A task that raised: its name, the exception, and the formatted traceback."""

    name: str
    traceback: str
    exception: BaseException | None = None


class Executor:
    """Runs tasks asynchronously and stores episode feedback as judgments.

    Args:
      judgments_path: where the feedback path appends judgments; None disables it.
      max_workers: worker threads (1 keeps tasks in submission order).
      on_error: called as ``on_error(failure)`` for each failed task; logged if None.
    """

    def __init__(
        self,
        judgments_path: str | os.PathLike | None = None,
        *,
        max_workers: int = 1,
        on_error: Callable[[TaskFailure], Any] | None = None,
    ):
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="executor")
        self._on_error = on_error
        self._lock = threading.Lock()
        self._pending: dict[Future, str] = {}
        self._ids = itertools.count()
        self._closed = False
        self.failures: list[TaskFailure] = []
        self.cancelled: list[str] = []
        self._writer = JudgmentWriter(judgments_path) if judgments_path is not None else None
        self._write_lock = threading.Lock()

    # -- tasks -----------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any, name: str | None = None, **kw: Any) -> Future:
        """Returns the Future of ``fn(*args, **kw)`` run on a worker thread.

        If ``fn`` raises, the Future holds the exception and the failure is recorded in
        ``failures``; the executor keeps running later tasks.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            task_name = name or f"{getattr(fn, '__name__', 'task')}#{next(self._ids)}"
            future = self._pool.submit(self._run, task_name, fn, args, kw)
            self._pending[future] = task_name
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _run(self, name: str, fn: Callable[..., Any], args: tuple, kw: dict) -> Any:
        try:
            return fn(*args, **kw)
        except BaseException as e:
            failure = TaskFailure(name=name, traceback=traceback.format_exc(), exception=e)
            with self._lock:
                self.failures.append(failure)
            if self._on_error is not None:
                try:
                    self._on_error(failure)
                except Exception:  # a broken handler must not hide the task's failure
                    log.exception("on_error handler failed for task %s", name)
            else:
                log.error("task %s failed:\n%s", name, failure.traceback)
            raise

    def submit_world_model_training(self, train_fn: Callable[..., Any], *args: Any, **kw: Any) -> Future:
        """Returns the Future of the world-model training task ``train_fn(*args, **kw)``."""
        return self.submit(train_fn, *args, name="world_model_training", **kw)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Returns nothing; stops accepting tasks and lets queued ones finish (or cancels them).

        With ``cancel_pending=True`` tasks not yet started are cancelled and their names listed
        in ``cancelled``; with ``wait=True`` the judgments file is closed once all are done.
        """
        with self._lock:
            self._closed = True
            pending = dict(self._pending)
        if cancel_pending:
            for future, name in pending.items():
                if future.cancel():
                    with self._lock:
                        self.cancelled.append(name)
                    log.warning("task %s cancelled at shutdown", name)
        self._pool.shutdown(wait=wait)
        if wait:
            self._close_writer()

    def _close_writer(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=True)

    # -- feedback --------------------------------------------------------------------------

    def _append(self, records: list[dict]) -> None:
        if self._writer is None:
            raise RuntimeError("executor has no judgments_path; feedback cannot be stored")
        with self._write_lock:
            self._writer.append(records)

    def store_feedback(
        self,
        *,
        goal_id: int,
        reward: float,
        optimal_reward: float,
        baseline_reward: float | None,
        episode: int,
        variant: str | None = None,
        strategy: str | None = None,
        epoch: int | None = None,
        oracle: str | None = None,
        **extra: Any,
    ) -> dict:
        """Returns the judgment stored for one episode's feedback (already appended and fsynced).

        ``regret = optimal_reward - reward`` and ``advantage = reward - baseline_reward`` are
        computed here, when the feedback is stored. Extra keyword fields (``run``,
        ``hidden_dim``, ``seed``, ...) are written as they are.
        """
        record: dict[str, Any] = {"schema": SCHEMA_VERSION, "ts": utc_now()}
        for key in ("run", "hidden_dim", "buffer_size", "seed"):
            if extra.get(key) is not None:
                record[key] = extra.pop(key)
        extra = {k: v for k, v in extra.items() if v is not None}
        fields = {
            "variant": variant, "epoch": epoch, "episode": int(episode), "strategy": strategy,
            "goal_id": int(goal_id), "reward": float(reward),
            "optimal_reward": float(optimal_reward),
        }  # fmt: skip
        record.update({k: v for k, v in fields.items() if v is not None})
        if baseline_reward is not None:
            record["baseline_reward"] = float(baseline_reward)
        record["regret"] = episode_regret(record["reward"], record["optimal_reward"])
        if baseline_reward is not None:
            record["advantage"] = episode_advantage(record["reward"], record["baseline_reward"])
        if oracle is not None:
            record["oracle"] = oracle
        record.update(extra)
        record = canonical_record(record)
        self._append([record])
        return record

    def store_feedback_batch(
        self,
        *,
        goal_id: Any,
        reward: Any,
        optimal_reward: Any,
        baseline_reward: Any = None,
        episode: Any = None,
        variant: Any = None,
        strategy: Any = None,
        epoch: Any = None,
        oracle: Any = None,
        run: str | None = None,
        hidden_dim: Any = None,
        buffer_size: Any = None,
        seed: Any = None,
        num_layers: Any = None,
    ) -> list[dict]:
        """Returns the judgments stored for a batch of episodes (arrays ``[N]``), one fsync.

        Regret and advantage are computed per episode in the arrays' precision
        (see :func:`augnes_jax.judgments.make_judgments`); ``num_layers`` (a sweep over depths)
        is written when given.
        """
        n = int(np.asarray(goal_id).shape[0])
        if episode is None:
            episode = np.arange(n)
        records = make_judgments(
            goal_id, reward, optimal_reward, baseline_reward, episode,
            run=run, variant=variant, hidden_dim=hidden_dim, buffer_size=buffer_size,
            seed=seed, epoch=epoch, strategy=strategy, oracle=oracle, num_layers=num_layers,
        )  # fmt: skip
        self._append(records)
        return records

    def submit_feedback_batch(self, **kw: Any) -> Future:
        """Returns the Future of :meth:`store_feedback_batch` run as a task (named ``feedback``)."""
        return self.submit(self.store_feedback_batch, name="feedback", **kw)

