"""Telemetry's own failures: counted and logged once per kind, never raised into the app.

    >>> from flowscope.telemetry import health
    >>> health.snapshot()
    {'failures': {}, 'dropped_spans': 0, 'sdk_messages': {}}
"""

from __future__ import annotations

import logging
import threading

_logger = logging.getLogger("flowscope")


class TelemetryHealth:
    """Counts what telemetry lost or failed to do, so reports can say so."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.dropped_spans = 0
        self.sdk_messages: dict[str, int] = {}   # the SDK's per-event log lines flowscope folded

    def noted(self, kind: str) -> bool:
        """Count one SDK log line of ``kind`` folded into flowscope's warning; True the first time."""
        with self._lock:
            first = kind not in self.sdk_messages
            self.sdk_messages[kind] = self.sdk_messages.get(kind, 0) + 1
        return first

    def failed(self, what: str) -> None:
        """Record a failure inside flowscope (call from an ``except`` block)."""
        with self._lock:
            first = what not in self.failures
            self.failures[what] = self.failures.get(what, 0) + 1
        if first:
            _logger.warning("flowscope: telemetry failure while %s (the application is not "
                            "affected; further failures of this kind are counted, not logged)",
                            what, exc_info=True)

    def dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped_spans += count

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"failures": dict(self.failures), "dropped_spans": self.dropped_spans,
                    "sdk_messages": dict(self.sdk_messages)}

    def reset(self) -> None:
        with self._lock:
            self.failures.clear()
            self.dropped_spans = 0
            self.sdk_messages.clear()


health = TelemetryHealth()
