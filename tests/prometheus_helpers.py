"""Scraping the exporter, reading PromQL, and a real Prometheus server for the exporter's tests."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "augnes-run.json"
RULES = GRAFANA / "rules" / "augnes.rules.yml"

Samples = dict[tuple[str, frozenset], float]


def scrape_text(url: str) -> str:
    """Returns the body of one GET of ``url`` (raises on any status but 200)."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200, resp.status
        return resp.read().decode("utf-8")


def parse_samples(text: str) -> Samples:
    """Returns every sample of a Prometheus text page as ``{(name, labels): value}``."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def scrape(url: str) -> Samples:
    """Returns the samples of one scrape of ``url``."""
    return parse_samples(scrape_text(url))


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset, float]:
    """Returns ``{labels: value}`` of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= lab}


def one(samples: Samples, name: str, **labels: str) -> float:
    """Returns the value of the single sample ``name`` with ``labels``."""
    found = select(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


# --------------------------------------------------------------------------------------------
# PromQL in the dashboard and the rules
# --------------------------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def dashboard_exprs(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """Returns ``(panel title, expr)`` of every query in the dashboard (rows' panels included)."""
    dash = json.loads(path.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        q = var.get("query")
        out.append((f"variable {var['name']}", q["query"] if isinstance(q, dict) else q))
    return out


def rule_exprs(path: Path = RULES) -> list[tuple[str, str]]:
    """Returns ``(rule name, expr)`` of every rule in a Prometheus rules file."""
    doc = yaml.safe_load(path.read_text())
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Returns the metric names an expression selects (``label_values(m, l)`` gives ``m``)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range and subquery durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        tail = e[m.end():].lstrip()
        if tail.startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue  # a function or an operator keyword
        names.add(m.group(0))
    return names


def substitute(expr: str, run: str) -> str:
    """Returns a dashboard expression with its variables set: one run, every goal."""
    return expr.replace("$run", run).replace("$goal", ".*")


# --------------------------------------------------------------------------------------------
# histogram_quantile, as Prometheus computes it (promql/quantile.go, bucketQuantile)
# --------------------------------------------------------------------------------------------


def histogram_quantile(q: float, bounds: list[float], cumulative: list[float]) -> float:
    """Returns Prometheus's ``histogram_quantile(q, ...)`` of one series' buckets (+Inf last)."""
    assert math.isinf(bounds[-1])
    observations = cumulative[-1]
    if observations == 0 or len(bounds) < 2:
        return math.nan
    rank = q * observations
    last = len(bounds) - 1
    b = next((i for i in range(last) if cumulative[i] >= rank), last)  # Go's sort.Search
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], cumulative[b]
    if b > 0:
        start = bounds[b - 1]
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    return start + (end - start) * (rank / count)


def cumulative_counts(regret: np.ndarray, bounds: list[float]) -> list[float]:
    """Returns the cumulative count of ``regret`` at or below each bound (+Inf last)."""
    return [float(np.count_nonzero(regret <= b)) for b in bounds]


# --------------------------------------------------------------------------------------------
# A real Prometheus server
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prometheus_server(tmp: Path, target: str, *, timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the base URL of a Prometheus server that scrapes ``target`` every second.

    Its config is ``grafana/prometheus.yml`` with the target, the intervals and the rules file's
    absolute path changed; the server runs until the block ends.
    """
    cfg = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str((GRAFANA / f).resolve()) for f in cfg["rule_files"]]
    cfg["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            try:
                if query(base, 'up{job="augnes"} == 1'):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def query(base: str, expr: str) -> list[dict]:
    """Returns the instant-vector result of ``expr`` from Prometheus's HTTP API (status checked)."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", (expr, body)
    assert body["data"]["resultType"] == "vector", (expr, body["data"]["resultType"])
    return body["data"]["result"]
