"""Where an epoch's artifacts are finished: in the sweep's own thread, or on the executor while
the next epoch computes (shell layer).

An epoch's host side after its judging (write its artifacts, consult the controller, start its
checkpoint) depends on nothing the next epoch computes, and the next epoch's compute depends on
none of it unless capacity can grow. :class:`WritePipeline` then runs each epoch's task on the
:class:`~augnes_jax.executor.Executor`'s worker while the device runs the next epoch, one task at
a time and in epoch order, so the files are written in the same order as in the sweep's thread.
:meth:`WritePipeline.wait` gives back a task's failure in the sweep's thread, as the same
exception.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from augnes_jax.executor import Executor

__all__ = ["WritePipeline"]


class WritePipeline:
    """Runs each epoch's artifact task now, or on ``executor`` overlapping the next epoch.

    Args:
      executor: the executor whose worker runs the tasks; None runs them in the caller's thread.
      overlap: run tasks on the executor (else in the caller's thread, the synchronous path).
    """

    def __init__(self, executor: Executor | None, overlap: bool):
        self.overlap = overlap and executor is not None
        self._executor = executor
        self._pending: Future | None = None

    def run(self, task: Callable[[], None], name: str) -> None:
        """Runs ``task`` in this thread, or submits it after the previous task has finished."""
        if not self.overlap:
            task()
            return
        self.wait()
        self._pending = self._executor.submit(task, name=name)

    def wait(self) -> None:
        """Waits for the pending task; raises its exception if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()
