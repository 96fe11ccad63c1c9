"""flowscope's span processors registered with the SDK as one.

    provider.add_span_processor(ProcessorChain(span_operations, aggregator, span_store))

Design decision: the SDK calls every registered processor three times for every span
(``on_start``, ``_on_ending``, ``on_end``), whether the span concerns it or not. Registered
one by one, the span-based operations, the aggregator and the span store cost an INTERNAL or
CLIENT span that is not an operation ~1 us of dispatch alone (6% of a bare span here); as one
processor, a third of it (benchmarks/bench_span_operations.py). Order is kept: span-based
operations finish (and write their attributes) before the aggregator and the store see a span.

As every span ends (``_on_ending``, before any processor's ``on_end`` and any exporter), the
exceptions and error status recorded on it, by flowscope or by any instrumentation, are scrubbed
of SQL parameter values (see _scrub); a span with no event and no error pays two field reads.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from ._aggregator import BottleneckSpanProcessor
from ._health import health
from ._scrub import scrub_exception_events
from ._span_operations import ON_ENDING, SpanOperationProcessor
from ._span_store import SpanStore

_ERROR = StatusCode.ERROR


class ProcessorChain(SpanProcessor):
    """The span-based operations (optional), the aggregator and the span store, in that order."""

    def __init__(self, span_operations: SpanOperationProcessor | None, aggregator: BottleneckSpanProcessor,
                 span_store: SpanStore) -> None:
        self.span_operations, self.aggregator, self.span_store = span_operations, aggregator, span_store
        self._start = span_operations.on_start if span_operations is not None else None
        self._ending = span_operations._on_ending if span_operations is not None else None
        # Where the SDK has OnEnding, a span-based operation finishes there and its on_end is idle.
        self._operations_end = span_operations.on_end if span_operations is not None and not ON_ENDING else None
        self._aggregate, self._store = aggregator.on_end, span_store.on_end

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._start is not None:
            self._start(span, parent_context)

    def _on_ending(self, span: Span) -> None:
        if self._ending is not None:
            self._ending(span)
        try:   # an SDK span's fields: a deque and a status code, no Python-level call
            recorded = span._events._dq or span._status._status_code is _ERROR
        except AttributeError:
            recorded = True
        if recorded:
            try:
                scrub_exception_events(span)
            except Exception:
                health.failed("scrubbing an exception recorded on a span")

    def on_end(self, span: ReadableSpan) -> None:
        if self._operations_end is not None:
            self._operations_end(span)
        self._aggregate(span)
        self._store(span)

    def shutdown(self) -> None:
        for processor in (self.span_operations, self.aggregator, self.span_store):
            if processor is not None:
                processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis)
                   for processor in (self.span_operations, self.aggregator, self.span_store)
                   if processor is not None)
