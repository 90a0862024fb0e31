"""TensorBoard: writing with tensorboardX, reading with tensorboard's EventAccumulator (host shell).

Writing: one :class:`RunWriter` per run directory (``tb/<variant>/``, ``tb/capacity/``) wraps one
``tensorboardX.SummaryWriter``. HParams go into that same directory through
``tensorboardX.summary.hparams`` (``add_hparams`` would create a stray subdirectory per call).
:func:`write_regret_summaries` writes the per-goal regret ledger under the ``regret/`` and
``advantage/`` namespaces; :func:`regret_layout` puts every goal's regret on one chart.

Reading: :class:`TensorBoardReader` keeps one EventAccumulator per run directory with
``size_guidance`` 0 for every kind (keep everything; the default reservoir silently drops
points, and ``size_guidance=0`` itself means "the defaults"). Reloads are incremental and
tolerate a writer that is still appending: a record cut short is read on a later reload.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams as hparams_summary

from augnes_jax import regret as regret_lib

__all__ = [
    "RunWriter",
    "TensorBoardReader",
    "read_scalar_table",
    "regret_layout",
    "write_regret_summaries",
]

_EVENT_PREFIX = "events.out.tfevents."
_HPARAM_TYPES = (bool, int, float, str)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class RunWriter:
    """Writes TensorBoard summaries for one run directory; use as a context manager.

    Non-finite scalars are skipped rather than written, so readers never see NaN.
    """

    _opened = itertools.count()

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 30, purge_step: int | None = None):
        """Opens a writer on ``logdir``.

        ``purge_step`` (on resume) tells TensorBoard to discard events this directory holds at
        steps >= it, left there by an interrupted run that is now being redone.
        """
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # A unique suffix: two writers opened on one directory within a second would
        # otherwise share an event file name.
        suffix = f".{os.getpid()}.{next(self._opened)}"
        self._writer = SummaryWriter(
            logdir=str(self.logdir), flush_secs=flush_secs, filename_suffix=suffix, purge_step=purge_step
        )
        events = self._writer._get_file_writer().event_writer
        if hasattr(events, "_ev_writer"):
            # tensorboardX hands events to a background thread whose queue flush() does not
            # drain; writing them synchronously makes flush() mean "on disk now".
            events.add_event = events._ev_writer.write_event

    @property
    def writer(self) -> SummaryWriter:
        """Returns the wrapped tensorboardX SummaryWriter."""
        return self._writer

    def scalars(self, step: int, values: Mapping[str, float]) -> int:
        """Returns how many of ``values`` were written as scalars at ``step`` (finite ones)."""
        written = 0
        for tag, value in values.items():
            v = _finite(value)
            if v is not None:
                self._writer.add_scalar(tag, v, global_step=int(step))
                written += 1
        return written

    def histogram(self, tag: str, values: Any, step: int) -> bool:
        """Returns whether a histogram of the finite ``values`` was written at ``step``."""
        arr = np.asarray(values, np.float64).reshape(-1)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return False
        self._writer.add_histogram(tag, arr, global_step=int(step), bins="auto")
        return True

    def text(self, tag: str, text: str, step: int) -> None:
        """Returns nothing; writes a text summary at ``step``."""
        self._writer.add_text(tag, text, global_step=int(step))

    def hparams(
        self,
        hparams: Mapping[str, Any],
        metrics: Mapping[str, float],
        *,
        step: int | None = None,
    ) -> None:
        """Returns nothing; writes the HParams experiment, session-start and session-end summaries.

        Values that are not bool/int/float/str are written as strings. ``metrics`` names the
        scalar tags the HParams dashboard shows; their values come from the scalars of the
        same tags in this run. With ``step`` given, ``metrics``' values are also written as
        scalars at that step.
        """
        hp = {
            str(k): (v if isinstance(v, _HPARAM_TYPES) else str(v)) for k, v in hparams.items()
        }
        metric_dict = {str(k): (_finite(v) if _finite(v) is not None else 0.0)
                       for k, v in metrics.items()}  # fmt: skip
        exp, ssi, sei = hparams_summary(hp, metric_dict)
        fw = self._writer._get_file_writer()
        fw.add_summary(exp)
        fw.add_summary(ssi)
        fw.add_summary(sei)
        if step is not None:
            self.scalars(step, metrics)

    def custom_scalars(self, layout: Mapping[str, Mapping[str, list]]) -> None:
        """Returns nothing; writes a custom-scalars layout (``add_custom_scalars`` format)."""
        self._writer.add_custom_scalars(dict(layout))

    def flush(self) -> None:
        """Returns nothing; every event written so far is on disk afterwards."""
        self._writer.flush()

    def close(self) -> None:
        """Returns nothing; flushes and closes the writer."""
        self._writer.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def regret_layout(num_goals: int) -> dict:
    """Returns a custom-scalars layout with every goal's avg regret (and advantage) on one chart."""
    goals = range(int(num_goals))
    return {
        "regret": {
            "avg regret per goal": ["Multiline", [f"regret/goal_{g}/avg" for g in goals]],
            "avg and sum regret": ["Multiline", ["regret/avg", "regret/sum"]],
        },
        "advantage": {
            "avg advantage per goal": ["Multiline", [f"advantage/goal_{g}/avg" for g in goals]],
        },
    }


