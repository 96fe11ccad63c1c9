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
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._health import health
from ._operation import encodable

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


class _SayOnce(logging.Filter):
    """Swallows the SDK's records that start with one of ``said`` (raw lines, one per event, some
    with a traceback): the first of each kind becomes one flowscope warning, and each is counted
    (``health.snapshot()["sdk_messages"]``)."""

    def __init__(self, said: dict[str, tuple[str, str]]) -> None:
        super().__init__("flowscope-sdk-logs")
        self.said = said   # message prefix -> (health kind, the one warning)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        for prefix, (kind, warning) in self.said.items():
            if message.startswith(prefix):
                if health.noted(kind):
                    _logger.warning(warning)
                return False
        return True


# The SDK loggers whose per-event lines flowscope folds into one warning (providers it owns).
_SDK_LINES = {
    "opentelemetry.sdk._shared_internal": {
        "Queue full, dropping": ("span queue full", "flowscope: the span export queue is full "
                                 "(OTEL_BSP_MAX_QUEUE_SIZE); spans are dropped and counted (telemetry health), "
                                 "the application is not affected"),
    },
    "opentelemetry.exporter.otlp.proto.common._internal": {
        "Failed to encode key": ("attribute not encodable", "flowscope: an attribute value the OTLP encoder cannot "
                                 "encode (a lone surrogate, say) was left out of its span; later ones are counted"),
    },
}
_sdk_filters = {name: _SayOnce(said) for name, said in _SDK_LINES.items()}


_capture = _LastMessage()
_reported: set[str] = set()
_lock = threading.Lock()


def quiet_exporter_logs() -> None:
    """Route the OTLP exporters' own log records into flowscope's one warning (idempotent)."""
    for name in EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _capture not in logger.filters:
            logger.addFilter(_capture)
    for name, sdk_filter in _sdk_filters.items():
        logger = logging.getLogger(name)
        if sdk_filter not in logger.filters:
            logger.addFilter(sdk_filter)


def report_export_failure(signal: str, destination: str, outage: bool = False) -> None:
    """Warn that exporting ``signal`` ("spans", "metrics") to ``destination`` failed: once per
    signal, or (``outage``: the span exporter, which also says when it is back) once per outage."""
    with _lock:
        if signal in _reported and not outage:
            return
        _reported.add(signal)
    reason = _capture.last or "the exporter reported a failure"
    if outage:
        _logger.warning("flowscope: cannot export %s over OTLP to %s (%s); retrying every few seconds, "
                        "spans meanwhile are dropped and counted, the application is not affected",
                        signal, destination, reason)
        return
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


FIRST_COOLDOWN_SECONDS = 1.0
MAX_COOLDOWN_SECONDS = 5.0
DEFAULT_EXIT_TIMEOUT_SECONDS = 2.5
PROBE_TIMEOUT_SECONDS = 1.0


def _timeout_holder(exporter: Any) -> Any:
    """The object whose ``_timeout`` (seconds) bounds one export: the gRPC exporter itself; the
    HTTP exporter's ``_client`` (opentelemetry-exporter-otlp-proto-http 1.4x). None if neither."""
    for holder in (exporter, getattr(exporter, "_client", None)):
        if holder is not None and isinstance(getattr(holder, "_timeout", None), (int, float)):
            return holder
    return None


def _count_failure(error: Exception) -> None:
    try:
        raise error
    except Exception:   # health logs the first one with its traceback
        health.failed("exporting spans")


def unencodable(spans: Sequence[ReadableSpan]) -> list[tuple[ReadableSpan, str]]:
    """The spans the OTLP encoder fails on, each with the reason (a name or an event with a lone
    surrogate, say): looked for only after a failed export, one span at a time."""
    try:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:   # not an OTLP exporter's failure
        return []
    bad = []
    for span in spans:
        try:
            encode_spans([span]).SerializeToString()
        except Exception as error:
            bad.append((span, f"{type(error).__name__}: {str(error)[:120]}"))
    return bad


