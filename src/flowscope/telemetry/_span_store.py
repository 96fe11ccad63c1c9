"""``SpanStore``: a bounded ring buffer of recent finished spans, for local reports.

    >>> store = SpanStore(capacity=5000)
    >>> provider.add_span_processor(store)
    >>> store.by_execution(42)         # every span of execution 42 still in the buffer

Design decision: a ``collections.deque(maxlen=...)`` (append is atomic under the GIL, so no
lock on the hot path) of the SDK's own finished span objects, each with its query tally.
Lookups scan the buffer (O(capacity)); they run when a report is built, never per span.
Reports read this store, never the exporter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import _attributes as attr
from ._frames import OperationFrame, pending_frames

DEFAULT_CAPACITY = 10_000


class SpanStore(SpanProcessor):
    """Keep the last ``capacity`` finished spans (all of them, flowscope's and others')."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"SpanStore capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._spans: deque[ReadableSpan] = deque(maxlen=capacity)
        self.seen = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._spans.append(span)
        self.seen += 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    @property
    def evicted(self) -> int:
        """Spans pushed out of the buffer by newer ones."""
        return max(0, self.seen - len(self._spans))

    def spans(self) -> list[ReadableSpan]:
        """Every span in the buffer, oldest first."""
        return list(self._spans)

    def by_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self._spans if s.context is not None and s.context.trace_id == trace_id]

    def by_operation(self, name: str) -> list[ReadableSpan]:
        return [s for s in self._spans if (s.attributes or {}).get(attr.OPERATION) == name]

    def by_execution(self, execution_id: Any) -> list[ReadableSpan]:
        """Spans tagged with ``workflow.execution.id`` = ``execution_id`` (int or str)."""
        wanted = str(execution_id)   # compared as text: 42 and "42" find each other both ways
        found = []
        for s in self._spans:
            value = (s.attributes or {}).get(attr.EXECUTION_ID)
            if value is not None and str(value) == wanted:
                found.append(s)
        return found

    def clear(self) -> None:
        self._spans.clear()
        self.seen = 0


def frame_of(span: ReadableSpan) -> OperationFrame | None:
    """The query tally recorded for an operation span (``None`` for other spans).

    Available while a :class:`BottleneckSpanProcessor` is installed: the frame waits in
    ``pending_frames`` until the processor aggregates the span, then rides on the span.
    """
    frame = getattr(span, "_flowscope_frame", None)
    if frame is None and span.context is not None:
        frame = pending_frames.get(span.context.span_id)
    return frame


def operation_spans(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    """Only the spans made by :func:`flowscope.operation` (or the workflow instrumentor)."""
    return [s for s in spans if attr.OPERATION in (s.attributes or {})]
