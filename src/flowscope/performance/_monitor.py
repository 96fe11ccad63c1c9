"""``Monitor``: measure one workflow execution's operations and report on them.

    >>> monitor = Monitor(execution)
    >>> with monitor.monitor_operation("approve"):
    ...     execution.perform_action("approve", user="alice")
    >>> monitor.monitor_operation("reindex", reindex_documents, batch=50)   # callable form
    >>> op_id = monitor.start_operation("import"); ...; metrics = monitor.end_operation(op_id)
    >>> report = monitor.performance_report()

Every monitored operation is a :func:`flowscope.operation` span tagged with the execution's id;
so are the engine's own action spans once flowscope is configured. The report is built from
those spans in the local span store (this execution's only, never the whole process).
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import object_session

from ..analysis import _findings
from ..analysis._recommendation import most_valuable_first
from ..reports._performance_report import (
    Bottleneck,
    BottleneckAnalysis,
    DatabaseAnalysis,
    ExecutionSummary,
    MemoryAnalysis,
    OperationTiming,
    PerformanceReport,
    QueryHotspot,
    TimingAnalysis,
)
from ..reports._traces import slowest_traces
from ..telemetry import _attributes as attr
from ..telemetry import configure, frame_of, operation, operation_spans
from ..telemetry._probes import peak_rss_bytes, rss_bytes
from ..telemetry.sql._tallies import tallies_by_fingerprint
from ..workflows import WorkflowExecution, WorkflowTransition

T = TypeVar("T")


class UnknownOperationError(KeyError):
    """``end_operation`` got an id that ``start_operation`` did not return (or already ended)."""


@dataclass(frozen=True)
class OperationMetrics:
    """What one monitored operation measured."""

    name: str
    duration_ms: float
    query_count: int
    query_ms: float
    rss_delta_bytes: int
    peak_increase_bytes: int
    gc_collections: int
    error: str | None


class Monitor:
    """Monitor one :class:`~flowscope.workflows.WorkflowExecution` (see the module docstring)."""

    def __init__(self, workflow_execution: WorkflowExecution, thresholds: _findings.Thresholds | None = None) -> None:
        if not isinstance(workflow_execution, WorkflowExecution):
            raise TypeError(f"Monitor needs a WorkflowExecution, got {type(workflow_execution).__name__}")
        self.execution = workflow_execution
        self.thresholds = thresholds or _findings.Thresholds()
        self.telemetry = configure()
        identity = sa_inspect(workflow_execution).identity
        if identity is None:
            raise ValueError("Monitor needs a persisted execution (start_workflow() commits one)")
        self.execution_id: int = identity[0]
        self._workflow_class: str = workflow_execution.workflow_class
        self._open: dict[int, operation] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _attributes(self) -> dict[str, Any]:
        return {attr.EXECUTION_ID: self.execution_id, attr.WORKFLOW_CLASS: self._workflow_class}

    def monitor_operation(self, name: str, fn: Callable[..., T] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Context manager (``with monitor.monitor_operation(name):``), or with ``fn``: call it
        inside the operation and return its result."""
        op = operation(name, **self._attributes())
        if fn is None:
            return op
        with op:
            return fn(*args, **kwargs)

    def start_operation(self, name: str) -> int:
        """Open an operation that :meth:`end_operation` closes; returns its id."""
        op = operation(name, **self._attributes())
        op.__enter__()
        with self._lock:
            op_id = next(self._ids)
            self._open[op_id] = op
        return op_id

    def end_operation(self, operation_id: int, error: BaseException | None = None) -> OperationMetrics:
        """Close the operation; ``error`` (if given) is recorded on its span."""
        with self._lock:
            op = self._open.pop(operation_id, None)
        if op is None:
            raise UnknownOperationError(f"no open operation with id {operation_id}; "
                                        "use the id start_operation() returned, once")
        span_id = op._span.get_span_context().span_id
        op.__exit__(type(error) if error else None, error, None)
        for span in reversed(self.telemetry.span_store.spans()):
            if span.context is not None and span.context.span_id == span_id:
                return _metrics(span)
        return OperationMetrics(op.name, 0.0, 0, 0.0, 0, 0, 0, repr(error) if error else None)

    def spans(self) -> list[ReadableSpan]:
        """This execution's finished operation spans still in the span store, oldest first."""
        return operation_spans(self.telemetry.span_store.by_execution(self.execution_id))

    def performance_report(self) -> PerformanceReport:
        spans = self.spans()
        metrics = [_metrics(s) for s in spans]
        # Nested operations are inclusive: totals come from the outermost spans only.
        outermost = [_metrics(s) for s in _outermost(spans)]
        recommendations = most_valuable_first(
            _findings.query_findings(_findings.observations_from_spans(spans), self.thresholds)
            + _findings.eager_load_findings(_findings.eager_load_observations_from_spans(spans), self.thresholds)
            + _findings.operation_findings(_findings.operation_observations_from_spans(spans), self.thresholds))
        return PerformanceReport(
            execution_summary=self._summary(metrics),
            timing_analysis=_timing(metrics, outermost),
            memory_analysis=_memory(spans),
            database_analysis=_database(spans, metrics, outermost),
            bottleneck_analysis=_bottlenecks(metrics),
            optimization_recommendations=tuple(recommendations),
            slowest_traces=slowest_traces(self.telemetry.span_store, among=spans),
        )

    def export_performance_data(self, format: str = "json") -> str:  # noqa: A002 - seed API name
        """The report as ``json``, ``csv`` or ``html`` text."""
        report = self.performance_report()
        if format == "json":
            return report.to_json()
        if format == "csv":
            return report.to_csv()
        if format == "html":
            return report.to_html()
        raise ValueError(f"unknown export format {format!r}; use 'json', 'csv' or 'html'")

    def _summary(self, metrics: list[OperationMetrics]) -> ExecutionSummary:
        """Read fresh from the database when the execution still has a session (one row and a
        COUNT, never the whole history); from the last loaded state once it is detached."""
        execution = self.execution
        session = object_session(execution)
        if session is not None:
            current_step, status = execution.current_step, execution.status
            transitions: int | None = session.scalar(
                select(func.count()).where(WorkflowTransition.execution_id == self.execution_id))
        else:
            state = sa_inspect(execution).dict
            current_step, status, transitions = state.get("current_step", "?"), state.get("status", "?"), None
        return ExecutionSummary(
            execution_id=self.execution_id, workflow_class=self._workflow_class,
            current_step=current_step, status=status, operations=len(metrics),
            errors=sum(1 for m in metrics if m.error), transitions=transitions)


