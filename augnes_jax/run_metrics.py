"""A run directory as Prometheus metric families: the collector behind ``python -m augnes_jax.serve``.

:class:`RunCollector` is a :class:`prometheus_client.registry.Collector`: every scrape calls
:meth:`RunCollector.collect`, which reads the run directory as it is at that moment, while a
sweep writes it or after it has finished.

- ``strategy_stats.json``, ``world_model_stats.json``, ``decision.json``, ``sweep_state.json``
  and ``alerts.jsonl`` are parsed again only when their inode, size or modification time
  changed (the sweep replaces the JSON files atomically, so a read never sees half a file).
- ``judgments.jsonl`` is followed by :class:`augnes_jax.judgments_tail.JudgmentTail`: a scrape
  parses only the lines appended since the previous one and adds them to the per-goal regret
  histogram (``augnes_judgment_regret``).
- A missing run directory or file gives no metrics for it and one log line when that state
  begins (and one when it ends); an unreadable file is logged the same way and never stops the
  exporter.

Every metric carries the label ``run`` (the run directory's name). Per-variant metrics add
``variant``, ``hidden_dim``, ``buffer_size`` and ``seed``; per-goal metrics also ``goal``. A
field the files leave out (an external log without capacity fields) is the empty label value.
README.md ("Watching a run in Grafana") lists the metric families.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from augnes_jax import files
from augnes_jax.alerts import ALERTS_FILE, read_alerts
from augnes_jax.judgments_tail import JudgmentTail, NewJudgments

__all__ = ["DEFAULT_BUCKETS", "PREFIX", "RegretHistogram", "RunCollector", "check_buckets"]

log = logging.getLogger(__name__)

PREFIX = "augnes_"
# Upper bounds of the regret histogram's buckets (regret = optimal - reward; +Inf is implied).
# A regret at or below 0 (the agent matched or beat its oracle) lands in the first bucket.
DEFAULT_BUCKETS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)

VARIANT_LABELS = ("run", "variant", "hidden_dim", "buffer_size", "seed")
GOAL_LABELS = (*VARIANT_LABELS, "goal")
CAPACITY_LABELS = ("run", "hidden_dim", "buffer_size")
GAIN_LABELS = ("run", "axis", "ladder", "from", "to", "last")

# Gauges that show one field of a JSON object as it is: (metric name, help text, field).
_VARIANT_GAUGES = (
    ("variant_avg_advantage", "Mean advantage (reward - baseline) over the variant's episodes.", "avg_advantage"),
    ("variant_normalized_score", "The variant's normalized score (1 = oracle, 0 = baseline).", "normalized_score"),
    ("variant_episodes", "Judged episodes of the variant (strategy_stats.json).", "episodes"),
)
_GOAL_GAUGES = (
    ("goal_avg_regret", "Mean regret of the variant on one goal (strategy_stats.json).", "avg_regret"),
    ("goal_avg_advantage", "Mean advantage of the variant on one goal (strategy_stats.json).", "avg_advantage"),
    ("goal_episodes", "Judged episodes of the variant on one goal.", "count"),
)
_MODEL_GAUGES = (
    ("variant_model_epoch", "The latest epoch in the variant's world-model statistics.", "epoch"),
    ("variant_val_mse", "One-step validation MSE of the variant's world model, latest epoch.", "val_mse"),
    ("variant_train_loss", "Training loss of the variant's world model, latest epoch.", "train_loss"),
)
_DECISION_GAUGES = (
    ("decision_epoch", "The epoch of the controller's latest decision.", "epoch"),
    ("decision_epsilon", "The smallest marginal gain worth paying for (meta.epsilon).", "epsilon"),
)
_RECOMMENDED_GAUGES = (
    ("recommended_hidden_dim", "The hidden width the controller recommends.", "hidden_dim"),
    ("recommended_buffer_size", "The buffer size the controller recommends.", "buffer_size"),
)
_CAPACITY_GAUGES = (
    ("capacity_avg_regret", "Mean regret of a capacity over its seeds (the controller's window).", "avg_regret"),
    ("capacity_avg_advantage", "Mean advantage of a capacity over its seeds.", "avg_advantage"),
    ("capacity_val_mse", "Validation MSE of a capacity's world models, mean over seeds.", "val_mse"),
    ("capacity_num_params", "Parameters of a capacity's world model.", "num_params"),
)
_SWEEP_GAUGES = (
    ("sweep_epoch", "The last epoch whose artifacts the sweep has written.", "epoch"),
    ("sweep_useful_flop_fraction", "Useful-FLOP fraction of the sweep's width buckets.", "useful_flop_fraction"),
)


def check_buckets(bounds: Iterable[float]) -> tuple[float, ...]:
    """Returns the bucket upper bounds as floats, or raises ValueError naming the problem."""
    out = tuple(float(b) for b in bounds)
    if not out:
        raise ValueError("buckets: give at least one upper bound")
    if not all(math.isfinite(b) for b in out):
        raise ValueError("buckets: every bound must be finite (+Inf is always added)")
    if any(b >= c for b, c in zip(out, out[1:], strict=False)):
        raise ValueError(f"buckets: bounds must increase strictly, got {list(out)}")
    return out


def _label(v: Any) -> str:
    """Returns a label value: integers as digits, a missing value (None, -1) as ''."""
    if v is None or (isinstance(v, (int, np.integer)) and v < 0):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _num(v: Any) -> float | None:
    """Returns ``v`` as a finite float, or None (missing, null, not a number, non-finite)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class _Said:
    """Logs a source's problem once when it starts and once when it ends, not on every scrape."""

    def __init__(self) -> None:
        self._state: dict[str, str | None] = {}

    def problem(self, source: str, message: str, level: int = logging.WARNING) -> None:
        if self._state.get(source) != message:
            self._state[source] = message
            log.log(level, "%s", message)

    def fine(self, source: str, message: str | None = None) -> None:
        if self._state.get(source):
            log.info("%s", message or f"{source}: readable again")
        self._state[source] = None


