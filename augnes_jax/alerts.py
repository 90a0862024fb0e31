"""Alerts raised when a marginal capacity gain drops below epsilon.

An alert goes to four places: a JSON line appended to ``RUN/alerts.jsonl``, a TensorBoard text
summary (tag ``alerts``, one short sentence per alert) in ``RUN/tb/_controller/``, a ``logging`` warning, and, optionally, a
webhook that receives exactly the same JSON payload. The same alert (same axis, ladder, from,
to and decision) is raised at most once per run: ``alerts.jsonl`` is the record of what was
already raised, so de-duplication also holds across processes and restarts.

The webhook is posted from a daemon thread with a timeout and a bounded number of retries, so a
slow or unreachable endpoint never blocks or crashes the sweep; its failures are only logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from augnes_jax import files
from augnes_jax.clock import utc_now

log = logging.getLogger(__name__)

ALERTS_FILE = "alerts.jsonl"
TB_RUN = "_alerts"  # a run of its own: a second event file in the controller's run would hide
# the scalars written after it from a reader that already moved on (sorts apart from the variants)
TB_TAG = "alerts"
KIND_MARGINAL_GAIN = "marginal_gain_below_epsilon"


def marginal_gain_alert(gain: Any, *, epsilon: float, relative: bool, decision: str) -> dict[str, Any]:
    """Returns the alert payload for a :class:`augnes_jax.decision.Gain` below epsilon."""
    return files.to_jsonable(
        {
            "ts": utc_now("seconds"),
            "kind": KIND_MARGINAL_GAIN,
            "axis": gain.axis,
            "ladder": dict(gain.ladder),
            "from": gain.from_,
            "to": gain.to,
            "gain": gain.gain,
            "gain_ci95": list(gain.gain_ci95),
            "relative_gain": gain.relative_gain,
            "relative": bool(relative),
            "epsilon": float(epsilon),
            "decision": decision,
        }
    )


def alert_key(alert: Mapping[str, Any]) -> tuple:
    """Returns the identity of an alert for de-duplication: kind, axis, ladder, from, to, decision."""
    ladder = alert.get("ladder") or {}
    return (
        alert.get("kind"),
        alert.get("axis"),
        json.dumps(ladder, sort_keys=True),
        alert.get("from"),
        alert.get("to"),
        alert.get("decision"),
    )


def read_alerts(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Returns the alerts recorded in an ``alerts.jsonl`` file ([] if it does not exist).

    A torn last line (a crash mid-append) is skipped with a warning; any other malformed line
    is an error that names its line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    torn_ok = not text.endswith("\n")
    out = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_ok and i == len(lines):
                log.warning("%s:%d: skipping a torn last line", path, i)
                continue
            raise ValueError(f"{path}:{i}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{i}: an alert must be a JSON object")
        out.append(obj)
    return out


class Webhook:
    """POSTs JSON payloads to an http(s) URL from daemon threads, with timeout and retries.

    Args:
      url: ``http://`` or ``https://`` URL; anything else is rejected here.
      timeout_s: timeout of one attempt (connect and read).
      retries: attempts after the first one.
      backoff_s: pause before retry ``i`` is ``backoff_s * i``.
    """

    def __init__(self, url: str, *, timeout_s: float = 2.0, retries: int = 2, backoff_s: float = 0.25):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"alerts.webhook_url: must be an http(s) URL, got {url!r}")
        if not timeout_s > 0:
            raise ValueError(f"alerts.timeout_s: must be > 0, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"alerts.retries: must be >= 0, got {retries!r}")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def send(self, payload: Mapping[str, Any]) -> bool:
        """Returns True once the endpoint answered 2xx; False after every attempt failed. Never raises."""
        try:
            body = json.dumps(files.to_jsonable(payload), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            log.warning("webhook %s: payload is not JSON: %s", self.url, e)
            return False
        error: object = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * attempt)
            req = urllib.request.Request(
                self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # the scheme was checked at construction
                    if 200 <= resp.status < 300:
                        return True
                    error = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}"
            except Exception as e:  # a webhook must never crash the caller
                error = e
        log.warning("webhook %s failed after %d attempt(s): %s", self.url, self.retries + 1, error)
        return False

    def post(self, payload: Mapping[str, Any]) -> threading.Thread:
        """Returns the started daemon thread that sends ``payload`` (the caller never waits)."""
        thread = threading.Thread(target=self.send, args=(dict(payload),), name="augnes-webhook", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> bool:
        """Returns True when every pending post finished within ``timeout`` seconds overall."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


