"""Findings from measured data: the rules that turn spans and statistics into recommendations.

Every rule reads measurements (query tallies of real spans, aggregated statistics) and fires
only when a threshold is crossed; thresholds are data (:class:`Thresholds`), not constants
buried in code.

Design decision: statements are observed per operation span (``StatementObservation``), from
either source: the span store (one execution's spans, exact) or the aggregating processor
(the whole process, worst span per fingerprint). One set of rules then serves both. Nested
operations count inclusively, so a pattern inside a child is also inside its parent; per
fingerprint the enclosing operations (``enclosing``, from the frames' parent chain) leave it
to the innermost, while unrelated operations each report their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from opentelemetry.sdk.trace import ReadableSpan

from ..telemetry import OperationStats, frame_of
from ..telemetry import _attributes as attr
from ..telemetry._frames import OperationFrame
from ..telemetry.sql._tallies import is_per_row_read, is_per_row_write, tallies_by_fingerprint
from ..telemetry.sql._text import is_write_statement
from ._recommendation import Evidence, Recommendation, Savings
from ._severity import severity


@dataclass(frozen=True)
class Thresholds:
    """When a measurement becomes a finding; ``per_operation`` overrides them for some operations.

        >>> Thresholds(per_operation={"GET /api/reports/*": Thresholds(slow_operation_ms=2000)})

    ``per_operation`` maps operation-name globs (``fnmatch``, case-sensitive) to the thresholds
    of the operations they match; the first matching glob wins, and the rest use these.
    """

    n_plus_one: int = 5                 # same SELECT, different parameters, in one span
    write_loop: int = 5                 # same INSERT/UPDATE/DELETE, one row each, in one span
    repeated_query: int = 3             # same statement, same parameters, in one span
    slow_query_ms: float = 100.0        # one statement's mean time
    high_query_count: int = 50          # queries in one operation
    slow_operation_ms: float = 250.0    # one operation's duration (p95 for statistics)
    memory_growth_bytes: int = 20 * 1024 * 1024   # RSS growth in one operation (or across an execution's)
    unused_eager_load_rows: int = 25    # unread eagerly loaded rows: medium from 2x, high from 4x
    # optimizations/ (QueryOptimizer, MemoryOptimizer): see docs/recommendations.md
    missing_index_min_rows: int = 1000            # a full scan of a smaller table is the right plan
    large_context_bytes: int = 64 * 1024          # an execution's context_data, as stored JSON
    history_length: int = 200                     # transitions of one execution
    memory_trend_operations: int = 3              # operations needed to call RSS growth a trend
    per_operation: Mapping[str, Thresholds] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for glob, thresholds in self.per_operation.items():
            if not isinstance(glob, str) or not isinstance(thresholds, Thresholds):
                raise TypeError(f"Thresholds.per_operation maps operation-name globs (str) to Thresholds; "
                                f"got {glob!r}: {type(thresholds).__name__}")

    def for_operation(self, operation: str) -> Thresholds:
        """The thresholds that apply to ``operation``."""
        for glob, thresholds in self.per_operation.items():
            if fnmatchcase(operation, glob):
                return thresholds
        return self


@dataclass(frozen=True)
class StatementObservation:
    """One statement fingerprint inside one operation span (the worst span seen)."""

    operation: str
    fingerprint: str
    executions: int
    distinct_parameter_sets: int
    most_identical: int
    total_ms: float
    span_query_count: int
    spans: int = 1
    trace_id: str = ""
    span_id: str = ""
    relationship: str | None = None
    call_site: str | None = None
    enclosing: tuple[str, ...] = ()     # the operations the observed spans ran inside (nesting)
    loader_executions: int = 0          # executions run by the relationship's lazy loader
    values_per_execution: float = 1.0   # rows or values one execution handles (> 1: a batch)
    from_flush: bool = False            # run by the ORM's unit of work


def observations_from_spans(spans: Iterable[ReadableSpan]) -> list[StatementObservation]:
    worst: dict[tuple[str, str], StatementObservation] = {}
    for span in spans:
        frame = frame_of(span)
        attributes = span.attributes or {}
        operation = attributes.get(attr.OPERATION)
        if frame is None or operation is None:
            continue
        context = span.context
        trace_id = f"{context.trace_id:032x}" if context else ""
        span_id = f"{context.span_id:016x}" if context else ""
        for obs in observations_from_frame(str(operation), frame, trace_id, span_id):
            key = (obs.operation, obs.fingerprint)
            seen = worst.get(key)
            if seen is None or obs.executions > seen.executions:
                worst[key] = obs if seen is None else _with_spans(obs, seen.spans + 1)
            else:
                worst[key] = _with_spans(seen, seen.spans + 1)
    return list(worst.values())


def observations_from_frame(operation: str, frame: OperationFrame, trace_id: str = "",
                            span_id: str = "") -> list[StatementObservation]:
    """One operation's statements, from its query frame (open or closed): what the rules read
    about one span, e.g. a test's, before the span has reached any processor."""
    return [StatementObservation(
        operation=operation, fingerprint=key, executions=tally.count,
        distinct_parameter_sets=tally.distinct_parameter_sets, most_identical=tally.most_identical,
        total_ms=tally.seconds * 1000.0, span_query_count=frame.query_count, trace_id=trace_id, span_id=span_id,
        relationship=tally.relationship, call_site=tally.call_site,
        enclosing=frame.enclosing_names() if frame.parent is not None else (),
        loader_executions=tally.loader_count, values_per_execution=tally.values_per_execution,
        from_flush=tally.from_flush)
        for key, tally in tallies_by_fingerprint(frame.statements).items()]


