"""The process-wide report: every operation the aggregating processor has seen.

    >>> report = process_report()                 # flowscope.configure()'s aggregator
    >>> report.bottlenecks.slowest[0].name
    >>> print(report.to_json())
    >>> Path("flowscope-report.html").write_text(report.to_html())

Where :class:`Monitor` reports on one execution from its spans, this reads the
:class:`~flowscope.telemetry.BottleneckSpanProcessor`'s statistics, so it covers everything
since the process started (or since ``aggregator.reset()``), in bounded memory. The slowest
traces come from the span store instead: recent spans only (see _traces).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..analysis import _findings
from ..analysis._recommendation import Recommendation, most_valuable_first
from ..telemetry import Bottlenecks, BottleneckSpanProcessor, OperationStats, SpanStore, configure, health
from ._traces import TraceView, slowest_traces


@dataclass(frozen=True)
class ProcessReport:
    operations: tuple[OperationStats, ...]       # slowest p95 first
    bottlenecks: Bottlenecks
    recommendations: tuple[Recommendation, ...]  # most valuable first
    overflow_operations: int
    telemetry_health: dict[str, Any]
    slowest_traces: tuple[TraceView, ...] = ()   # from the span store: recent spans only

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recommendations"] = [r.to_dict() for r in self.recommendations]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_html(self, limit: int = 50) -> str:
        """A self-contained HTML page: recommendations, bottlenecks, the ``limit`` slowest operations."""
        from ._html import process_report_html  # jinja2 only when a page is asked for

        return process_report_html(self, limit)


def process_report(aggregator: BottleneckSpanProcessor | None = None,
                   thresholds: _findings.Thresholds | None = None,
                   span_store: SpanStore | None = None) -> ProcessReport:
    """Build the report from ``aggregator`` and, for the slowest traces, ``span_store``
    (default for both: the ones :func:`flowscope.configure` set up; with an aggregator given
    and no store, the report has no traces)."""
    if aggregator is None:
        telemetry = configure()
        aggregator, span_store = telemetry.aggregator, span_store or telemetry.span_store
    thresholds = thresholds or _findings.Thresholds()
    operations = sorted(aggregator.operations(), key=lambda o: o.duration_ms.p95, reverse=True)
    recommendations = most_valuable_first(
        _findings.query_findings(_findings.observations_from_stats(operations), thresholds)
        + _findings.operation_findings(_findings.operation_observations_from_stats(operations), thresholds))
    return ProcessReport(
        operations=tuple(operations),
        bottlenecks=aggregator.bottlenecks(n_plus_one_threshold=thresholds.n_plus_one),
        recommendations=tuple(recommendations),
        overflow_operations=aggregator.overflow_operations,
        telemetry_health=health.snapshot(),
        slowest_traces=slowest_traces(span_store) if span_store is not None else (),
    )