class Alerter:
    """Raises de-duplicated alerts to ``alerts.jsonl``, TensorBoard, the log and a webhook.

    Args:
      run_dir: the run directory (``RUN/``).
      webhook_url: optional http(s) URL (``alerts.webhook_url``).
      timeout_s: webhook timeout per attempt (``alerts.timeout_s``).
      retries: webhook retries (``alerts.retries``).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        webhook_url: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.25,
    ):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ALERTS_FILE
        self.webhook = (
            Webhook(webhook_url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s) if webhook_url else None
        )

    @classmethod
    def from_config(cls, run_dir: str | os.PathLike, alerts_cfg: Any) -> Alerter:
        """Returns an alerter configured from an :class:`augnes_jax.config.AlertsConfig`."""
        return cls(run_dir, webhook_url=alerts_cfg.webhook_url, timeout_s=alerts_cfg.timeout_s, retries=alerts_cfg.retries)

    def raise_alerts(self, alerts: Iterable[Mapping[str, Any]], *, step: int | None = None) -> list[dict[str, Any]]:
        """Returns the alerts actually raised: those not already recorded in ``alerts.jsonl``."""
        seen = {alert_key(a) for a in read_alerts(self.path)}
        raised = []
        for alert in alerts:
            alert = files.to_jsonable(dict(alert))
            key = alert_key(alert)
            if key in seen:
                continue
            seen.add(key)
            self._append(alert)
            raised.append(alert)
            log.warning("alert: %s", _one_line(alert))
            if self.webhook is not None:
                self.webhook.post(alert)
        if raised:
            self._to_tensorboard(raised, step)
        return raised

    def _append(self, alert: Mapping[str, Any]) -> None:
        line = json.dumps(alert, allow_nan=False, sort_keys=False) + "\n"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # One write of a whole line in append mode, then fsync, so a reader sees whole lines
            # and a crash can at worst tear the last one (which read_alerts skips).
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise files.ArtifactWriteError(e.errno, f"cannot write {self.path}: {e.strerror}") from e

    def _to_tensorboard(self, alerts: Iterable[Mapping[str, Any]], step: int | None) -> None:
        from augnes_jax.tensorboard_io import RunWriter

        # A short-lived writer per batch, closed (so on disk) when this returns; one text per
        # batch, so a step never carries two texts under the tag.
        with RunWriter(self.run_dir / "tb" / TB_RUN) as writer:
            writer.text(TB_TAG, "  \n".join(alert_sentence(a) for a in alerts), 0 if step is None else step)

    def wait(self, timeout: float | None = None) -> bool:
        """Returns True when every pending webhook post finished within ``timeout`` seconds."""
        return True if self.webhook is None else self.webhook.wait(timeout)

    def close(self) -> None:
        """Returns nothing; kept for symmetry (writers close per batch, webhook threads are daemons)."""


def _round(x: Any) -> str:
    return f"{x:.2g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "n/a"


def alert_sentence(alert: Mapping[str, Any]) -> str:
    """Returns an alert as one short sentence with rounded numbers that says what it means."""
    lo, hi = (alert.get("gain_ci95") or [None, None])[:2]
    ladder = ", ".join(f"{k} {v}" for k, v in (alert.get("ladder") or {}).items())
    if alert.get("relative") and isinstance(alert.get("relative_gain"), (int, float)):
        gain = (f"lowers avg regret by {100 * alert['relative_gain']:.0f}% (absolute {_round(alert.get('gain'))}, "
                f"95% CI {_round(lo)} to {_round(hi)})")
        limit = f"{100 * float(alert.get('epsilon') or 0.0):.0f}%"
    else:
        gain = f"lowers avg regret by {_round(alert.get('gain'))} (95% CI {_round(lo)} to {_round(hi)})"
        limit = _round(alert.get("epsilon"))
    return (
        f"Going from {alert.get('axis')} {alert.get('from')} to {alert.get('to')} ({ladder}) {gain}, "
        f"less than epsilon {limit}: the larger capacity is not worth its cost here. "
        f"Decision: {alert.get('decision')}."
    )


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def _one_line(alert: Mapping[str, Any]) -> str:
    lo, hi = (alert.get("gain_ci95") or [None, None])[:2]
    ladder = ", ".join(f"{k} {v}" for k, v in (alert.get("ladder") or {}).items())
    return (
        f"{alert.get('kind')}: {alert.get('axis')} {alert.get('from')}->{alert.get('to')} ({ladder}) "
        f"gain {_num(alert.get('gain'))} CI95 [{_num(lo)}, {_num(hi)}] < epsilon {_num(alert.get('epsilon'))}; "
        f"decision {alert.get('decision')}"
    )