def observations_from_stats(operations: Iterable[OperationStats]) -> list[StatementObservation]:
    return [
        StatementObservation(
            operation=op.name, fingerprint=fp.fingerprint, executions=fp.max_repeats_in_span,
            distinct_parameter_sets=fp.max_distinct_parameters_in_span,
            most_identical=fp.max_identical_in_span,
            total_ms=fp.total_ms / max(fp.spans, 1),  # mean per span
            span_query_count=int(op.query_count.mean), spans=fp.spans,
            trace_id=fp.example_trace_id, span_id=fp.example_span_id,
            relationship=fp.relationship, call_site=fp.call_site, enclosing=fp.enclosing,
            loader_executions=fp.max_loader_in_span, values_per_execution=fp.values_per_execution,
            from_flush=fp.from_flush)
        for op in operations for fp in op.fingerprints
    ]


def frame_findings(operation: str, frame: OperationFrame, thresholds: Thresholds) -> list[Recommendation]:
    """The query findings of one operation's frame (a test's, say) and, once it has ended as an
    outermost operation, its unused eager loads."""
    return (query_findings(observations_from_frame(operation, frame), thresholds)
            + eager_load_findings(eager_load_observations_from_frame(frame, operation=operation), thresholds))


def _with_spans(obs: StatementObservation, spans: int) -> StatementObservation:
    return replace(obs, spans=spans)


def query_findings(observations: Iterable[StatementObservation], thresholds: Thresholds) -> list[Recommendation]:
    """N+1 patterns, repeated identical queries and slow statements, each operation its own.

    Counts are inclusive, so a pattern inside a nested operation is also in every operation
    around it: per (kind, fingerprint), an operation is left out when another operation with
    the same finding ran inside it (the innermost owns it). Unrelated operations with the same
    statement each keep their finding (two endpoints with one N+1 are two findings).
    """
    found: dict[tuple[str, str], list[tuple[StatementObservation, Recommendation]]] = {}
    for obs in observations:
        for rec in _statement_rules(obs, thresholds):
            found.setdefault((rec.kind, obs.fingerprint), []).append((obs, rec))
    kept: list[Recommendation] = []
    for group in found.values():
        inner = {name for obs, _ in group for name in obs.enclosing}
        kept.extend(rec for obs, rec in group if obs.operation not in inner)
    return kept