class _CachedFile:
    """One file of the run directory, parsed again only when its inode, size or mtime changed."""

    def __init__(self, path: Path, parse: Callable[[Path], Any], said: _Said):
        self.path = path
        self._parse = parse
        self._said = said
        self._key: tuple | None = None
        self._value: Any = None
        self.parses = 0  # how often the file was parsed (stays put while it does not change)

    def get(self) -> Any:
        """Returns the parsed content, or None when the file is missing or unreadable."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._value = None, None
            self._said.problem(str(self.path), f"{self.path}: not written yet", logging.DEBUG)
            return None
        except OSError as e:
            self._key, self._value = None, None
            self._said.problem(str(self.path), f"{self.path}: cannot read: {e.strerror}")
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key:
            return self._value
        self._key = key
        self.parses += 1
        try:
            self._value = self._parse(self.path)
        except (OSError, ValueError) as e:
            self._value = None
            reason = str(e).removeprefix(f"{self.path}: ")
            self._said.problem(str(self.path), f"{self.path}: {reason}; ignored until it changes")
            return None
        if self._value is not None:
            self._said.fine(str(self.path))
        return self._value


def _read_json_object(path: Path) -> dict | None:
    obj = files.read_json(path)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


class RegretHistogram:
    """Per (variant, hidden_dim, buffer_size, seed, goal) bucket counts and sums of regret.

    Args:
      bounds: the buckets' upper bounds, increasing (+Inf is implied).
    """

    def __init__(self, bounds: Sequence[float] = DEFAULT_BUCKETS):
        self.bounds = np.asarray(check_buckets(bounds), np.float64)
        self.cells: dict[tuple, tuple[np.ndarray, float]] = {}  # key -> (counts per bucket, sum)
        self._family: tuple[str, HistogramMetricFamily] | None = None  # built for a run, until counts change

    def clear(self) -> None:
        """Returns nothing; forgets every count."""
        self.cells.clear()
        self._family = None

    def add(self, new: NewJudgments) -> None:
        """Returns nothing; counts the judgments ``new`` (vectorised over its rows)."""
        n = len(new)
        if n == 0:
            return
        names, vidx = np.unique(np.asarray(new.variant, dtype=object), return_inverse=True)
        keys = np.stack([vidx.reshape(-1), new.hidden_dim, new.buffer_size, new.seed, new.goal_id], axis=1)
        ukeys, kidx = np.unique(keys, axis=0, return_inverse=True)
        kidx = kidx.reshape(-1)
        nb = self.bounds.shape[0] + 1
        bucket = np.searchsorted(self.bounds, new.regret, side="left")  # first bound >= regret
        counts = np.bincount(kidx * nb + bucket, minlength=ukeys.shape[0] * nb).reshape(-1, nb)
        sums = np.bincount(kidx, weights=new.regret, minlength=ukeys.shape[0])
        self._family = None
        for row, c, s in zip(ukeys.tolist(), counts, sums.tolist(), strict=True):
            key = (str(names[row[0]]), *row[1:])
            old = self.cells.get(key)
            self.cells[key] = (c.astype(np.int64), s) if old is None else (old[0] + c, old[1] + s)

    def family(self, run: str) -> HistogramMetricFamily:
        """Returns the histogram family ``augnes_judgment_regret`` (cumulative buckets); the
        family of the previous call while no count has changed."""
        if self._family is not None and self._family[0] == run:
            return self._family[1]
        fam = HistogramMetricFamily(
            PREFIX + "judgment_regret",
            "Regret (optimal - reward) of each judged episode in judgments.jsonl, per variant and goal.",
            labels=GOAL_LABELS,
        )
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for (variant, h, b, s, g), (counts, total) in sorted(self.cells.items()):
            cum = np.cumsum(counts).tolist()
            fam.add_metric(
                [run, variant, _label(h), _label(b), _label(s), _label(g)],
                buckets=list(zip(les, cum, strict=True)),
                sum_value=total,
            )
        self._family = (run, fam)
        return fam


class _Families:
    """Collects gauges by name, so a family is yielded only when it holds samples."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily] = {}

    def gauge(self, name: str, doc: str, labels: Sequence[str], values: Sequence[Any], value: Any) -> None:
        v = _num(value)
        if v is None:
            return
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
        fam.add_metric([_label(x) for x in values], v)

    def interval(self, name: str, doc: str, interval_doc: str, labels: Sequence[str], values: Sequence[Any],
                 value: Any, ci: Any) -> tuple[Any, Any]:
        """Returns ``ci``'s ``(lower, upper)`` (None where absent) after adding three gauges: ``name``
        for ``value``, and ``name_ci95_lower`` and ``name_ci95_upper`` for the bounds of the interval
        ``ci`` (``[lower, upper]`` or null), whose help texts name it as ``interval_doc``."""
        ci = ci or [None, None]
        lower, upper = ci[0], ci[1] if len(ci) > 1 else None
        self.gauge(name, doc, labels, values, value)
        self.gauge(f"{name}_ci95_lower", f"Lower bound of {interval_doc}.", labels, values, lower)
        self.gauge(f"{name}_ci95_upper", f"Upper bound of {interval_doc}.", labels, values, upper)
        return lower, upper

    def fields(self, table: Sequence[tuple[str, str, str]], labels: Sequence[str], values: Sequence[Any],
               source: dict) -> None:
        """Returns nothing; adds one gauge per ``(name, doc, key)`` of ``table``: ``source[key]``."""
        for name, doc, key in table:
            self.gauge(name, doc, labels, values, source.get(key))

    def __iter__(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families.values())


