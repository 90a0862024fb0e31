"""Saving world-model variants and whole-sweep state as orbax checkpoints (host shell).

Layout
  A run keeps its checkpoints in ``runs/<run>/checkpoints/``, an orbax ``CheckpointManager``
  directory with one sub-directory per step. Each step is a ``Composite`` of items:

  ``params``, ``opt_state``, ``normalizer`` (orbax ``StandardSave``)
      dicts keyed by bucket name ``"w{max_width}"``; every leaf has a leading variant axis
      ``[V_bucket, ...]``. ``params`` follow :mod:`augnes_jax.world_model_net`'s layout at the
      bucket's max width; ``normalizer`` leaves are the
      :class:`~augnes_jax.world_model.Normalizer` fields (``obs_mean``, ``obs_std``,
      ``act_mean``, ``act_std``, ``delta_mean``, ``delta_std``; a model with reward heads adds
      ``reward_mean`` and ``reward_std``).
  any other array item (``StandardSave``)
      optional extras needed to resume (buffers, keys, counters ...), named by the caller.
  ``meta`` (orbax ``JsonSave``)
      the JSON object described in :mod:`augnes_jax.checkpoint_meta`; at save time it gets,
      per array item, the checksums of its arrays (:mod:`augnes_jax.checksum`), computed on the
      device.

  Step metrics ``{"val_mse": best val MSE of the step}`` drive retention: the latest
  ``keep_last`` steps and the best step (lowest ``val_mse``) are kept.

Reading lives in :mod:`augnes_jax.checkpoint_read` (restore a step verified against its
checksums, or the newest intact one) and loading a variant for prediction in
:mod:`augnes_jax.inference`; their public names, and the checkpoint errors of
:mod:`augnes_jax.checkpoint_meta`, are re-exported here.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from augnes_jax import checkpoint_meta, checksum, files
from augnes_jax import world_model as wmlib
from augnes_jax.checkpoint_meta import CheckpointError, CheckpointWriteError, UnknownVariantError
from augnes_jax.checkpoint_read import (
    META_ITEM,
    checkpoint_steps,
    error_line,
    quiet_absl,
    resolve_checkpoint_dir,
    restore_checkpoint,
    restore_newest_intact,
)
from augnes_jax.inference import ModelView, Predictor, load_world_model

__all__ = [
    "ARRAY_ITEMS",
    "META_ITEM",
    "CheckpointError",
    "CheckpointWriteError",
    "ModelView",
    "Predictor",
    "SweepCheckpointer",
    "UnknownVariantError",
    "checkpoint_steps",
    "load_world_model",
    "resolve_checkpoint_dir",
    "restore_checkpoint",
    "restore_newest_intact",
    "world_model_arrays",
]

ARRAY_ITEMS = ("params", "opt_state", "normalizer")
_RESERVED = {META_ITEM, "metrics"}


def _check_space(directory: Path, arrays: Mapping[str, Any], step: int) -> None:
    """Raises OSError(ENOSPC) before a save that cannot fit in the file system's free space.

    Orbax's background writers fail one by one on a full disk and leave tracebacks from their
    threads; refusing the save up front keeps the failure to one clear line.
    """
    need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(arrays))
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < need + (1 << 18):  # the arrays, plus room for the metadata files
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (needs {need / 1e6:.1f} MB, "
                      f"{free / 1e6:.1f} MB free)", str(directory / str(step)))


class SweepCheckpointer:
    """Saves and restores whole-sweep checkpoints with orbax (see the module docstring).

    Saves are asynchronous: :meth:`save` returns once the arrays are copied off the device, and
    :meth:`wait` blocks until the files are committed. Use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 2,
        keep_best: bool = True,
        async_save: bool = True,
    ):
        """Opens (creating if needed) the checkpoint directory.

        Args:
          directory: where the steps live (``runs/<run>/checkpoints``).
          keep_last: how many of the latest steps to keep.
          keep_best: also keep the step with the lowest ``val_mse`` metric.
          async_save: write files in a background thread.
        """
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        quiet_absl()
        self.directory = Path(directory).absolute()
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=keep_last)]
        if keep_best:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=checkpoint_meta.rank_val_mse,
                    reverse=True,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            # best_fn makes orbax persist each step's metrics (and answer best_step());
            # which steps survive is decided by the preservation policy alone.
            best_fn=checkpoint_meta.rank_val_mse,
            best_mode="min",
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        try:
            self._mngr = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:
            raise CheckpointError(f"{self.directory}: cannot open ({error_line(e)})") from None

    def save(
        self,
        step: int,
        *,
        arrays: Mapping[str, Any],
        meta: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Returns True once the save of `step` has started (the write may still be running).

        Args:
          step: the epoch number.
          arrays: ``{item: pytree}`` with at least the items of :data:`ARRAY_ITEMS` for a
            loadable world model; names must not be ``meta`` or ``metrics``. Items without
            any array are not written.
          meta: JSON-able dict (see the module docstring).
          metrics: e.g. ``{"val_mse": 0.01}``; non-finite values are stored as null.
        """
        bad = sorted(set(arrays) & _RESERVED)
        if bad:
            raise ValueError(f"array item names {bad} are reserved")
        # orbax refuses empty trees (e.g. the state of a stateless optimizer); nothing is lost.
        items = {
            name: ocp.args.StandardSave(tree)
            for name, tree in arrays.items()
            if jax.tree.leaves(tree)
        }
        sums = {name: checksum.device_checksums(tree) for name, tree in arrays.items() if name in items}
        items[META_ITEM] = ocp.args.JsonSave(files.to_jsonable(checkpoint_meta.with_checksums(meta, sums)))
        clean = files.to_jsonable(dict(metrics)) if metrics is not None else None
        _check_space(self.directory, arrays, step)
        try:
            return bool(self._mngr.save(int(step), args=ocp.args.Composite(**items), metrics=clean))
        except Exception as e:
            raise CheckpointWriteError(
                f"{self.directory / str(step)}: cannot save ({error_line(e)})"
            ) from None

    def wait(self) -> None:
        """Blocks until every started save is committed to disk."""
        try:
            self._mngr.wait_until_finished()
        except Exception as e:
            raise CheckpointWriteError(f"{self.directory}: save failed ({error_line(e)})") from None

    def latest_step(self) -> int | None:
        """Returns the newest committed step, or None."""
        return self._mngr.latest_step()

    def best_step(self) -> int | None:
        """Returns the committed step with the lowest ``val_mse`` metric, or None."""
        return self._mngr.best_step()

    def all_steps(self) -> list[int]:
        """Returns the committed steps, ascending."""
        return sorted(int(s) for s in self._mngr.all_steps())

    def restore(
        self,
        step: int | None = None,
        *,
        items: Sequence[str] | None = None,
        like: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Returns ``(arrays, meta)`` of `step` (latest if None) as numpy arrays and dicts.

        See :func:`restore_checkpoint` for `items` and `like`.
        """
        self.wait()
        _, arrays, meta = restore_checkpoint(self.directory, step, items=items, like=like)
        return arrays, meta

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        try:
            self._mngr.close()
        except Exception as e:
            raise CheckpointWriteError(f"{self.directory}: save failed ({error_line(e)})") from None

    def __enter__(self) -> SweepCheckpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def world_model_arrays(states: Mapping[str, wmlib.WorldModelState]) -> dict[str, dict[str, Any]]:
    """Returns the ``params``/``opt_state``/``normalizer`` items of vmapped states by bucket.

    Args:
      states: ``{"w{max_width}": WorldModelState}`` whose leaves carry a leading variant axis.
    """
    return {
        "params": {b: s.params for b, s in states.items()},
        "opt_state": {b: s.opt_state for b, s in states.items()},
        "normalizer": {b: s.normalizer for b, s in states.items()},
    }
