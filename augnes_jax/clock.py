"""The one UTC timestamp every artifact uses (shell layer)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_now"]


def utc_now(timespec: str = "milliseconds") -> str:
    """Returns the current UTC time as ISO 8601 with a ``Z`` suffix, e.g. ``2026-01-02T03:04:05.678Z``.

    Args:
      timespec: as in :meth:`datetime.isoformat`: ``"milliseconds"`` for judgments and logs,
        ``"seconds"`` for documents such as ``decision.json``.
    """
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