class RunCollector(Collector):
    """Reads one run directory into metric families on every scrape (thread-safe).

    Args:
      run_dir: the run directory; it may not exist yet.
      buckets: upper bounds of the regret histogram's buckets.
    """

    def __init__(self, run_dir: str | os.PathLike, *, buckets: Sequence[float] = DEFAULT_BUCKETS):
        self.run_dir = Path(run_dir)
        self.run = self.run_dir.resolve().name
        self._lock = threading.Lock()
        self._said = _Said()
        d = self.run_dir
        self.strategy_stats = _CachedFile(d / "strategy_stats.json", _read_json_object, self._said)
        self.world_model_stats = _CachedFile(d / "world_model_stats.json", _read_json_object, self._said)
        self.decision = _CachedFile(d / "decision.json", _read_json_object, self._said)
        self.sweep_state = _CachedFile(d / "sweep_state.json", _read_json_object, self._said)
        self.alerts = _CachedFile(d / ALERTS_FILE, read_alerts, self._said)
        self.tail = JudgmentTail(d / "judgments.jsonl")
        self.histogram = RegretHistogram(buckets)

    def collect(self) -> Iterator[Any]:
        """Yields the run's metric families as they are now (none for a missing run directory)."""
        with self._lock:
            return iter(self._collect())

    def _collect(self) -> list[Any]:
        if not self.run_dir.is_dir():
            what = "is not a directory" if self.run_dir.exists() else "does not exist (yet)"
            self._said.problem(str(self.run_dir), f"run directory {self.run_dir} {what}; serving no metrics until it does")
            self.histogram.clear()
            self.tail = JudgmentTail(self.tail.path)
            return []
        self._said.fine(str(self.run_dir), f"run directory {self.run_dir} found; serving its metrics")
        g = _Families()
        self._strategy_stats(g)
        self._world_model_stats(g)
        self._decision(g)
        self._sweep_state(g)
        out: list[Any] = list(g)
        alerts = self._alerts()
        if alerts is not None:
            out.append(alerts)
        self._follow_judgments()
        if self.histogram.cells:
            out.append(self.histogram.family(self.run))
        return out

    # ---- judgments.jsonl ------------------------------------------------------------------

    def _follow_judgments(self) -> None:
        source = str(self.tail.path)
        try:
            new = self.tail.poll()
        except OSError as e:
            self._said.problem(source, f"{self.tail.path}: cannot read: {e.strerror}")
            return
        self._said.fine(source)
        if new.reset:
            self.histogram.clear()
        self.histogram.add(new)

    # ---- strategy_stats.json --------------------------------------------------------------

    def _strategy_stats(self, g: _Families) -> None:
        stats = self.strategy_stats.get()
        if stats is None:
            return
        for exp in stats.get("experiments") or []:
            if not isinstance(exp, dict):
                continue
            vl = [self.run, exp.get("variant"), exp.get("hidden_dim"), exp.get("buffer_size"), exp.get("seed")]
            g.interval("variant_avg_regret", "Mean regret over the variant's judged episodes (strategy_stats.json).",
                       "the 95% interval of the variant's mean regret", VARIANT_LABELS, vl,
                       exp.get("avg_regret"), exp.get("avg_regret_ci95"))
            g.fields(_VARIANT_GAUGES, VARIANT_LABELS, vl, exp)
            if "diverged" in exp:
                g.gauge("variant_diverged", "1 if the variant diverged and is excluded, else 0.",
                        VARIANT_LABELS, vl, float(bool(exp.get("diverged"))))
            goals = exp.get("goals") or {}
            for goal, cell in sorted(goals.items(), key=lambda kv: _goal_order(kv[0])):
                if not isinstance(cell, dict) or not cell.get("count"):
                    continue
                g.fields(_GOAL_GAUGES, GOAL_LABELS, [*vl, goal], cell)

    # ---- world_model_stats.json -----------------------------------------------------------

    def _world_model_stats(self, g: _Families) -> None:
        stats = self.world_model_stats.get()
        if stats is None:
            return
        variants = stats.get("variants") or {}
        for name, v in variants.items():
            if not isinstance(v, dict):
                continue
            epochs = [e for e in v.get("epochs") or [] if isinstance(e, dict)]
            vl = [self.run, name, v.get("hidden_dim"), v.get("buffer_size"), v.get("seed")]
            g.gauge("variant_num_params", "Parameters of the variant's world model.", VARIANT_LABELS, vl,
                    v.get("num_params"))
            if not epochs:
                continue
            last = max(epochs, key=lambda e: e.get("epoch", -1))
            g.fields(_MODEL_GAUGES, VARIANT_LABELS, vl, last)
            for k, mse in sorted((last.get("k_step_mse") or {}).items(), key=lambda kv: _goal_order(kv[0])):
                g.gauge("variant_k_step_mse", "Open-loop k-step MSE of the variant's world model, latest epoch.",
                        (*VARIANT_LABELS, "k"), [*vl, k], mse)

    # ---- decision.json --------------------------------------------------------------------

    def _decision(self, g: _Families) -> None:
        dec = self.decision.get()
        if dec is None:
            return
        run = [self.run]
        decision = dec.get("decision")
        for value in sorted({"keep", "expand", *([decision] if isinstance(decision, str) else [])}):
            g.gauge("decision", "1 for the controller's current decision, 0 for the other one.",
                    ("run", "decision"), [self.run, value], float(value == decision))
        g.fields(_DECISION_GAUGES, ("run",), run, dec)
        g.gauge("decision_relative", "1 if gains are compared with epsilon relative to the smaller capacity.",
                ("run",), run, float(bool(dec.get("relative"))))
        g.fields(_RECOMMENDED_GAUGES, ("run",), run, dec.get("recommended") or {})
        nxt = dec.get("suggested_next") or {}
        g.gauge("suggested_hidden_dim", "The hidden width to try next when the decision is expand.", ("run",), run,
                nxt.get("hidden_dim") if isinstance(nxt, dict) else None)
        gains = [x for x in dec.get("gains") or [] if isinstance(x, dict)]
        largest: dict[tuple, Any] = {}
        for x in gains:
            lk = (x.get("axis"), _ladder(x.get("ladder")))
            if _num(x.get("to")) is not None and (lk not in largest or x["to"] > largest[lk]):
                largest[lk] = x["to"]
        relative = bool(dec.get("relative"))
        for x in gains:
            ladder = _ladder(x.get("ladder"))
            last = x.get("to") == largest.get((x.get("axis"), ladder))
            gl = [self.run, x.get("axis"), ladder, x.get("from"), x.get("to"), "true" if last else "false"]
            lower, _ = g.interval("marginal_gain", "Decrease of mean regret from one capacity to the next on a ladder.",
                                  "the marginal gain's 95% interval", GAIN_LABELS, gl,
                                  x.get("gain"), x.get("gain_ci95"))
            rci = x.get("relative_gain_ci95") or [None, None]
            g.gauge("marginal_gain_relative", "The marginal gain relative to the smaller capacity's regret.",
                    GAIN_LABELS, gl, x.get("relative_gain"))
            g.gauge("marginal_gain_compared",
                    "The value the controller compares with epsilon: the relative gain if relative, else the gain.",
                    GAIN_LABELS, gl, x.get("relative_gain") if relative else x.get("gain"))
            g.gauge("marginal_gain_compared_ci95_lower", "Lower bound of the compared value's 95% interval.",
                    GAIN_LABELS, gl, rci[0] if relative else lower)
            g.gauge("marginal_gain_per_param", "The marginal gain per extra parameter.", GAIN_LABELS, gl,
                    x.get("gain_per_param"))
            g.gauge("marginal_gain_significant", "1 if the interval's lower bound exceeds epsilon, else 0.",
                    GAIN_LABELS, gl, float(bool(x.get("significant"))))
        for c in dec.get("capacities") or []:
            if not isinstance(c, dict):
                continue
            cl = [self.run, c.get("hidden_dim"), c.get("buffer_size")]
            g.fields(_CAPACITY_GAUGES, CAPACITY_LABELS, cl, c)
            g.gauge("capacity_seeds", "Seeds behind a capacity's figures.", CAPACITY_LABELS, cl,
                    len(c.get("seeds") or []))

    # ---- sweep_state.json -----------------------------------------------------------------

    def _sweep_state(self, g: _Families) -> None:
        state = self.sweep_state.get()
        if state is None:
            return
        run = [self.run]
        g.fields(_SWEEP_GAUGES, ("run",), run, state)
        g.gauge("sweep_diverged_variants", "Variants excluded after diverging.", ("run",), run,
                len(state.get("diverged") or {}))

    # ---- alerts.jsonl ---------------------------------------------------------------------

    def _alerts(self) -> CounterMetricFamily | None:
        alerts = self.alerts.get()
        if not alerts:
            return None
        counts: dict[str, int] = {}
        for a in alerts:
            kind = a.get("kind") if isinstance(a.get("kind"), str) else "unknown"
            counts[kind] = counts.get(kind, 0) + 1
        fam = CounterMetricFamily(PREFIX + "alerts", "Alerts recorded in alerts.jsonl, by kind.",
                                  labels=["run", "kind"])
        for kind, n in sorted(counts.items()):
            fam.add_metric([self.run, kind], n)
        return fam


def _ladder(ladder: Any) -> str:
    """Returns a ladder's fixed coordinates as a label value, e.g. ``buffer_size=400``."""
    if not isinstance(ladder, dict):
        return ""
    return ",".join(f"{k}={_label(v)}" for k, v in sorted(ladder.items()))


def _goal_order(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