def write_regret_summaries(
    writer: RunWriter,
    step: int,
    agg: regret_lib.GoalAggregate,
    adv_agg: regret_lib.GoalAggregate | None = None,
    per_episode_regret: np.ndarray | None = None,
    goal_ids: np.ndarray | None = None,
) -> dict[str, float]:
    """Returns the scalars written at ``step`` for one run's per-goal regret aggregates.

    Tags: ``regret/avg``, ``regret/sum``, ``regret/goal_{g}/avg``, ``advantage/avg``,
    ``advantage/goal_{g}/avg``, and, given ``per_episode_regret [N]`` with ``goal_ids [N]``,
    histograms ``regret/goal_{g}``. Goals without episodes get no scalar (never NaN).
    """
    count = np.asarray(agg.count)
    mean = np.asarray(agg.mean, np.float64)
    tot = regret_lib.total(agg)
    values: dict[str, float] = {}
    if int(np.asarray(tot.count)[0]) > 0:
        values["regret/avg"] = float(np.asarray(tot.mean)[0])
        values["regret/sum"] = float(np.asarray(tot.sum)[0])
    for g in np.flatnonzero(count > 0).tolist():
        values[f"regret/goal_{g}/avg"] = float(mean[g])
    if adv_agg is not None:
        adv_count = np.asarray(adv_agg.count)
        adv_mean = np.asarray(adv_agg.mean, np.float64)
        adv_tot = regret_lib.total(adv_agg)
        if int(np.asarray(adv_tot.count)[0]) > 0:
            values["advantage/avg"] = float(np.asarray(adv_tot.mean)[0])
        for g in np.flatnonzero(adv_count > 0).tolist():
            values[f"advantage/goal_{g}/avg"] = float(adv_mean[g])
    values = {k: v for k, v in values.items() if math.isfinite(v)}
    writer.scalars(step, values)
    if per_episode_regret is not None:
        if goal_ids is None:
            raise ValueError("write_regret_summaries: per_episode_regret needs goal_ids")
        reg = np.asarray(per_episode_regret, np.float64).reshape(-1)
        gid = np.asarray(goal_ids).reshape(-1)
        if reg.shape != gid.shape:
            raise ValueError(
                f"write_regret_summaries: per_episode_regret {reg.shape} and goal_ids "
                f"{gid.shape} differ"
            )
        order = np.argsort(gid, kind="stable")
        uniq, first = np.unique(gid[order], return_index=True)
        bounds = [*first.tolist(), order.shape[0]]
        for g, a, b in zip(uniq.tolist(), bounds[:-1], bounds[1:], strict=True):
            writer.histogram(f"regret/goal_{g}", reg[order[a:b]], step)
    return values


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_KEEP_ALL = {kind: 0 for kind in ea.DEFAULT_SIZE_GUIDANCE}


