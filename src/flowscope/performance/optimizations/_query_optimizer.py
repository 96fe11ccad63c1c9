"""``QueryOptimizer``: query findings from measured data, and fixes that really apply.

    >>> optimizer = QueryOptimizer(execution)            # or QueryOptimizer() for the whole process
    >>> report = optimizer.optimization_report(explain=True)
    >>> optimizer.enable_eager_loading(["OnboardingTask.assignee", "transitions", "workflowable"])
    >>> optimizer.enable_caching(["workflow_definition", "step_definitions", "available_actions"])
    >>> comparison = optimizer.optimize_queries_for_operation("sign_off", sign_off_in_a_new_session)
    >>> comparison.queries_before, comparison.queries_after
    (10, 3)

Data: with an execution, its operation spans in the span store (engine actions and
``Monitor`` operations); without, everything the aggregating processor has seen. Findings are
``analysis/_findings.py``'s rules (N+1, repeated and slow statements, many queries per
operation); ``missing_index`` needs the database and runs only with ``explain=True``.

Design decisions:
- Eager loading and caching are process-wide (every session; see ``_eager_loading`` and
  ``_caching``), because the code they fix opens its own sessions. Each optimizer removes
  only what it enabled (``disable_eager_loading``/``disable_caching``).
- ``optimize_queries_for_operation`` proves a fix by running the callable twice, before and
  after, each as one measured operation. The callable must set up its own state (e.g. a
  new ``Session``): a second run in a warm session would find rows in the identity map and
  look "optimized" with no fix at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import object_session

from ...analysis import _findings
from ...analysis._indexes import IndexAnalysis, find_missing_indexes
from ...analysis._recommendation import Recommendation, most_valuable_first
from ...analysis._sources import QueryData, execution_data, process_data, spans_data
from ...telemetry import configure
from ...workflows import WorkflowExecution
from . import _caching, _eager_loading
from ._measure import measure_spans
from ._query_report import (
    CachingOpportunity,
    EagerLoadingSuggestion,
    ExplainSummary,
    QueryComparison,
    QueryCounts,
    QueryOptimizationReport,
)

QUERY_KINDS = ("n_plus_one", "repeated_query", "slow_query", "missing_index", "high_query_count")


class QueryOptimizer:
    """Query findings and fixes for one execution, or (``None``) for the whole process."""

    def __init__(self, workflow_execution: WorkflowExecution | None = None, *, engine: Engine | None = None,
                 thresholds: _findings.Thresholds | None = None) -> None:
        if workflow_execution is not None and not isinstance(workflow_execution, WorkflowExecution):
            raise TypeError("QueryOptimizer needs a WorkflowExecution or None, "
                            f"got {type(workflow_execution).__name__}")
        self.execution = workflow_execution
        self.execution_id: int | None = None
        if workflow_execution is not None:
            identity = sa_inspect(workflow_execution).identity
            if identity is None:
                raise ValueError("QueryOptimizer needs a persisted execution (start_workflow() commits one)")
            self.execution_id = identity[0]
        self.engine = engine
        self.thresholds = thresholds or _findings.Thresholds()
        self.telemetry = configure()

    # -- findings -------------------------------------------------------------------------
    def data(self) -> QueryData:
        """The measurements this optimizer reads (see the module docstring)."""
        if self.execution_id is None:
            return process_data(self.telemetry)
        return execution_data(self.telemetry, self.execution_id)

    def recommendations(self, data: QueryData | None = None) -> list[Recommendation]:
        """N+1, repeated, slow statements, unused eager loads and operations with many queries;
        most valuable first."""
        data = data or self.data()
        statements = (_findings.query_findings(data.statements, self.thresholds)
                      + _findings.eager_load_findings(data.eager_loads, self.thresholds))
        operations = [r for r in _findings.operation_findings(data.operations, self.thresholds)
                      if r.kind == "high_query_count"]
        return most_valuable_first(statements + operations)

    def missing_indexes(self, engine: Engine | None = None, limit: int = 10,
                        data: QueryData | None = None) -> IndexAnalysis:
        """EXPLAIN the ``limit`` slowest filtering statements; ``missing_index`` findings."""
        return find_missing_indexes(engine or self._engine(), data or self.data(), self.thresholds, limit)

    def optimization_report(self, explain: bool = False, engine: Engine | None = None) -> QueryOptimizationReport:
        """The report (see :class:`QueryOptimizationReport`); ``explain=True`` asks the database
        for the plans of the slowest statements (``engine``, or the execution's session bind)."""
        data = self.data()
        findings = self.recommendations(data)
        indexes = IndexAnalysis()
        if explain:
            indexes = self.missing_indexes(engine, data=data)
            findings = most_valuable_first(findings + list(indexes.recommendations))
        enabled_paths = _eager_loading.enabled()
        return QueryOptimizationReport(
            current_queries=QueryCounts(
                total=data.total_queries, slow=_count(findings, "slow_query"),
                repeated=_count(findings, "repeated_query"), n_plus_one=_count(findings, "n_plus_one")),
            optimization_opportunities=tuple(findings),
            recommended_indexes=indexes.suggestions,
            caching_opportunities=tuple(
                CachingOpportunity(operation=r.operation, fingerprint=r.evidence.fingerprint or "",
                                   repeats=int(r.estimated_savings.queries) + 1, call_site=r.evidence.call_site,
                                   suggestion=r.suggestion)
                for r in findings if r.kind == "repeated_query"),
            eager_loading_suggestions=tuple(_eager_suggestions(findings, enabled_paths)),
            eager_loading_enabled=enabled_paths,
            caches=_caching.stats(),
            explain=ExplainSummary(explain, indexes.explained, indexes.failed, indexes.skipped))

    # -- fixes ----------------------------------------------------------------------------
    def enable_eager_loading(self, relationships: Iterable[str]) -> tuple[str, ...]:
        """Eager-load these relationships in every ORM query from now on (every session).

        Names: ``"transitions"`` (a WorkflowExecution relationship), ``"workflowable"``, or
        ``"Class.attribute"`` of any mapped class (chains like ``"Employee.tasks.assignee"``).
        Returns the canonical names; an unknown name raises ``UnknownRelationshipError`` and
        enables nothing.
        """
        return _eager_loading.enable(relationships, self)

    def disable_eager_loading(self) -> None:
        """Remove the eager loading this optimizer enabled."""
        _eager_loading.disable(self)

    @property
    def eager_loading(self) -> tuple[str, ...]:
        """What this optimizer has enabled."""
        return _eager_loading.enabled(self)

    def enable_caching(self, caches: Iterable[str] = _caching.CACHE_NAMES) -> tuple[str, ...]:
        """Install the engine caches named (``workflow_definition``, ``step_definitions``,
        ``available_actions``); see ``_caching`` for what each saves and how it is invalidated."""
        return _caching.enable(caches, self)

    def disable_caching(self) -> None:
        _caching.disable(self)

    def cache_stats(self) -> dict[str, _caching.CacheStats]:
        """Hits (work not done) and misses of every installed cache."""
        return _caching.stats()

    def optimize_queries_for_operation(self, name: str, fn: Callable[[], Any]) -> QueryComparison:
        """Run ``fn`` as operation ``name``, eager-load every relationship its N+1 findings name,
        run it again; return both measurements. The fixes stay enabled (``disable_eager_loading``).
        """
        _, before, spans_before = measure_spans(fn, name)
        findings_before = self.recommendations(spans_data(spans_before))
        relationships = list(dict.fromkeys(
            r.evidence.relationship for r in findings_before
            if r.kind == "n_plus_one" and r.evidence.relationship))
        applied = self.enable_eager_loading(relationships) if relationships else ()
        _, after, spans_after = measure_spans(fn, name)
        return QueryComparison(operation=name, before=before, after=after, applied=applied,
                               findings_before=tuple(findings_before),
                               findings_after=tuple(self.recommendations(spans_data(spans_after))))

    def _engine(self) -> Engine | None:
        if self.engine is not None:
            return self.engine
        if self.execution is None:
            return None
        session = object_session(self.execution)
        if session is None:
            return None
        bind = session.get_bind()
        return bind if isinstance(bind, Engine) else getattr(bind, "engine", None)


def _count(findings: list[Recommendation], kind: str) -> int:
    return sum(1 for r in findings if r.kind == kind)


def _eager_suggestions(findings: list[Recommendation], enabled: tuple[str, ...]) -> list[EagerLoadingSuggestion]:
    out = []
    for r in findings:
        relationship = r.evidence.relationship
        if r.kind != "n_plus_one" or not relationship:
            continue
        try:
            path = _eager_loading.resolve(relationship)
        except _eager_loading.UnknownRelationshipError:
            continue
        option = path if isinstance(path, str) else path.option_text
        out.append(EagerLoadingSuggestion(
            relationship=relationship, operation=r.operation, option=option,
            queries_saved_per_operation=r.estimated_savings.queries, call_site=r.evidence.call_site,
            enabled=relationship in enabled))
    return out
