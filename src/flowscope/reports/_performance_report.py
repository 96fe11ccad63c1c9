"""``PerformanceReport``: the typed report a :class:`Monitor` builds for one execution.

    >>> report = monitor.performance_report()
    >>> report.timing_analysis.slowest_operation
    >>> report.to_json()
    >>> monitor.export_performance_data(format="csv")

Sections follow the seed API: execution_summary, timing_analysis, memory_analysis,
database_analysis, bottleneck_analysis, optimization_recommendations; then slowest_traces,
this execution's slowest traces still in the span store, as waterfalls.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from ..analysis._recommendation import Recommendation
from ._traces import TraceView


@dataclass(frozen=True)
class OperationTiming:
    name: str
    count: int
    total_ms: float
    mean_ms: float
    max_ms: float
    queries: int
    errors: int


@dataclass(frozen=True)
class ExecutionSummary:
    execution_id: int | None
    workflow_class: str
    current_step: str
    status: str
    operations: int
    errors: int
    transitions: int | None      # None when the report was built after the session closed


@dataclass(frozen=True)
class TimingAnalysis:
    total_ms: float
    average_ms: float
    slowest_operation: str | None
    slowest_ms: float
    fastest_operation: str | None
    fastest_ms: float
    operations: tuple[OperationTiming, ...]


@dataclass(frozen=True)
class MemoryAnalysis:
    current_rss_bytes: int
    peak_rss_bytes: int            # highest RSS seen at the end of this execution's operations
    process_peak_rss_bytes: int    # the process high-water mark
    growth_bytes: int              # RSS after the last operation minus before the first


@dataclass(frozen=True)
class QueryHotspot:
    operation: str
    fingerprint: str
    executions: int
    total_ms: float
    max_in_one_operation: int


@dataclass(frozen=True)
class DatabaseAnalysis:
    total_queries: int
    total_query_ms: float
    queries_per_operation: dict[str, float]
    hotspots: tuple[QueryHotspot, ...]


@dataclass(frozen=True)
class Bottleneck:
    operation: str
    value: float
    unit: str


@dataclass(frozen=True)
class BottleneckAnalysis:
    time: tuple[Bottleneck, ...]
    memory: tuple[Bottleneck, ...]
    queries: tuple[Bottleneck, ...]


@dataclass(frozen=True)
class PerformanceReport:
    execution_summary: ExecutionSummary
    timing_analysis: TimingAnalysis
    memory_analysis: MemoryAnalysis
    database_analysis: DatabaseAnalysis
    bottleneck_analysis: BottleneckAnalysis
    optimization_recommendations: tuple[Recommendation, ...]
    slowest_traces: tuple[TraceView, ...] = ()   # this execution's, from the span store

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["optimization_recommendations"] = [r.to_dict() for r in self.optimization_recommendations]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_html(self) -> str:
        """A self-contained HTML page of every section."""
        from ._html import performance_report_html  # jinja2 only when a page is asked for

        return performance_report_html(self)

    def to_csv(self) -> str:
        """One row per operation name: the timing table, with the execution id on each row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["execution_id", "operation", "count", "total_ms", "mean_ms", "max_ms",
                         "queries", "errors"])
        for op in self.timing_analysis.operations:
            writer.writerow([self.execution_summary.execution_id, op.name, op.count,
                             f"{op.total_ms:.3f}", f"{op.mean_ms:.3f}", f"{op.max_ms:.3f}", op.queries, op.errors])
        return buffer.getvalue()
