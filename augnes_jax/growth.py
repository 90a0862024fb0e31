"""Capacity decisions of a sweep: consulting the controller, and growing widths on the device.

:class:`CapacityController` runs the MetaJudgmentController on what the run has written (its
TensorBoard runs) and writes ``decision.json``; :func:`wants_growth` says whether the variants
grow now (``auto`` capacity mode only); :func:`grow_bucket` doubles a bucket's widths on the
device without changing any variant's function.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax.config import Config
from augnes_jax.variants import Variant

__all__ = ["CapacityController", "agree", "grow_bucket", "wants_growth"]

log = logging.getLogger("augnes_jax.sweep")


class CapacityController:
    """Consults the MetaJudgmentController of one run (process 0 only); never stops the sweep."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.run_dir = run_dir
        self.cfg = cfg
        self.controller = None
        self.last_decision: Any = None

    def consult(self, epoch: int, growth: list[dict[str, Any]]) -> Any:
        """Returns the controller's decision after epoch ``epoch`` (and writes ``decision.json``).

        Returns None, after a warning, when the controller fails.
        """
        from augnes_jax.meta import MetaJudgmentController

        try:
            if self.controller is None:
                self.controller = MetaJudgmentController.from_config(self.run_dir, self.cfg)
            decision = self.controller.update()
            self.controller.write(self.run_dir, growth=growth)
            self.last_decision = decision
        except Exception as e:  # noqa: BLE001 - the controller must never stop the sweep
            log.warning("MetaJudgmentController failed at epoch %d: %s", epoch, e)
            return None
        return decision

    def close(self) -> None:
        """Closes the controller's readers (failures ignored: the run's artifacts are written)."""
        if self.controller is not None:
            try:
                self.controller.close()
            except Exception:  # noqa: BLE001 - nothing left to lose
                pass


def wants_growth(decision: Any, cfg: Config, growth: list[dict[str, Any]], epoch: int) -> bool:
    """Returns whether the variants grow after ``epoch`` (``auto`` capacity mode only).

    They grow when the controller decides ``expand``. With a single width there is nothing to
    compare: once it has ``meta.last_k_epochs`` epochs of evidence, they grow once so the
    controller can measure what the next width buys.
    """
    if decision is None or cfg.variants.capacity_mode != "auto":
        return False
    if decision.decision == "expand":
        return True
    widths_tried = 1 + len({g["epoch"] for g in growth})
    since = max([g["epoch"] + 1 for g in growth], default=0)
    return widths_tried < 2 and epoch + 1 - since >= cfg.meta.last_k_epochs


def agree(flag: bool) -> bool:
    """Returns process 0's ``flag`` on every process (every process must grow the same variants)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
    return flag


def grow_bucket(run, shard) -> tuple[Any, np.ndarray, list[Variant]] | None:
    """Returns a bucket's ``(states, hidden_dims, variants)`` with every width doubled (up to the
    bucket's max), or None when every width is at its max already.

    The grown states compute the same function (the new units start silent); ``shard`` places them.
    """
    new_dims = np.minimum(run.hidden_dims * 2, run.bucket.max_width).astype(np.int32)
    if np.array_equal(new_dims, run.hidden_dims):
        return None
    states = shard(jax.vmap(run.wm.grow)(run.states, jnp.asarray(new_dims)))
    new = [v.with_width(int(h)) for v, h in zip(run.bucket.variants, new_dims[:len(run.bucket.variants)], strict=True)]
    return states, new_dims, new