def _statement_rules(obs: StatementObservation, thresholds: Thresholds) -> list[Recommendation]:
    t = thresholds.for_operation(obs.operation)
    out: list[Recommendation] = []
    evidence = dict(fingerprint=obs.fingerprint, executions=obs.executions,
                    distinct_parameter_sets=obs.distinct_parameter_sets, spans=obs.spans,
                    total_ms=round(obs.total_ms, 3), trace_id=obs.trace_id or None,
                    span_id=obs.span_id or None, relationship=obs.relationship, call_site=obs.call_site)
    per_query_ms = obs.total_ms / max(obs.executions, 1)
    where = f" at {obs.call_site}" if obs.call_site else ""
    n_plus_one = _n_plus_one(obs, t, evidence, per_query_ms, where)
    if n_plus_one is not None:
        out.append(n_plus_one)
    if (obs.executions >= t.write_loop and obs.distinct_parameter_sets >= t.write_loop
            and is_per_row_write(obs.fingerprint, obs.values_per_execution, obs.from_flush)):
        verb = obs.fingerprint.lstrip("( ").split(" ", 1)[0].upper()
        bulk = ("session.execute(insert(Model), rows)" if verb == "INSERT" else
                f"one set-based {verb} (WHERE id IN (...)), or session.execute({verb.lower()}(Model), rows)")
        out.append(Recommendation(
            kind="write_loop", severity=severity(obs.distinct_parameter_sets, t.write_loop),
            operation=obs.operation,
            message=(f"Write loop in {obs.operation}: one {verb} per row, {obs.executions} in a single "
                     f"operation with {obs.distinct_parameter_sets} different parameter sets{where}"),
            suggestion=(f"Write the rows in one round trip: {bulk} (an executemany), or "
                        f"connection.execute(statement, list_of_parameter_dicts)."),
            evidence=Evidence(**evidence),
            estimated_savings=Savings(queries=obs.executions - 1,
                                      milliseconds=round(per_query_ms * (obs.executions - 1), 3))))
    if obs.most_identical >= t.repeated_query:
        out.append(Recommendation(
            kind="repeated_query", severity=severity(obs.most_identical, t.repeated_query),
            operation=obs.operation,
            message=(f"Repeated identical query in {obs.operation}: the same statement with the same "
                     f"parameters ran {obs.most_identical} times in one operation{where}"),
            suggestion=("Run it once and reuse the result (hoist it out of the loop, or cache it for "
                        "the operation, e.g. QueryOptimizer.enable_caching())."),
            evidence=Evidence(**evidence),
            estimated_savings=Savings(queries=obs.most_identical - 1,
                                      milliseconds=round(per_query_ms * (obs.most_identical - 1), 3))))
    if per_query_ms >= t.slow_query_ms:
        out.append(Recommendation(
            kind="slow_query", severity=severity(per_query_ms, t.slow_query_ms), operation=obs.operation,
            message=f"Slow query in {obs.operation}: {per_query_ms:.1f} ms per execution{where}",
            suggestion=("Check its plan (QueryOptimizer.optimization_report(explain=True)) for a full "
                        "scan that an index would avoid."),
            evidence=Evidence(**evidence, value=round(per_query_ms, 3), unit="ms", threshold=t.slow_query_ms),
            estimated_savings=Savings(milliseconds=round(per_query_ms / 2, 3))))
    return out