def exit_timeout_seconds() -> float:
    """``FLOWSCOPE_EXPORT_EXIT_TIMEOUT`` (seconds, default 2.5): what exporting may add to exit."""
    raw = os.environ.get("FLOWSCOPE_EXPORT_EXIT_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_EXIT_TIMEOUT_SECONDS
    except ValueError:
        value = DEFAULT_EXIT_TIMEOUT_SECONDS
    return value if value >= 0 else DEFAULT_EXIT_TIMEOUT_SECONDS


class ResilientSpanExporter(SpanExporter):
    """Delegates to the real span exporter; rides out outages and bounds the exit.

    - Backoff: after a failed export, batches are dropped (and counted) at once for a cooldown
      that starts at 1 s and doubles with each failure in a row, up to 5 s; the first batch after
      it tries the backend again, with the exporter's timeout lowered to 1 s while the outage
      lasts. A backend that comes back is used again within about 5 s, and a dead one costs one
      short try per cooldown, not one exporter timeout per batch (before: one failure meant 30 s
      of dropped spans, the receiver back or not).
    - Logs: an outage is logged when it starts (with the exporter's reason, see
      :func:`report_export_failure`) and when it ends, with its length and the spans it cost.
    - Exit: :meth:`begin_exit` (an ``atexit`` hook that runs before the provider shuts down)
      gives the exports left at most ``FLOWSCOPE_EXPORT_EXIT_TIMEOUT`` seconds in all (2.5 by
      default): the exporter's own timeout is lowered to what remains, and what cannot be sent
      in time is dropped, counted and said in one line by :meth:`report_exit`.
    """

    def __init__(self, inner: SpanExporter, destination: str | None = None) -> None:
        self.inner = inner
        self.destination = destination or destination_of(inner)
        self._cooldown = 0.0
        self._skip_until = 0.0
        self._outage_started: float | None = None
        self._dropped_in_outage = 0
        self._exit_deadline: float | None = None
        self._normal_timeout: float | None = None
        self.exit_dropped = 0
        self.unencodable = 0   # spans dropped alone because the encoder failed on them
        self._before_flush: float | None = None   # the exporter's timeout while a flush bounds it

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        now = time.monotonic()
        if now < self._skip_until or (self._exit_deadline is not None and now >= self._exit_deadline):
            self._drop(len(spans))
            return SpanExportResult.FAILURE
        self._bound_timeout(now)
        result, error = self._export(spans)
        if result is not SpanExportResult.SUCCESS:
            bad = unencodable(spans)
            if bad:   # not the backend's fault: the batch without them
                self._drop_unencodable(bad)
                dropped = {id(span) for span, _ in bad}
                rest = [span for span in spans if id(span) not in dropped]
                if not rest:
                    return SpanExportResult.SUCCESS
                spans = rest
                result, error = self._export(rest)
            if error is not None:
                _count_failure(error)
        if result is SpanExportResult.SUCCESS:
            self._recovered()
        else:
            self._failed(len(spans))
        return result

    def _export(self, spans: Sequence[ReadableSpan]) -> tuple[SpanExportResult, Exception | None]:
        try:
            return self.inner.export(spans), None
        except Exception as error:   # the gRPC exporter raises what it cannot encode; HTTP logs it
            return SpanExportResult.FAILURE, error

    def _drop_unencodable(self, bad: list[tuple[ReadableSpan, str]]) -> None:
        health.dropped(len(bad))
        if not self.unencodable:
            _logger.warning("flowscope: dropped a span the OTLP encoder cannot encode (%r: %s); the rest of its "
                            "batch is exported, later ones are dropped and counted the same way",
                            encodable(bad[0][0].name)[:100], bad[0][1])
        self.unencodable += len(bad)

    def _drop(self, count: int) -> None:
        health.dropped(count)
        self._dropped_in_outage += count
        if self._exit_deadline is not None:
            self.exit_dropped += count

    def _failed(self, count: int) -> None:
        if self._outage_started is None and self._exit_deadline is None:
            self._probe_timeout(True)
        self._cooldown = min(MAX_COOLDOWN_SECONDS, self._cooldown * 2 or FIRST_COOLDOWN_SECONDS)
        self._skip_until = time.monotonic() + self._cooldown
        self._drop(count)
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            report_export_failure("spans", self.destination, outage=True)

    def _recovered(self) -> None:
        self._cooldown = 0.0
        if self._outage_started is not None:
            self._probe_timeout(False)
            _logger.warning("flowscope: span export to %s is back after %.1f s; %d spans were dropped "
                            "during the outage", self.destination, time.monotonic() - self._outage_started,
                            self._dropped_in_outage)
            self._outage_started = None
            self._dropped_in_outage = 0

    def _probe_timeout(self, probing: bool) -> None:
        """While the backend is away, each try waits at most PROBE_TIMEOUT_SECONDS (the OTLP
        exporters retry inside one export until their timeout, 10 s by default): a return is
        noticed within a cooldown, and the batch queue does not wait behind a long retry loop."""
        holder = _timeout_holder(self.inner)
        if holder is None:
            return
        if probing:
            self._normal_timeout = holder._timeout
            holder._timeout = min(holder._timeout, PROBE_TIMEOUT_SECONDS)
        elif self._normal_timeout is not None:
            holder._timeout = self._normal_timeout

    def _bound_timeout(self, now: float) -> None:
        """During exit, the inner exporter's own timeout (``_timeout``, seconds, in the OTLP
        exporters) is lowered to what remains of the exit budget."""
        if self._exit_deadline is None:
            return
        holder = _timeout_holder(self.inner)
        if holder is not None:
            holder._timeout = max(0.05, min(holder._timeout, self._exit_deadline - now))

    def bound_flush(self, deadline: float | None) -> None:
        """While a flush waits until ``deadline`` (``time.monotonic()``), the exporter's own timeout
        is at most 80% of what remains, so an export the flush starts fails (and is counted)
        before the flush gives up; ``None`` puts the timeout back."""
        holder = _timeout_holder(self.inner)
        if holder is None:
            return
        if deadline is None:
            if self._before_flush is not None:
                holder._timeout = self._before_flush
                self._before_flush = None
            return
        if self._before_flush is None:
            self._before_flush = holder._timeout
        holder._timeout = max(0.05, min(holder._timeout, 0.8 * (deadline - time.monotonic())))

    def begin_exit(self, processor: Any, budget_seconds: float | None = None) -> None:
        """Flush ``processor`` (the batch processor feeding this exporter) and shut it down
        within the exit budget, before the provider's own shutdown would wait up to 30 s for it.

        The SDK's batch processor joins its worker for the timeout it is given, then shuts the
        exporter down (which aborts the OTLP exporters' retry loops); an export still stuck on a
        socket is left to its daemon thread. Spans still queued then are counted as not exported.
        """
        budget = exit_timeout_seconds() if budget_seconds is None else budget_seconds
        self._exit_deadline = time.monotonic() + budget
        batch = getattr(processor, "_batch_processor", None)
        try:
            if batch is not None and hasattr(batch, "_queue"):
                batch.shutdown(timeout_millis=budget * 1000)
                left = len(batch._queue)
                if left:
                    health.dropped(left)
                    self.exit_dropped += left
            else:
                processor.shutdown()
        except Exception:
            health.failed("flushing spans at exit")

    def report_exit(self) -> None:
        if self.exit_dropped:
            _logger.warning("flowscope: %d spans were not exported at exit (%s unreachable within "
                            "FLOWSCOPE_EXPORT_EXIT_TIMEOUT=%gs)", self.exit_dropped, self.destination,
                            exit_timeout_seconds())

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
