"""Telemetry's own failures: counted and logged once per kind, never raised into the app.

    >>> from flowscope.telemetry import health
    >>> health.snapshot()
    {'failures': {}, 'dropped_spans': 0}
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
            return {"failures": dict(self.failures), "dropped_spans": self.dropped_spans}

    def reset(self) -> None:
        with self._lock:
            self.failures.clear()
            self.dropped_spans = 0


health = TelemetryHealth()