def _n_plus_one(obs: StatementObservation, t: Thresholds, evidence: dict, per_query_ms: float,
                where: str) -> Recommendation | None:
    """One lookup per row: a per-row SELECT (not a batch, not a page walk) repeated with other
    parameters. With a relationship named, only the executions its lazy loader ran count (the
    same SQL run by ``session.get`` elsewhere in the operation is not its N+1)."""
    if not is_per_row_read(obs.fingerprint, obs.values_per_execution, obs.relationship):
        return None
    executions, distinct = obs.executions, obs.distinct_parameter_sets
    relationship = obs.relationship
    if relationship is not None:
        others = executions - obs.loader_executions
        executions = obs.loader_executions
        distinct = min(executions, max(0, distinct - others))   # at least this many were the loader's
        if executions < t.n_plus_one or distinct < t.n_plus_one:
            relationship = None                     # the loader alone is no N+1: judge the statement
            executions, distinct = obs.executions, obs.distinct_parameter_sets
    if executions < t.n_plus_one or distinct < t.n_plus_one:
        return None
    if relationship:
        cause = f"lazy loads of {relationship}"
        suggestion = (f"Eager-load the relationship: .options(selectinload({relationship})) on the "
                      f"query that loads the parent rows (or QueryOptimizer.enable_eager_loading).")
    else:
        cause = "one statement"
        suggestion = ("Load these rows in one query: fetch them with one WHERE ... IN (...) query "
                      "before the loop, or eager-load the relationship the loop touches.")
    others = obs.executions - executions
    also = f" (and {others} more of the same SQL run otherwise)" if others else ""
    return Recommendation(
        kind="n_plus_one", severity=severity(distinct, t.n_plus_one), operation=obs.operation,
        message=(f"N+1 query pattern in {obs.operation}: {cause} ran {executions} queries in a "
                 f"single operation with {distinct} different parameter sets{where}{also}"),
        suggestion=suggestion,
        evidence=Evidence(**{**evidence, "executions": executions, "distinct_parameter_sets": distinct,
                             "relationship": relationship}),
        estimated_savings=Savings(queries=distinct - 1, milliseconds=round(per_query_ms * (distinct - 1), 3)))


@dataclass(frozen=True)
class EagerLoadObservation:
    """One relationship an operation loaded eagerly (the eager-load audit's verdicts, see
    telemetry/sql/_eager_audit.py), over the spans observed."""

    operation: str
    relationship: str
    spans: int
    unused_spans: int
    parents: int              # most instances it was loaded for in one span
    objects: int              # most related objects it loaded in one span
    queries: int              # most extra SELECTs in one span (0: a JOIN)
    call_site: str | None = None
    trace_id: str = ""
    span_id: str = ""


def eager_load_observations_from_spans(spans: Iterable[ReadableSpan]) -> list[EagerLoadObservation]:
    """Verdicts ride on the frames of outermost operations (each trace judged as a whole)."""
    merged: dict[tuple[str, str], EagerLoadObservation] = {}
    for span in spans:
        frame = frame_of(span)
        if frame is None or frame.parent is not None or frame.eager_audit is None:
            continue
        context = span.context
        ids = dict(trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}") if context else {}
        for obs in eager_load_observations_from_frame(frame, **ids):
            key = (obs.operation, obs.relationship)
            seen = merged.get(key)
            merged[key] = obs if seen is None else _merged_eager(seen, obs)
    return list(merged.values())


def eager_load_observations_from_frame(frame: OperationFrame, trace_id: str = "", span_id: str = "",
                                       operation: str | None = None) -> list[EagerLoadObservation]:
    """The verdicts of one ended outermost operation's frame (none while it is open), each under
    the operation that loaded it, or all under ``operation`` (a test's, say)."""
    audit = frame.eager_audit
    if audit is None:
        return []
    return [EagerLoadObservation(operation=operation or v.operation, relationship=v.relationship, spans=1,
                                 unused_spans=0 if v.used else 1, parents=v.parents, objects=v.objects,
                                 queries=v.queries, call_site=v.call_site, trace_id=trace_id, span_id=span_id)
            for v in audit.verdicts]


def _merged_eager(a: EagerLoadObservation, b: EagerLoadObservation) -> EagerLoadObservation:
    example = b if b.unused_spans and not a.unused_spans else a
    return replace(example, spans=a.spans + b.spans, unused_spans=a.unused_spans + b.unused_spans,
                   parents=max(a.parents, b.parents), objects=max(a.objects, b.objects),
                   queries=max(a.queries, b.queries), call_site=a.call_site or b.call_site)


def eager_load_observations_from_stats(operations: Iterable[OperationStats]) -> list[EagerLoadObservation]:
    return [EagerLoadObservation(operation=op.name, relationship=e.relationship, spans=e.spans,
                                 unused_spans=e.unused_spans, parents=e.max_parents, objects=e.max_objects,
                                 queries=e.max_queries, call_site=e.call_site,
                                 trace_id=e.example_trace_id, span_id=e.example_span_id)
            for op in operations for e in op.eager_loads]


