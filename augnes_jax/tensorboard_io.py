"""TensorBoard: writing with tensorboardX, reading with tensorboard's EventAccumulator (host shell).

Writing: one :class:`RunWriter` per run directory (``tb/<variant>/``, ``tb/_controller/``, ...)
wraps one ``tensorboardX.SummaryWriter``. HParams go into that same directory as tensorboard's own
hparams protos (discrete domains; ``add_hparams`` would create a stray subdirectory per call).
Health counters go through :meth:`RunWriter.changed` (a point only when the value changes), text
through tensorboard's text summary (the tag as given, no ``/text_summary`` suffix) and images as
the exact PNG bytes a figure saves. :func:`write_regret_summaries` writes the per-goal regret
ledger under the ``regret/`` and ``advantage/`` namespaces; :func:`regret_layout` and
:func:`multiline_charts` build custom-scalars layouts of at most :data:`MAX_LINES` tags a chart.

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
    "MAX_LINES",
    "MIN_HISTOGRAM_SAMPLES",
    "RunWriter",
    "multiline_charts",
    "TensorBoardReader",
    "read_scalar_table",
    "regret_layout",
    "write_regret_summaries",
]

_EVENT_PREFIX = "events.out.tfevents."
_HPARAM_TYPES = (bool, int, float, str)
MAX_LINES = 8  # tags per custom-scalars chart: more lines than this cannot be told apart
MIN_HISTOGRAM_SAMPLES = 20  # a histogram of fewer samples shows noise, not a distribution


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
        self._last: dict[str, float] = {}  # the last value :meth:`changed` wrote per tag
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

    def changed(self, step: int, values: Mapping[str, float]) -> int:
        """Returns how many of ``values`` were written at ``step``: those that differ from the last.

        For counters that rarely move (health flags, parameter counts): the first value of each
        tag is written, then a point only where it changes, so a flat line costs no card noise.
        A value written by an earlier process (a resumed run) is written once more.
        """
        fresh = {}
        for tag, value in values.items():
            v = _finite(value)
            if v is not None and self._last.get(tag) != v:
                fresh[tag] = v
        self.scalars(step, fresh)
        self._last.update(fresh)
        return len(fresh)

    def histogram(self, tag: str, values: Any, step: int) -> bool:
        """Returns whether a histogram of the finite ``values`` was written at ``step``."""
        arr = np.asarray(values, np.float64).reshape(-1)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return False
        self._writer.add_histogram(tag, arr, global_step=int(step), bins="auto")
        return True

    def text(self, tag: str, text: str, step: int) -> None:
        """Returns nothing; writes a markdown text summary under exactly ``tag`` at ``step``."""
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add_summary(text_pb(tag, text), step)

    def image_png(self, tag: str, png: bytes, step: int) -> tuple[int, int]:
        """Returns ``(width, height)`` after writing the PNG bytes ``png`` as an image at ``step``.

        The bytes are stored as given (no re-encoding), so TensorBoard shows exactly the file.
        """
        from tensorboardX.proto.summary_pb2 import Summary

        width, height = png_size(png)
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=bytes(png))
        self._writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=image)]), global_step=int(step)
        )
        return width, height

    def figure(self, tag: str, fig: Any, step: int, **savefig: Any) -> tuple[int, int]:
        """Returns ``(width, height)`` after writing a matplotlib ``Figure`` as a PNG image.

        The figure is saved through its own Agg canvas (no pyplot state), as ``fig.savefig`` would
        write it to a file.
        """
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", **savefig)
        return self.image_png(tag, buf.getvalue(), step)

    def _add_summary(self, summary: Any, step: int | None) -> None:
        """Writes a summary proto built by ``tensorboard`` (re-read as tensorboardX's message)."""
        from tensorboardX.proto.summary_pb2 import Summary

        own = Summary.FromString(summary.SerializeToString())
        self._writer._get_file_writer().add_summary(own, global_step=None if step is None else int(step))

    def hparams(
        self,
        hparams: Mapping[str, Any],
        metrics: Mapping[str, float],
        *,
        step: int | None = None,
        domains: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        """Returns nothing; writes the HParams experiment and session-start summaries.

        Values that are not bool/int/float/str are written as strings. ``metrics`` names the
        scalar tags the HParams dashboard shows; their values come from the scalars of the
        same tags in this run. With ``step`` given, ``metrics``' values are also written as
        scalars at that step. ``domains`` gives the discrete values of some hparams (the
        dashboard then filters them with checkboxes and sorts them by value); every run of an
        experiment should pass the same domains. Without it, tensorboardX's summaries are used.
        """
        hp = {
            str(k): (v if isinstance(v, _HPARAM_TYPES) else str(v)) for k, v in hparams.items()
        }
        metric_dict = {str(k): (_finite(v) if _finite(v) is not None else 0.0)
                       for k, v in metrics.items()}  # fmt: skip
        if domains is None:
            exp, ssi, sei = hparams_summary(hp, metric_dict)
            fw = self._writer._get_file_writer()
            fw.add_summary(exp)
            fw.add_summary(ssi)
            fw.add_summary(sei)
        else:
            from tensorboard.plugins.hparams import summary_v2 as hp_v2

            declared = []
            for name, value in hp.items():
                dom = domains.get(name)
                if dom is not None:
                    if value not in dom:
                        raise ValueError(f"hparam {name}={value!r} is not in its domain {list(dom)}")
                    declared.append(hp_v2.HParam(name, hp_v2.Discrete(sorted(dom))))
                else:
                    declared.append(hp_v2.HParam(name))
            self._add_summary(hp_v2.hparams_config_pb(hparams=declared,
                                                      metrics=[hp_v2.Metric(t) for t in metric_dict]), None)
            self._add_summary(hp_v2.hparams_pb(hp, trial_id=self.logdir.name), None)
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


def png_size(png: bytes) -> tuple[int, int]:
    """Returns ``(width, height)`` from a PNG's IHDR chunk.

    Raises:
      ValueError: ``png`` is not a PNG.
    """
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def multiline_charts(title: str, tags: Sequence[str], *, per_chart: int = MAX_LINES) -> dict[str, list]:
    """Returns ``{chart title: ["Multiline", tags]}`` with at most ``per_chart`` tags a chart.

    One chart when the tags fit; otherwise ``"<title> (1 of n)"``, ``"(2 of n)"``... in order.
    """
    tags = list(tags)
    parts = [tags[i:i + per_chart] for i in range(0, len(tags), per_chart)] or [[]]
    if len(parts) == 1:
        return {title: ["Multiline", parts[0]]}
    return {f"{title} ({i} of {len(parts)})": ["Multiline", p] for i, p in enumerate(parts, 1)}


def regret_layout(num_goals: int) -> dict:
    """Returns a custom-scalars layout of one run's per-goal regret and advantage.

    At most :data:`MAX_LINES` goals a chart; averages only (``regret/sum`` grows with the
    episode count and would flatten them; it keeps its own card in the Scalars tab).
    """
    goals = range(int(num_goals))
    return {
        "regret": multiline_charts("avg regret per goal", [f"regret/goal_{g}/avg" for g in goals]),
        "advantage": multiline_charts("avg advantage per goal", [f"advantage/goal_{g}/avg" for g in goals]),
    }


def write_regret_summaries(
    writer: RunWriter,
    step: int,
    agg: regret_lib.GoalAggregate,
    adv_agg: regret_lib.GoalAggregate | None = None,
    per_episode_regret: np.ndarray | None = None,
    goal_ids: np.ndarray | None = None,
    *,
    min_histogram_samples: int = MIN_HISTOGRAM_SAMPLES,
) -> dict[str, float]:
    """Returns the scalars written at ``step`` for one run's per-goal regret aggregates.

    Tags: ``regret/avg``, ``regret/sum``, ``regret/goal_{g}/avg``, ``advantage/avg``,
    ``advantage/goal_{g}/avg``, and, given ``per_episode_regret [N]`` with ``goal_ids [N]``,
    histograms ``regret/goal_{g}`` of the goals with at least ``min_histogram_samples``
    episodes. Goals without episodes get no scalar (never NaN).
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
            if b - a >= min_histogram_samples:
                writer.histogram(f"regret/goal_{g}", reg[order[a:b]], step)
    return values


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_KEEP_ALL = {kind: 0 for kind in ea.DEFAULT_SIZE_GUIDANCE}


class TensorBoardReader:
    """Reads every run (a directory holding event files) under ``root``.

    Runs are named by their path relative to ``root`` (``h64-b10000-s0``, ``_controller``, or
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
