"""The slowest recent traces, laid out as waterfalls, from the local span store.

    >>> for trace in slowest_traces(configure().span_store, limit=3):
    ...     print(trace.root, trace.duration_ms, [(s.depth, s.name) for s in trace.spans])

What a person opens Jaeger for, without a backend: for each of the slowest traces still in the
:class:`~flowscope.telemetry.SpanStore` that hold an operation span, every span of the trace
in tree order (children by start time) with its offset from the trace's start, its duration,
and for operation spans the queries they ran. Traces are built only when a report asks.

Design decisions:
- A trace's spans are those in the store: spans already evicted, or not ended yet, are
  missing, and a span whose parent is missing is shown as a root. ``truncated`` counts the
  spans left out past ``max_spans``.
- Only traces with at least one operation span: the store also holds other instrumentations'
  spans, which are shown inside an operation's trace but never make one on their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ..telemetry import SpanStore
from ..telemetry import _attributes as attr


@dataclass(frozen=True)
class TraceSpan:
    """One span of a trace waterfall (times in milliseconds from the trace's start)."""

    name: str
    depth: int
    offset_ms: float
    duration_ms: float
    operation: bool             # made by flowscope.operation (or the workflow instrumentor)
    query_count: int | None     # operation spans only
    error: bool


@dataclass(frozen=True)
class TraceView:
    trace_id: str               # 32 hex digits, as Jaeger and the OTLP exporters show it
    root: str                   # the first root span's name (its operation's, for an operation span)
    duration_ms: float          # first start to last end
    spans: tuple[TraceSpan, ...]
    truncated: int              # spans left out past max_spans


def slowest_traces(store: SpanStore, limit: int = 3, max_spans: int = 200,
                   among: Iterable[ReadableSpan] | None = None) -> tuple[TraceView, ...]:
    """The ``limit`` longest traces in ``store`` that hold an operation span, longest first;
    with ``among``, only the traces of those spans (e.g. one execution's)."""
    if limit < 0 or max_spans < 1:
        raise ValueError(f"slowest_traces needs limit >= 0 and max_spans >= 1, got limit={limit}, "
                         f"max_spans={max_spans}")
    wanted = None if among is None else {s.context.trace_id for s in among if s.context is not None}
    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in store.spans():
        if span.context is not None and span.start_time is not None and span.end_time is not None \
                and (wanted is None or span.context.trace_id in wanted):
            by_trace[span.context.trace_id].append(span)
    with_operation = [spans for spans in by_trace.values() if any(_is_operation(s) for s in spans)]
    longest = sorted(with_operation, key=_duration_ns, reverse=True)[:limit]
    return tuple(_view(spans, max_spans) for spans in longest)


def _is_operation(span: ReadableSpan) -> bool:
    return attr.OPERATION in (span.attributes or {})


def _duration_ns(spans: list[ReadableSpan]) -> int:
    return max(s.end_time for s in spans) - min(s.start_time for s in spans)  # type: ignore[type-var,operator]


def _view(spans: list[ReadableSpan], max_spans: int) -> TraceView:
    start = min(s.start_time for s in spans)  # type: ignore[type-var]
    ids = {s.context.span_id for s in spans}  # type: ignore[union-attr]
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children[parent].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: s.start_time)  # type: ignore[arg-type,return-value]
    rows = [_row(span, depth, start) for span, depth in _tree_order(children)][:max_spans]
    return TraceView(trace_id=f"{spans[0].context.trace_id:032x}", root=rows[0].name,  # type: ignore[union-attr]
                     duration_ms=_duration_ns(spans) / 1e6, spans=tuple(rows),
                     truncated=max(0, len(spans) - max_spans))


def _tree_order(children: dict[int | None, list[ReadableSpan]]) -> Iterable[tuple[ReadableSpan, int]]:
    stack = [(span, 0) for span in reversed(children[None])]
    while stack:
        span, depth = stack.pop()
        yield span, depth
        stack.extend((child, depth + 1) for child in reversed(children.get(span.context.span_id, ())))  # type: ignore[union-attr]


def _row(span: ReadableSpan, depth: int, trace_start: int) -> TraceSpan:
    attributes = span.attributes or {}
    operation = attr.OPERATION in attributes
    return TraceSpan(
        name=str(attributes.get(attr.OPERATION, span.name)), depth=depth,
        offset_ms=(span.start_time - trace_start) / 1e6,  # type: ignore[operator]
        duration_ms=(span.end_time - span.start_time) / 1e6,  # type: ignore[operator]
        operation=operation, query_count=int(attributes.get(attr.QUERY_COUNT, 0)) if operation else None,
        error=span.status.status_code is StatusCode.ERROR)