class TensorBoardReader:
    """Reads every run (a directory holding event files) under ``root``.

    Runs are named by their path relative to ``root`` (``h64-b10000-s0``, ``capacity``, or
    ``.`` for ``root`` itself). Call :meth:`reload` to pick up new runs and new events.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._acc: dict[str, ea.EventAccumulator] = {}

    def _discover(self) -> list[tuple[str, Path]]:
        found = []
        if not self.root.is_dir():
            return found
        for dirpath, _dirs, files in os.walk(self.root):
            if any(f.startswith(_EVENT_PREFIX) for f in files):
                rel = os.path.relpath(dirpath, self.root)
                found.append((Path(rel).as_posix(), Path(dirpath)))
        return sorted(found)

    def reload(self) -> TensorBoardReader:
        """Returns self after discovering new runs and loading new events of every run."""
        for name, path in self._discover():
            if name not in self._acc:
                self._acc[name] = ea.EventAccumulator(
                    str(path), size_guidance=_KEEP_ALL, purge_orphaned_data=False
                )
        for acc in self._acc.values():
            acc.Reload()
        return self

    def runs(self) -> list[str]:
        """Returns the names of the runs found so far, sorted."""
        return sorted(self._acc)

    def _get(self, run: str) -> ea.EventAccumulator:
        try:
            return self._acc[run]
        except KeyError:
            raise KeyError(f"no TensorBoard run {run!r} under {self.root}") from None

    def tags(self, run: str) -> list[str]:
        """Returns the scalar tags of ``run``, sorted."""
        return sorted(self._get(run).Tags().get(ea.SCALARS, []))

    def scalars(self, run: str, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(steps int64, values float64, wall_times float64)`` sorted by step.

        When a step was written more than once (a resumed run), the latest by wall time wins.
        A tag the run does not have gives three empty arrays.
        """
        acc = self._get(run)
        if tag not in acc.Tags().get(ea.SCALARS, []):
            empty = np.zeros(0)
            return np.zeros(0, np.int64), empty, empty
        events = acc.Scalars(tag)
        steps = np.array([e.step for e in events], np.int64)
        values = np.array([e.value for e in events], np.float64)
        walls = np.array([e.wall_time for e in events], np.float64)
        # Sort by step, then wall time; keep the last row of each step.
        order = np.lexsort((np.arange(steps.shape[0]), walls, steps))
        steps, values, walls = steps[order], values[order], walls[order]
        last = np.ones(steps.shape[0], bool)
        last[:-1] = steps[1:] != steps[:-1]
        return steps[last], values[last], walls[last]

    def texts(self, run: str, tag: str) -> list[tuple[int, str]]:
        """Returns ``[(step, text)]`` of a text summary, sorted by step."""
        acc = self._get(run)
        if tag not in acc.Tags().get(ea.TENSORS, []):
            return []
        out = []
        for e in acc.Tensors(tag):
            vals = e.tensor_proto.string_val
            out.append((int(e.step), vals[0].decode("utf-8") if vals else ""))
        return sorted(out, key=lambda t: t[0])

    def hparams(self, run: str) -> dict[str, Any]:
        """Returns the run's HParams (from the session-start summary), or {} if it has none."""
        from tensorboard.plugins.hparams import plugin_data_pb2

        try:
            content = self._get(run).PluginTagToContent("hparams")
        except KeyError:
            return {}
        for raw in content.values():
            data = plugin_data_pb2.HParamsPluginData.FromString(raw)
            if data.HasField("session_start_info"):
                out: dict[str, Any] = {}
                for name, value in data.session_start_info.hparams.items():
                    kind = value.WhichOneof("kind")
                    out[name] = getattr(value, kind) if kind else None
                return out
        return {}


def read_scalar_table(
    reader: TensorBoardReader, run: str, tags: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns ``{tag: (steps, values)}`` for the given tags of one run (missing tags empty)."""
    out = {}
    for tag in tags:
        steps, values, _ = reader.scalars(run, tag)
        out[tag] = (steps, values)
    return out
