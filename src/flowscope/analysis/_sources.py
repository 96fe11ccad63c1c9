"""Where an optimizer's measurements come from: one execution's spans, or the whole process.

    >>> data = execution_data(telemetry, execution_id=42)    # its spans in the span store
    >>> data = process_data(telemetry)                       # the aggregating processor
    >>> data.statements, data.operations, data.total_queries

Design decision: both sources are reduced to the observations of ``analysis/_findings.py``
(one rule set serves both), plus, per statement fingerprint, one *example statement*: the raw
SQL text as the driver received it (placeholders, never parameter values), which is what a
plan command can run. Examples come from the query tallies of spans still in the span store
and, for the whole process, from the aggregating processor (one per fingerprint, kept after
the spans left the store); they are used to EXPLAIN and never shown (a statement with literals inlined would show them;
reports show fingerprints only).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan

from ..telemetry import Telemetry, fingerprint, frame_of, operation_spans
from ..telemetry import _attributes as attr
from ..telemetry._frames import OTHER_STATEMENT
from . import _findings


@dataclass(frozen=True)
class QueryData:
    """Measured statements and operations, from one source."""

    statements: tuple[_findings.StatementObservation, ...]
    operations: tuple[_findings.OperationObservation, ...]
    total_queries: int
    examples: dict[str, str] = field(default_factory=dict, repr=False)   # fingerprint -> raw SQL
    eager_loads: tuple[_findings.EagerLoadObservation, ...] = ()
    spans: tuple[ReadableSpan, ...] = field(default=(), repr=False)       # execution source only


def execution_data(telemetry: Telemetry, execution_id: int) -> QueryData:
    """One execution's operation spans (engine actions and monitored operations)."""
    return spans_data(operation_spans(telemetry.span_store.by_execution(execution_id)))


def spans_data(spans: list[ReadableSpan]) -> QueryData:
    """Any list of operation spans (nested ones included; totals from the outermost)."""
    return QueryData(
        statements=tuple(_findings.observations_from_spans(spans)),
        operations=tuple(_findings.operation_observations_from_spans(spans)),
        total_queries=int(sum(number(s, attr.QUERY_COUNT) for s in outermost(spans))),
        examples=example_statements(spans), spans=tuple(spans),
        eager_loads=tuple(_findings.eager_load_observations_from_spans(spans)))


def process_data(telemetry: Telemetry) -> QueryData:
    """Everything the aggregating processor has seen. ``total_queries`` sums every operation,
    so queries of nested operations count once per level (the processor keeps no nesting)."""
    operations = telemetry.aggregator.operations()
    return QueryData(
        statements=tuple(_findings.observations_from_stats(operations)),
        operations=tuple(_findings.operation_observations_from_stats(operations)),
        total_queries=int(sum(op.query_count.total for op in operations)),
        examples={**telemetry.aggregator.example_statements(),
                  **example_statements(operation_spans(telemetry.span_store.spans()))},
        eager_loads=tuple(_findings.eager_load_observations_from_stats(operations)))


def example_statements(spans: Iterable[ReadableSpan]) -> dict[str, str]:
    """Fingerprint -> the first raw statement seen with it (most recent spans first)."""
    examples: dict[str, str] = {}
    for span in reversed(list(spans)):
        frame = frame_of(span)
        if frame is None:
            continue
        for statement in frame.statements:
            if statement != OTHER_STATEMENT:
                examples.setdefault(fingerprint(statement), statement)
    return examples


def number(span: ReadableSpan, key: str) -> float:
    """A numeric span attribute, 0 when absent (or not a number)."""
    value = (span.attributes or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def outermost(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    ids = {s.context.span_id for s in spans if s.context is not None}
    return [s for s in spans if s.parent is None or s.parent.span_id not in ids]