def eager_load_findings(observations: Iterable[EagerLoadObservation], thresholds: Thresholds) -> list[Recommendation]:
    """Unused eager loads: a relationship an operation loaded eagerly and that no code of its
    trace read, in every span observed (read in one span, it is needed: not a finding)."""
    out = []
    for obs in observations:
        if obs.unused_spans < obs.spans or not (obs.objects or obs.queries):
            continue
        t = thresholds.for_operation(obs.operation)
        where = f" by the query at {obs.call_site}" if obs.call_site else ""
        loader = ("selectinload" if obs.queries else "joinedload")
        cost = (f"{obs.queries} extra {'query' if obs.queries == 1 else 'queries'} and "
                if obs.queries else "a JOIN and ")
        out.append(Recommendation(
            kind="unused_eager_load", severity=severity(obs.objects, t.unused_eager_load_rows),
            operation=obs.operation,
            message=(f"Unused eager load in {obs.operation}: {obs.relationship} was loaded{where} for "
                     f"{obs.parents} rows ({cost}{obs.objects} related rows) and never read"),
            suggestion=(f"Drop {loader}({obs.relationship}) from that query's options (or the "
                        f"relationship's lazy=\"{'selectin' if obs.queries else 'joined'}\" default): "
                        f"nothing in the operation reads it."),
            evidence=Evidence(executions=obs.queries, spans=obs.spans, value=obs.objects, unit="rows",
                              relationship=obs.relationship, call_site=obs.call_site,
                              trace_id=obs.trace_id or None, span_id=obs.span_id or None),
            estimated_savings=Savings(queries=obs.queries)))
    return out


@dataclass(frozen=True)
class OperationObservation:
    operation: str
    duration_ms: float
    query_count: float
    rss_delta_bytes: float
    count: int = 1
    trace_id: str = ""
    span_id: str = ""
    query_ms: float | None = None       # time in the database (None: not known)
    write_share: float = 0.0            # the share of its statements that are INSERT/UPDATE/DELETE
    own_query_count: float | None = None   # not run by its nested operations (None: all of them)


def _write_share(executions: Iterable[tuple[str, int]]) -> float:
    total = writes = 0
    for fingerprinted, count in executions:
        total += count
        if is_write_statement(fingerprinted):
            writes += count
    return writes / total if total else 0.0


def operation_observations_from_spans(spans: Iterable[ReadableSpan]) -> list[OperationObservation]:
    out = []
    for span in spans:
        a = span.attributes or {}
        if attr.OPERATION not in a or span.end_time is None or span.start_time is None:
            continue
        c = span.context
        frame = frame_of(span)
        share = _write_share((s, t.count) for s, t in frame.statements.items()) if frame is not None else 0.0
        own = frame.query_count - frame.nested_query_count if frame is not None and frame.nested_query_count else None
        out.append(OperationObservation(
            operation=str(a[attr.OPERATION]), duration_ms=(span.end_time - span.start_time) / 1e6,
            query_count=float(a.get(attr.QUERY_COUNT, 0)), rss_delta_bytes=float(a.get(attr.RSS_DELTA_BYTES, 0)),
            trace_id=f"{c.trace_id:032x}" if c else "", span_id=f"{c.span_id:016x}" if c else "",
            query_ms=float(a[attr.QUERY_DURATION_MS]) if attr.QUERY_DURATION_MS in a else None,
            write_share=share, own_query_count=own))
    return out


def operation_observations_from_stats(operations: Iterable[OperationStats]) -> list[OperationObservation]:
    return [OperationObservation(operation=op.name, duration_ms=op.duration_ms.p95,
                                 query_count=op.query_count.mean, rss_delta_bytes=op.rss_delta_bytes.maximum,
                                 count=op.count, query_ms=op.query_ms.mean * op.duration_ms.p95 / max(
                                     op.duration_ms.mean, 1e-9),
                                 write_share=_write_share((f.fingerprint, f.executions) for f in op.fingerprints),
                                 own_query_count=_own_mean(op))
            for op in operations]


def _own_mean(op: OperationStats) -> float | None:
    own = op.own_query_count
    return own.mean if own is not None and own.mean < op.query_count.mean else None


