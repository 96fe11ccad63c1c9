"""Per-operation statistics scoped to one load test, across threads and worker processes.

    >>> aggregation = scoped_aggregation()           # a dedicated BottleneckSpanProcessor
    >>> with aggregation.bound():                    # in each worker thread
    ...     execution.perform_action("approve")      # its span reaches that processor too
    >>> aggregation.processor.operations()

Design decisions:
- flowscope's own aggregator (``flowscope.configure().aggregator``) is process-wide and other
  code reads it, so a load test never resets it. Its statistics come from a *dedicated*
  :class:`~flowscope.telemetry.BottleneckSpanProcessor` instead.
- An OpenTelemetry ``TracerProvider`` can add span processors but never remove one, so one
  small router (:class:`_ScopedRouter`) is added to the provider once per process and forwards
  a finished span to whichever processor the *ending thread* is bound to, through a context
  variable (the SDK calls ``on_end`` synchronously on the thread that ends the span). Spans of
  threads that are not bound cost one context-variable read.
- Worker processes (``mode="processes"``) bind their threads to a recorder instead, which turns
  each finished operation span into a small picklable :class:`SpanRecord` (name, ids, times,
  attributes, status, and a parent-less copy of its query tally). The parent *replays* the
  records into its dedicated processor through the processor's public ``on_end``: the result
  is exactly what one process would have aggregated (counts exact, quantiles from the same
  sketch), and nothing here depends on the aggregator's internals.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from ..telemetry import BottleneckSpanProcessor, Telemetry, frame_of
from ..telemetry import _attributes as attr
from ..telemetry._frames import OperationFrame, StatementTally

_target: contextvars.ContextVar[Any] = contextvars.ContextVar("flowscope_load_test_target", default=None)
_routers: dict[int, _ScopedRouter] = {}
_lock = threading.Lock()


class _ScopedRouter(SpanProcessor):
    """Forwards each finished span to the processor the ending thread is bound to."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        target = _target.get()
        if target is not None:
            target.on_end(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _install_router(telemetry: Telemetry) -> bool:
    provider = telemetry.tracer_provider
    if provider is None or not hasattr(provider, "add_span_processor"):
        return False     # OTEL_SDK_DISABLED: no spans at all
    with _lock:
        if id(provider) not in _routers:
            router = _ScopedRouter()
            provider.add_span_processor(router)
            _routers[id(provider)] = router
    return True


@dataclass(frozen=True)
class SpanRecord:
    """What the aggregator reads from one finished operation span, in picklable form."""

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_time: int
    end_time: int
    attributes: dict[str, Any]
    error: str | None
    query_count: int = 0
    query_seconds: float = 0.0
    statements: dict[str, tuple[int, float, dict[int, int]]] = field(default_factory=dict)


class SpanRecorder:
    """Keeps a :class:`SpanRecord` of every finished operation span it is given (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[SpanRecord] = []

    def on_end(self, span: ReadableSpan) -> None:
        attributes = dict(span.attributes or {})
        if attr.OPERATION not in attributes or span.start_time is None or span.end_time is None:
            return
        context = span.context
        frame = frame_of(span)
        record = SpanRecord(
            name=span.name, trace_id=context.trace_id if context else 0, span_id=context.span_id if context else 0,
            parent_span_id=span.parent.span_id if span.parent is not None else None,
            start_time=span.start_time, end_time=span.end_time, attributes=attributes,
            error=(span.status.description or "error") if span.status.status_code is StatusCode.ERROR else None,
            query_count=frame.query_count if frame is not None else 0,
            query_seconds=frame.query_seconds if frame is not None else 0.0,
            statements={statement: (t.count, t.seconds, dict(t.parameter_sets))
                        for statement, t in frame.statements.items()} if frame is not None else {})
        with self._lock:
            self.records.append(record)


def replay(records: list[SpanRecord], processor: BottleneckSpanProcessor) -> None:
    """Feed recorded spans to ``processor`` as if they had ended in this process."""
    for record in records:
        context = SpanContext(record.trace_id, record.span_id, is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        parent = (SpanContext(record.trace_id, record.parent_span_id, is_remote=False)
                  if record.parent_span_id is not None else None)
        status = Status(StatusCode.ERROR, record.error) if record.error is not None else Status(StatusCode.UNSET)
        span = ReadableSpan(name=record.name, context=context, parent=parent, attributes=record.attributes,
                            status=status, start_time=record.start_time, end_time=record.end_time)
        frame = OperationFrame(None)
        frame.query_count = record.query_count
        frame.query_seconds = record.query_seconds
        for statement, (count, seconds, parameter_sets) in record.statements.items():
            tally = StatementTally()
            tally.count, tally.seconds, tally.parameter_sets = count, seconds, dict(parameter_sets)
            frame.statements[statement] = tally
        span._flowscope_frame = frame  # type: ignore[attr-defined]  # what frame_of() reads
        processor.on_end(span)


class ScopedAggregation:
    """A dedicated processor (or recorder) that the current load test's threads bind to."""

    def __init__(self, telemetry: Telemetry, record: bool = False) -> None:
        self.enabled = _install_router(telemetry)
        self.processor = BottleneckSpanProcessor()
        self.recorder = SpanRecorder() if record else None

    @contextmanager
    def bound(self) -> Iterator[None]:
        """Route the spans this thread ends to this aggregation (use inside each worker thread)."""
        token = _target.set(self.recorder if self.recorder is not None else self.processor)
        try:
            yield
        finally:
            _target.reset(token)
