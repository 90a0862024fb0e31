"""The planner's latency per control step, timed on the device the sweep runs on (shell layer).

:func:`timed_control` runs one bucket's jitted control call, waits until its returns are ready
and converts the wall time into milliseconds per control step of one variant. A call that
compiled (the first of a bucket, or one after its shapes changed) is not timed.
"""

from __future__ import annotations

import time
from typing import Any

import jax

__all__ = ["timed_control"]


def timed_control(control: Any, args: tuple, *, episode_length: int, rows: int) -> tuple[Any, float | None]:
    """Returns ``(returns, ms)`` of ``control(*args)``.

    ``ms`` is the call's wall time in seconds, waited for until its returns are ready, times
    1000, divided by ``episode_length`` (the control steps every evaluation episode takes:
    episodes that end early are frozen, not shortened) and by ``rows``, the variant rows each
    device computes (the bucket's padded variant axis over the device count): the milliseconds
    one control step of one variant takes, its evaluation episodes planned as one batch. None
    where the call compiled (``control``, a ``jax.jit`` function, grew its cache), since that
    time is the compiler's, not the planner's (a function without that cache count is always
    timed).
    """
    cache_size = getattr(control, "_cache_size", lambda: None)
    before = cache_size()
    t0 = time.perf_counter()
    returns = jax.block_until_ready(control(*args))
    seconds = time.perf_counter() - t0
    if cache_size() != before:
        return returns, None
    return returns, 1000.0 * seconds / (episode_length * max(1, rows))
