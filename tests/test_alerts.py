"""Alerts: alerts.jsonl, TensorBoard text, log line, de-duplication and the webhook (loopback only)."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading

import pytest
from synthetic_runs import build_run

from augnes_jax import alerts
from augnes_jax.alerts import Alerter, Webhook, alert_sentence, read_alerts
from augnes_jax.meta import MetaJudgmentController

EPS = 0.05


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, str | None, bytes]] = []
        self.statuses: list[int] = []
        self.hold: threading.Event | None = None
        self.responded = threading.Event()
        self.got_request = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers.get("Content-Type"), body))
        self.server.got_request.set()
        if self.server.hold is not None:
            self.server.hold.wait(10)  # bounded: the test releases it
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up (timeout): nothing to answer
        self.server.responded.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    if srv.hold is not None:
        srv.hold.set()
    srv.shutdown()
    srv.server_close()
    t.join(timeout=5)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def _keep_run(tmp_path):
    """A run whose only step (h8 -> h16) gains 0.01 < epsilon: one alert."""
    build_run(
        tmp_path, 3, hidden_dims=(8, 16), seeds=(0, 1), true_regret=lambda h, b, e, g: {8: 0.5, 16: 0.49}[h] + 0.1 * g,
    )  # fmt: skip
    return MetaJudgmentController(tmp_path, epsilon=EPS)


def _payload(**kw):
    base = {
        "ts": "2026-01-01T00:00:00Z", "kind": alerts.KIND_MARGINAL_GAIN, "axis": "hidden_dim",
        "ladder": {"buffer_size": 1000}, "from": 8, "to": 16, "gain": 0.01, "gain_ci95": [0.0, 0.02],
        "relative_gain": 0.02, "relative": False, "epsilon": EPS, "decision": "keep",
    }  # fmt: skip
    base.update(kw)
    return base


# ------------------------------------------------------------------------------- sinks


def test_alert_goes_to_jsonl_tensorboard_and_log(tmp_path, caplog):
    ctrl = _keep_run(tmp_path)
    with caplog.at_level(logging.WARNING, logger="augnes_jax.alerts"):
        raised = ctrl.write()
    (gain,) = ctrl.decision.gains
    assert len(raised) == 1
    a = raised[0]
    assert a["kind"] == "marginal_gain_below_epsilon"
    assert (a["axis"], a["ladder"], a["from"], a["to"]) == ("hidden_dim", {"buffer_size": 1000}, 8, 16)
    assert a["gain"] == pytest.approx(gain.gain) and a["gain"] == pytest.approx(0.01, abs=1e-6)
    assert a["gain_ci95"] == pytest.approx(list(gain.gain_ci95))
    assert a["epsilon"] == EPS and a["decision"] == "keep"
    assert set(a) >= {"ts", "kind", "axis", "from", "to", "gain", "gain_ci95", "epsilon", "decision"}
    assert read_alerts(tmp_path / "alerts.jsonl") == raised
    assert [r for r in caplog.records if "marginal_gain_below_epsilon" in r.getMessage() and r.levelno == logging.WARNING]

    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(tmp_path / "tb" / "_alerts"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    assert acc.Tags()["tensors"] == ["alerts"]
    (event,) = acc.Tensors("alerts")
    text = event.tensor_proto.string_val[0].decode()
    assert text == alert_sentence(a)
    assert text.startswith("Going from hidden_dim 8 to 16 (") and "Decision: keep." in text
    assert event.step == ctrl.decision.epoch  # on disk without closing anything
    ctrl.close()


def test_same_alert_is_not_raised_twice(tmp_path):
    ctrl = _keep_run(tmp_path)
    assert len(ctrl.write()) == 1
    assert ctrl.write() == []
    ctrl.close()
    # A restarted process reads alerts.jsonl and does not raise it again either.
    again = MetaJudgmentController(tmp_path, epsilon=EPS)
    again.update()
    assert again.write() == []
    again.close()
    assert len(read_alerts(tmp_path / "alerts.jsonl")) == 1
    # A different decision for the same step is a new alert.
    sink = Alerter(tmp_path)
    assert len(sink.raise_alerts([_payload(decision="expand")])) == 1
    assert len(sink.raise_alerts([_payload(decision="expand", ts="later")])) == 0
    sink.close()
    assert len(read_alerts(tmp_path / "alerts.jsonl")) == 2


def test_read_alerts_skips_a_torn_last_line_and_names_bad_lines(tmp_path, caplog):
    path = tmp_path / "alerts.jsonl"
    path.write_text(json.dumps(_payload()) + "\n" + '{"ts": "2026-0')
    with caplog.at_level(logging.WARNING):
        assert read_alerts(path) == [_payload()]
    assert "torn" in caplog.text
    path.write_text(json.dumps(_payload()) + "\nnot json\n" + json.dumps(_payload()) + "\n")
    with pytest.raises(ValueError, match=r"alerts.jsonl:2: invalid JSON"):
        read_alerts(path)
    assert read_alerts(tmp_path / "missing.jsonl") == []


# ----------------------------------------------------------------------------- webhook


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1:80", "http://", "gopher://h/"])
def test_webhook_rejects_non_http_urls(url, tmp_path):
    with pytest.raises(ValueError, match="http"):
        Webhook(url)
    with pytest.raises(ValueError, match="http"):
        Alerter(tmp_path, webhook_url=url)


def test_webhook_receives_exactly_the_alert_payload(tmp_path, server):
    ctrl = _keep_run(tmp_path)
    ctrl.alerter = Alerter(tmp_path, webhook_url=server.url, timeout_s=5.0, retries=0)
    raised = ctrl.write()
    assert ctrl.alerter.wait(timeout=10)
    ctrl.close()
    assert len(server.received) == 1
    path, ctype, body = server.received[0]
    assert path == "/hook" and ctype == "application/json"
    assert json.loads(body) == raised[0] == read_alerts(tmp_path / "alerts.jsonl")[0]


def test_webhook_retries_after_a_server_error(server):
    server.statuses = [500, 503, 200]
    hook = Webhook(server.url, timeout_s=5.0, retries=2, backoff_s=0.01)
    assert hook.send(_payload()) is True
    assert len(server.received) == 3
    assert all(json.loads(b) == _payload() for _, _, b in server.received)


def test_unreachable_webhook_never_blocks_or_raises(tmp_path, caplog):
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    sink = Alerter(tmp_path, webhook_url=url, timeout_s=1.0, retries=2, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="augnes_jax.alerts"):
        raised = sink.raise_alerts([_payload()])
        assert raised and read_alerts(tmp_path / "alerts.jsonl") == raised  # recorded regardless
        assert sink.wait(timeout=20)  # bounded: three refused connections
    sink.close()
    assert any("failed after 3 attempt(s)" in r.getMessage() for r in caplog.records)


def test_slow_webhook_does_not_block_the_caller(tmp_path, server, caplog):
    server.hold = threading.Event()  # the server answers only when the test says so
    sink = Alerter(tmp_path, webhook_url=server.url, timeout_s=0.3, retries=1, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="augnes_jax.alerts"):
        raised = sink.raise_alerts([_payload()])
        # The caller is back while the server still holds the request unanswered.
        assert raised and not server.responded.is_set()
        assert all(t.daemon for t in sink.webhook._threads)
        assert sink.wait(timeout=20)  # the webhook thread gives up after its timeouts
        assert not server.responded.is_set()
    server.hold.set()
    sink.close()
    assert server.got_request.is_set()
    assert any("failed after 2 attempt(s)" in r.getMessage() for r in caplog.records)


def test_webhook_send_never_raises_on_a_bad_payload(caplog):
    hook = Webhook("http://127.0.0.1:9/hook", timeout_s=0.5, retries=0)
    with caplog.at_level(logging.WARNING, logger="augnes_jax.alerts"):
        assert hook.send({"x": object()}) is False
    assert "not JSON" in caplog.text


def test_alerts_leave_the_controllers_run_one_event_file_so_a_live_reader_misses_nothing(tmp_path):
    """A reader that follows the controller's run while an alert is raised still sees every scalar
    written to that run afterwards: the alert's text goes to a run of its own."""
    from augnes_jax.tensorboard_io import RunWriter, TensorBoardReader

    reader = TensorBoardReader(tmp_path / "tb")
    with RunWriter(tmp_path / "tb" / "_controller") as w:
        w.scalars(0, {"decision/expand": 0.0})
        w.flush()
        reader.reload()
        Alerter(tmp_path).raise_alerts([_payload()], step=0)
        reader.reload()
        w.scalars(1, {"decision/expand": 1.0})
        w.flush()
        reader.reload()
        steps, values, _ = reader.scalars("_controller", "decision/expand")
    assert steps.tolist() == [0, 1] and values.tolist() == [0.0, 1.0]
    assert len(list((tmp_path / "tb" / "_controller").glob("events.out.tfevents.*"))) == 1
