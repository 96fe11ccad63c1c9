"""Export failures of the exporters flowscope creates: one clear warning, then counted.

    >>> exporter = CountingMetricExporter(OTLPMetricExporter(), "127.0.0.1:4317")
    >>> report_export_failure("spans", "127.0.0.1:4317")   # what the span exporter calls

An unreachable or misconfigured OTLP endpoint must not flood the application's stderr: left
alone, the OTLP exporters log every retry ("Transient error ... retrying in 1s", then "Failed
to export ...", per batch and per signal, 3 to 5 lines a batch), which is what
``FLOWSCOPE_AUTO_INSTRUMENT=true python app.py`` with a collector that is down would print.

Design decisions:
- Only for exporters flowscope created (it owns the provider): their loggers get a filter that
  keeps the last message (as the reason) and swallows the record. The first failed export of
  each signal gives ONE warning on the ``flowscope`` logger naming the signal, the endpoint and
  that reason; later failures are counted (spans in :data:`health`), never logged again.
- Exporters created by someone else (a distro, the application) are left alone: their logs
  are their owner's business.
- Metric exports are wrapped too (a failed metric export loses one collection interval of
  deltas only if the temporality is delta; with the default cumulative temporality the next
  successful export carries everything).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

_logger = logging.getLogger("flowscope")

# The loggers of the OTLP exporters (opentelemetry-exporter-otlp-proto-grpc / -http 1.3x-1.4x).
EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


class _LastMessage(logging.Filter):
    """Swallows a logger's records, keeping the last message as the reason of a failure."""

    def __init__(self) -> None:
        super().__init__("flowscope-exporter-logs")
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self.last = record.getMessage().splitlines()[0][:300]
        except Exception:   # a record whose arguments do not format: still swallowed
            self.last = str(record.msg)[:300]
        return False


_capture = _LastMessage()
_reported: set[str] = set()
_lock = threading.Lock()


def quiet_exporter_logs() -> None:
    """Route the OTLP exporters' own log records into flowscope's one warning (idempotent)."""
    for name in EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _capture not in logger.filters:
            logger.addFilter(_capture)


def report_export_failure(signal: str, destination: str) -> None:
    """Warn once per signal ("spans", "metrics") that exporting to ``destination`` failed."""
    with _lock:
        if signal in _reported:
            return
        _reported.add(signal)
    reason = _capture.last or "the exporter reported a failure"
    _logger.warning("flowscope: cannot export %s over OTLP to %s (%s); they are dropped and counted, "
                    "the application is not affected (further export failures are not logged)",
                    signal, destination, reason)


def destination_of(exporter: Any) -> str:
    """The endpoint an OTLP exporter sends to, for messages (``?`` if it cannot tell)."""
    return str(getattr(exporter, "_endpoint", None) or "?")


class CountingMetricExporter(MetricExporter):
    """Delegates to the real metric exporter; the first failed export gives one warning."""

    def __init__(self, inner: MetricExporter, destination: str) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.destination = destination
        self.failed_exports = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.failed_exports += 1
            report_export_failure("metrics", self.destination)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