def _metrics(span: ReadableSpan) -> OperationMetrics:
    a = span.attributes or {}
    duration = (span.end_time - span.start_time) / 1e6 if span.end_time and span.start_time else 0.0
    error = span.status.description if span.status.status_code is StatusCode.ERROR else None
    return OperationMetrics(
        name=str(a.get(attr.OPERATION, span.name)), duration_ms=duration,
        query_count=int(a.get(attr.QUERY_COUNT, 0)), query_ms=float(a.get(attr.QUERY_DURATION_MS, 0.0)),
        rss_delta_bytes=int(a.get(attr.RSS_DELTA_BYTES, 0)),
        peak_increase_bytes=int(a.get(attr.PEAK_INCREASE_BYTES, 0)),
        gc_collections=int(a.get(attr.GC_COLLECTIONS, 0)), error=error or None)


def _outermost(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    ids = {s.context.span_id for s in spans if s.context is not None}
    return [s for s in spans if s.parent is None or s.parent.span_id not in ids]


def _timing(metrics: list[OperationMetrics], outermost: list[OperationMetrics]) -> TimingAnalysis:
    by_name: dict[str, list[OperationMetrics]] = defaultdict(list)
    for m in metrics:
        by_name[m.name].append(m)
    table = tuple(sorted((
        OperationTiming(name=name, count=len(ms), total_ms=sum(m.duration_ms for m in ms),
                        mean_ms=sum(m.duration_ms for m in ms) / len(ms), max_ms=max(m.duration_ms for m in ms),
                        queries=sum(m.query_count for m in ms), errors=sum(1 for m in ms if m.error))
        for name, ms in by_name.items()), key=lambda t: t.total_ms, reverse=True))
    total = sum(m.duration_ms for m in outermost)
    slowest = max(metrics, key=lambda m: m.duration_ms, default=None)
    fastest = min(metrics, key=lambda m: m.duration_ms, default=None)
    return TimingAnalysis(
        total_ms=total, average_ms=total / len(outermost) if outermost else 0.0,
        slowest_operation=slowest.name if slowest else None, slowest_ms=slowest.duration_ms if slowest else 0.0,
        fastest_operation=fastest.name if fastest else None, fastest_ms=fastest.duration_ms if fastest else 0.0,
        operations=table)


def _memory(spans: list[ReadableSpan]) -> MemoryAnalysis:
    rss_after = [int((s.attributes or {}).get(attr.RSS_BYTES, 0)) for s in spans]
    if spans:
        first = spans[0].attributes or {}
        before_first = int(first.get(attr.RSS_BYTES, 0)) - int(first.get(attr.RSS_DELTA_BYTES, 0))
        growth = rss_after[-1] - before_first
    else:
        growth = 0
    current, peak = rss_bytes(), max(rss_after, default=0)
    # The kernel's high-water mark and statm's RSS come from counters updated lazily and apart:
    # read together, the mark can trail the RSS by a few hundred KiB. It is at least any RSS seen.
    process_peak = max(peak_rss_bytes(), current, peak)
    return MemoryAnalysis(current_rss_bytes=current, peak_rss_bytes=peak,
                          process_peak_rss_bytes=process_peak, growth_bytes=growth)


def _database(spans: list[ReadableSpan], metrics: list[OperationMetrics],
              outermost: list[OperationMetrics]) -> DatabaseAnalysis:
    per_op: dict[str, list[int]] = defaultdict(list)
    for m in metrics:
        per_op[m.name].append(m.query_count)
    hotspots: dict[tuple[str, str], list[float]] = {}
    for span in spans:
        frame = frame_of(span)
        if frame is None:
            continue
        name = str((span.attributes or {}).get(attr.OPERATION, span.name))
        for key, tally in tallies_by_fingerprint(frame.statements).items():
            h = hotspots.setdefault((name, key), [0, 0.0, 0])
            h[0] += tally.count
            h[1] += tally.seconds * 1000.0
            h[2] = max(h[2], tally.count)
    ranked = sorted(hotspots.items(), key=lambda kv: kv[1][1], reverse=True)[:10]
    return DatabaseAnalysis(
        total_queries=sum(m.query_count for m in outermost),
        total_query_ms=sum(m.query_ms for m in outermost),
        queries_per_operation={name: sum(v) / len(v) for name, v in per_op.items()},
        hotspots=tuple(QueryHotspot(operation=op, fingerprint=fp, executions=int(v[0]), total_ms=v[1],
                                    max_in_one_operation=int(v[2])) for (op, fp), v in ranked))


def _bottlenecks(metrics: list[OperationMetrics], limit: int = 3) -> BottleneckAnalysis:
    def top(key: Callable[[OperationMetrics], float], unit: str) -> tuple[Bottleneck, ...]:
        ranked = sorted((m for m in metrics if key(m) > 0), key=key, reverse=True)[:limit]
        return tuple(Bottleneck(m.name, key(m), unit) for m in ranked)

    return BottleneckAnalysis(time=top(lambda m: m.duration_ms, "ms"),
                              memory=top(lambda m: m.rss_delta_bytes, "bytes"),
                              queries=top(lambda m: m.query_count, "queries"))
