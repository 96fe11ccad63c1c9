"""Measure one run of a callable: its queries and time, in total and per workflow operation.

    >>> result, metrics = measure(lambda: onboard(employee), label="onboard")
    >>> metrics.queries, metrics.queries_per_operation("EmployeeOnboarding.complete_orientation")
    (38, 8.0)

Every before/after number an optimizer reports comes from here, so "fewer queries" is always
two measurements of the same code, never an estimate.

Design decision: the run is one :func:`flowscope.operation` (a root span); its numbers are
that span's attributes, and the per-operation breakdown comes from the spans *descending*
from it in the span store (the workflow actions the callable performed). Descendants, not
"spans of the same trace": a run measured inside a larger trace must not pick up spans that
ended earlier in that trace, nor spans of other threads.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry.sdk.trace import ReadableSpan

from ...analysis._sources import number
from ...telemetry import _attributes as attr
from ...telemetry import configure, operation

T = TypeVar("T")


@dataclass(frozen=True)
class OperationQueries:
    """One operation name within a measured run: how often, and its means."""

    operation: str
    count: int
    queries_per_operation: float
    ms_per_operation: float


@dataclass(frozen=True)
class RunMetrics:
    """One measured run."""

    label: str
    duration_ms: float
    queries: int
    query_ms: float
    operations: tuple[OperationQueries, ...] = ()

    def operation(self, name: str) -> OperationQueries | None:
        for op in self.operations:
            if op.operation == name:
                return op
        return None

    def queries_per_operation(self, name: str) -> float | None:
        """Mean queries of operation ``name`` in this run, ``None`` if it did not run."""
        op = self.operation(name)
        return None if op is None else op.queries_per_operation


def measure(fn: Callable[[], T], label: str = "flowscope.measure") -> tuple[T, RunMetrics]:
    """Run ``fn()`` as one operation named ``label``; return its result and what it cost."""
    result, metrics, _ = measure_spans(fn, label)
    return result, metrics


def measure_spans(fn: Callable[[], T], label: str = "flowscope.measure") -> tuple[T, RunMetrics, list[ReadableSpan]]:
    """:func:`measure`, plus the run's spans (its root span first, then every span below it)."""
    telemetry = configure()
    started = time.perf_counter()
    with operation(label) as span:
        result = fn()
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    context = span.get_span_context()
    if not context.is_valid:     # telemetry disabled: only the wall time is known
        return result, RunMetrics(label, elapsed_ms, 0, 0.0), []
    trace = telemetry.span_store.by_trace(context.trace_id)
    root = next((s for s in trace if s.context is not None and s.context.span_id == context.span_id), None)
    if root is None:             # pushed out of the span store already (or sampled out)
        return result, RunMetrics(label, elapsed_ms, 0, 0.0), []
    below = descendants(trace, context.span_id)
    return result, RunMetrics(
        label=label, duration_ms=_duration_ms(root), queries=int(number(root, attr.QUERY_COUNT)),
        query_ms=number(root, attr.QUERY_DURATION_MS), operations=_per_operation(below)), [root] + below


def descendants(spans: list[ReadableSpan], root_span_id: int) -> list[ReadableSpan]:
    """The spans of ``spans`` below the span ``root_span_id`` (at any depth), in order."""
    parent_of = {s.context.span_id: (s.parent.span_id if s.parent is not None else None)
                 for s in spans if s.context is not None}
    below: dict[int, bool] = {root_span_id: True}

    def is_below(span_id: int | None) -> bool:
        chain = []
        while span_id is not None and span_id not in below:
            chain.append(span_id)
            span_id = parent_of.get(span_id)
        answer = span_id is not None and below[span_id]
        for seen in chain:
            below[seen] = answer
        return answer

    return [s for s in spans if s.context is not None and s.context.span_id != root_span_id
            and is_below(s.context.span_id)]


def _per_operation(spans: list[ReadableSpan]) -> tuple[OperationQueries, ...]:
    grouped: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        name = (span.attributes or {}).get(attr.OPERATION)
        if name is not None:
            grouped[str(name)].append(span)
    return tuple(
        OperationQueries(
            operation=name, count=len(group),
            queries_per_operation=sum(number(s, attr.QUERY_COUNT) for s in group) / len(group),
            ms_per_operation=sum(_duration_ms(s) for s in group) / len(group))
        for name, group in grouped.items())


def _duration_ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6
