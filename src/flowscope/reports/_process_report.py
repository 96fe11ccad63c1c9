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
from ..telemetry import Bottlenecks, BottleneckSpanProcessor, OperationStats, SpanStore, configure, fingerprint, health
from ..telemetry._frames import unmeasured
from ._traces import TraceView, slowest_traces


@dataclass(frozen=True)
class UnmeasuredStatement:
    fingerprint: str
    count: int
    call_site: str | None


@dataclass(frozen=True)
class Unmeasured:
    """Queries that ran outside any operation: nothing attributes them, so no rule sees them."""

    queries: int = 0
    statements: tuple[UnmeasuredStatement, ...] = ()   # the most frequent first (at most 5)


@dataclass(frozen=True)
class ProcessReport:
    operations: tuple[OperationStats, ...]       # slowest p95 first
    bottlenecks: Bottlenecks
    recommendations: tuple[Recommendation, ...]  # most valuable first
    overflow_operations: int
    telemetry_health: dict[str, Any]
    slowest_traces: tuple[TraceView, ...] = ()   # from the span store: recent spans only
    unmeasured: Unmeasured = Unmeasured()

    @property
    def measured_queries(self) -> int:
        """Queries counted in operations (outermost and nested alike, so an upper bound)."""
        return int(sum(op.query_count.total for op in self.operations))

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
        + _findings.eager_load_findings(_findings.eager_load_observations_from_stats(operations), thresholds)
        + _findings.operation_findings(_findings.operation_observations_from_stats(operations), thresholds))
    return ProcessReport(
        operations=tuple(operations),
        bottlenecks=aggregator.bottlenecks(n_plus_one_threshold=thresholds.n_plus_one),
        recommendations=tuple(recommendations),
        overflow_operations=aggregator.overflow_operations,
        telemetry_health=health.snapshot(),
        slowest_traces=slowest_traces(span_store) if span_store is not None else (),
        unmeasured=_unmeasured(),
    )


def _unmeasured(top: int = 5) -> Unmeasured:
    by_fingerprint: dict[str, list[Any]] = {}
    for statement, (count, call_site) in list(unmeasured.statements.items()):
        entry = by_fingerprint.setdefault(fingerprint(statement), [0, call_site])
        entry[0] += count
        entry[1] = entry[1] or call_site
    ranked = sorted(by_fingerprint.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    return Unmeasured(unmeasured.count, tuple(UnmeasuredStatement(fp, n, site) for fp, (n, site) in ranked))
