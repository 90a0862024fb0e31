"""Serves a run directory's metrics to Prometheus: ``python -m augnes_jax.serve RUN_DIR``.

The exporter answers ``GET /metrics`` in the Prometheus text format; every scrape reads the run
directory as it is then (see :mod:`augnes_jax.run_metrics`), so it can start before the sweep
does, follow it while it writes, and keep serving after it has finished. It listens on loopback
(127.0.0.1:9108) unless ``--host``/``--port`` say otherwise; ``--port 0`` takes a free port and
the log line names it. Ctrl-C or SIGTERM stops it with exit status 0.

Bad input is one line and exit status 2: a RUN_DIR whose parent does not exist or that is not
a directory, a port out of range or in use, a host that does not resolve, bad ``--buckets``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from augnes_jax.cli import ArgumentParser, run_command
from augnes_jax.errors import UserError
from augnes_jax.run_metrics import DEFAULT_BUCKETS, RunCollector, check_buckets

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Exporter", "ServeError", "main", "start"]

log = logging.getLogger(__name__)

PROG = "python -m augnes_jax.serve"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9108


class ServeError(UserError):
    """The exporter cannot start: a bad run directory, or an address it cannot listen on."""


@dataclasses.dataclass
class Exporter:
    """A running exporter: its collector, its HTTP server and the URL of its metrics."""

    collector: RunCollector
    registry: CollectorRegistry
    server: object
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        """Returns the URL of the metrics page, e.g. ``http://127.0.0.1:9108/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Returns nothing; stops serving and frees the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def check_run_dir(run_dir: str | Path) -> Path:
    """Returns ``run_dir`` as a Path, or raises ServeError if it can never become a run directory.

    A run directory that does not exist yet is fine (the sweep may create it later); one whose
    parent is missing, or that is a file, is a mistake worth stopping for.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ServeError(f"RUN_DIR {path}: not a directory")
    parent = path.absolute().parent
    if not path.exists() and not parent.is_dir():
        raise ServeError(f"RUN_DIR {path}: its parent directory {parent} does not exist")
    return path


def start(
    run_dir: str | Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> Exporter:
    """Returns a started exporter serving ``run_dir`` on ``host:port`` (0: a free port).

    Raises:
      ServeError: the run directory can never be one (see :func:`check_run_dir`), or the
        address cannot be listened on (in use, not resolvable, not allowed).
    """
    path = check_run_dir(run_dir)
    collector = RunCollector(path, buckets=buckets)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    bound_port = int(server.server_address[1])
    return Exporter(collector, registry, server, thread, host, bound_port)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"must be in 0..65535, got {value}")
    return value


def _buckets(text: str) -> tuple[float, ...]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"comma-separated numbers expected, got {text!r}") from None
    return check_buckets(values)


def build_parser() -> ArgumentParser:
    """Returns the argument parser of ``python -m augnes_jax.serve``."""
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory to export (may not exist yet)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", default=DEFAULT_PORT, type=_wrap(_port, "--port"),
                        help=f"port to listen on, 0 for a free one (default {DEFAULT_PORT})")
    parser.add_argument("--buckets", default=DEFAULT_BUCKETS, type=_wrap(_buckets, "--buckets"),
                        help="upper bounds of the regret histogram's buckets, comma-separated "
                             f"(default {','.join(f'{b:g}' for b in DEFAULT_BUCKETS)})")
    return parser


def _wrap(fn, name: str):
    def parse(text: str):
        try:
            return fn(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("buckets: ")) from None

    parse.__name__ = name.lstrip("-")
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status of ``python -m augnes_jax.serve RUN_DIR [...]``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)

    def body() -> int:
        exporter = start(args.run_dir, host=args.host, port=args.port, buckets=args.buckets)
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        log.info("serving %s on %s (Ctrl-C stops)", Path(args.run_dir), exporter.url)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            exporter.close()
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