# Below this share of its time in the database, a slow operation is the application's own work.
DATABASE_BOUND_SHARE = 0.2


def operation_findings(observations: Iterable[OperationObservation], thresholds: Thresholds) -> list[Recommendation]:
    """Slow operations, operations with many queries, operations that grow memory (worst of each)."""
    worst: dict[tuple[str, str], tuple[float, Recommendation]] = {}

    def keep(kind: str, op: OperationObservation, measured: float, rec: Recommendation) -> None:
        key = (kind, op.operation)
        if key not in worst or measured > worst[key][0]:
            worst[key] = (measured, rec)

    for op in observations:
        t = thresholds.for_operation(op.operation)
        ids = dict(trace_id=op.trace_id or None, span_id=op.span_id or None)
        if op.duration_ms >= t.slow_operation_ms:
            database_share = (op.query_ms / op.duration_ms) if op.query_ms is not None and op.duration_ms else None
            if database_share is not None and database_share < DATABASE_BOUND_SHARE:
                where = (f"{op.query_ms:.1f} ms of it in {op.query_count:.0f} queries: the rest is the "
                         f"application's own work (CPU, waits, calls to other services)")
                suggestion = ("Profile the code (cProfile, py-spy) for the hot path; the database is not "
                              "where the time goes, so query fixes will not help much.")
            else:
                where = (f"{op.query_ms:.1f} ms of it in {op.query_count:.0f} queries" if op.query_ms is not None
                         else "")
                suggestion = ("Check its query findings (N+1 patterns, slow queries, missing indexes) and "
                              "move slow work out of the request path.")
            keep("slow_operation", op, op.duration_ms, Recommendation(
                kind="slow_operation", severity=severity(op.duration_ms, t.slow_operation_ms),
                operation=op.operation,
                message=f"Slow operation {op.operation}: {op.duration_ms:.1f} ms" + (f" ({where})" if where else ""),
                suggestion=suggestion,
                evidence=Evidence(value=round(op.duration_ms, 3), unit="ms", threshold=t.slow_operation_ms,
                                  spans=op.count, **ids)))
        # An enclosing operation is judged on the queries it ran itself: its nested operations'
        # are theirs (a test's requests, a check scenario's operations).
        queries = op.query_count if op.own_query_count is None else op.own_query_count
        if queries >= t.high_query_count:
            own = (f" of its own ({op.query_count:.0f} with its nested operations)"
                   if op.own_query_count is not None else "")
            if op.write_share >= 0.5:
                mix = f"{op.write_share:.0%} of them INSERT/UPDATE/DELETE"
                suggestion = ("Batch the writes: one executemany (session.execute(insert(Model), rows)) "
                              "instead of a statement per row; in test fixtures, build the rows once per "
                              "module or session.")
            else:
                mix = "mostly reads"
                suggestion = "Batch them: eager-load relationships and replace per-row queries with set-based ones."
            keep("high_query_count", op, queries, Recommendation(
                kind="high_query_count", severity=severity(queries, t.high_query_count),
                operation=op.operation,
                message=f"{op.operation} runs {queries:.0f} queries{own} ({mix})",
                suggestion=suggestion,
                evidence=Evidence(value=queries, unit="queries", threshold=t.high_query_count,
                                  spans=op.count, **ids),
                estimated_savings=Savings(queries=int(queries - t.high_query_count))))
        if op.rss_delta_bytes >= t.memory_growth_bytes:
            keep("memory_growth", op, op.rss_delta_bytes, Recommendation(
                kind="memory_growth", severity=severity(op.rss_delta_bytes, t.memory_growth_bytes),
                operation=op.operation,
                message=f"{op.operation} grew resident memory by {op.rss_delta_bytes / 1048576:.1f} MiB",
                suggestion=("Stream or batch large data instead of holding it, and keep large values out "
                            "of the workflow context (MemoryOptimizer.optimize_memory_usage())."),
                evidence=Evidence(value=op.rss_delta_bytes, unit="bytes", threshold=t.memory_growth_bytes,
                                  spans=op.count, **ids)))
    return [rec for _, rec in worst.values()]

