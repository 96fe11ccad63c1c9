"""``PerformanceOptimizer``: every finding together, and fixes proven by measuring again.

    >>> optimizer = PerformanceOptimizer(execution)      # or PerformanceOptimizer() for the process
    >>> for rec in optimizer.recommendations():
    ...     print(rec.kind, rec.severity, rec.message, rec.suggestion)
    >>> result = optimizer.auto_optimize(representative_operation=run_one_onboarding)
    >>> [f.target for f in result.applied], result.queries_per_operation("EmployeeOnboarding.complete_orientation")
    (['OnboardingTask.assignee'], (15.6, 8.0))
    >>> optimizer.revert()                               # eager loading and caches off again

Design decisions:
- ``auto_optimize`` applies only what a current finding justifies, and exactly that: the
  relationship an N+1 finding names is eager-loaded (nothing else is), the execution is
  compacted only when ``large_context`` or ``history_growth`` fired. Findings with no safe
  automatic fix (an N+1 of Core statements, repeated or slow queries, slow operations) are
  listed in ``not_applied`` with the reason; a missing index is DDL for a human to review.
- ``optimize_performance`` applies the full set: eager loading for every N+1 relationship,
  the three engine caches, and the memory policy, whatever the thresholds say.
- The effect is always measured, never estimated: the representative operation runs once
  before and once after the fixes (:func:`_measure.measure`). It must do the same work from
  a cold start each time (the demo's ``representative_operation`` seeds new records and uses
  new sessions). The caller supplies it (the library knows no workflow of its own): without
  one, ``optimize_performance`` refuses and ``auto_optimize`` applies its fixes and reports
  that nothing was measured.
- Fixes stay on after the call (that is the point); ``revert()`` turns off the eager loading
  and caches this optimizer enabled, ``memory.restore()`` undoes a compaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ...analysis import _findings
from ...analysis._recommendation import Recommendation, most_valuable_first
from ...workflows import WorkflowExecution
from ._caching import CACHE_NAMES
from ._compaction import MemoryOptimizationResult, MemoryPolicy
from ._measure import RunMetrics, measure
from ._memory_optimizer import MemoryOptimizer
from ._optimization_result import AppliedFix, NotApplied, OptimizationResult
from ._query_optimizer import QueryOptimizer

_NO_AUTOMATIC_FIX = {
    "repeated_query": "the result must be reused by the code that runs it (hoist it out of the loop or cache it)",
    "slow_query": "needs its plan checked: run QueryOptimizer.optimization_report(explain=True)",
    "missing_index": "an index is a schema change for a migration, never created automatically",
    "slow_operation": "no automatic fix; profile the operation",
    "memory_growth": "no automatic fix; find what keeps memory alive between operations",
}


class PerformanceOptimizer:
    """Query, memory and timing findings and fixes for one execution, or (``None``) the process."""

    def __init__(self, workflow_execution: WorkflowExecution | None = None, *,
                 thresholds: _findings.Thresholds | None = None, policy: MemoryPolicy | None = None,
                 engine: Any = None) -> None:
        self.thresholds = thresholds or _findings.Thresholds()
        self.execution = workflow_execution
        self.queries = QueryOptimizer(workflow_execution, engine=engine, thresholds=self.thresholds)
        self.memory = (MemoryOptimizer(workflow_execution, policy, self.thresholds)
                       if workflow_execution is not None else None)

    def recommendations(self) -> list[Recommendation]:
        """Query, timing and memory findings together, most valuable first."""
        data = self.queries.data()
        found = (_findings.query_findings(data.statements, self.thresholds)
                 + _findings.eager_load_findings(data.eager_loads, self.thresholds)
                 + _findings.operation_findings(data.operations, self.thresholds))
        if self.memory is not None:
            found += self.memory.generate_memory_recommendations()
        return most_valuable_first(found)

    def optimize_performance(self, representative_operation: Callable[[], Any] | None = None) -> OptimizationResult:
        """Apply the query and memory optimizations; measure ``representative_operation`` before and after."""
        operation = representative_operation
        if operation is None:
            raise ValueError("optimize_performance needs a representative_operation to measure (a callable that "
                             "does the same work from a cold start each time, e.g. one workflow in a new Session)")
        findings = self.recommendations()
        _, before = measure(operation, "flowscope.optimize.before")
        applied = self._eager_load(findings)
        enabled = self.queries.enable_caching(CACHE_NAMES)
        applied += [AppliedFix("caching", name, "engine cache installed", "requested") for name in enabled]
        memory_result = None
        if self.memory is not None:
            fix, memory_result = self._compact(self.memory.policy, "requested")
            if fix is not None:
                applied.append(fix)
        _, after = measure(operation, "flowscope.optimize.after")
        return OptimizationResult(tuple(applied), (), tuple(findings), before, after, memory_result)

    def auto_optimize(self, representative_operation: Callable[[], Any] | None = None) -> OptimizationResult:
        """Apply only what the current findings justify; measure the effect (see the module docstring)."""
        findings = self.recommendations()
        not_applied = [NotApplied(r.kind, r.operation, _NO_AUTOMATIC_FIX[r.kind])
                       for r in findings if r.kind in _NO_AUTOMATIC_FIX]
        not_applied += [NotApplied(r.kind, r.operation,
                                   "its statements are not an ORM lazy load, so no loader option applies: "
                                   "load the rows with one WHERE ... IN (...) query in the code")
                        for r in findings if r.kind == "n_plus_one" and not r.evidence.relationship]
        memory_findings = [r for r in findings if r.kind in ("large_context", "history_growth")]
        eager_findings = [r for r in findings if r.kind == "n_plus_one" and r.evidence.relationship]
        if not eager_findings and not memory_findings:
            return OptimizationResult((), tuple(not_applied), tuple(findings), None, None,
                                      note="no finding that an automatic fix applies to")
        operation = representative_operation
        before = _measured(operation, "flowscope.auto_optimize.before")
        applied = self._eager_load(eager_findings)
        memory_result = None
        if memory_findings and self.memory is not None:
            policy = self.memory.policy
            if any(r.kind == "history_growth" for r in memory_findings) and policy.history_limit is None:
                policy = replace(policy, history_limit=self.thresholds.history_length)
            fix, memory_result = self._compact(policy, ", ".join(f"{r.kind} ({r.operation})" for r in memory_findings))
            if fix is not None:
                applied.append(fix)
        after = _measured(operation, "flowscope.auto_optimize.after")
        return OptimizationResult(
            tuple(applied), tuple(not_applied), tuple(findings), before, after, memory_result,
            note=None if operation is not None else
            "no representative operation to measure: pass representative_operation= to see the effect")

    def revert(self) -> None:
        """Turn off the eager loading and caches this optimizer enabled."""
        self.queries.disable_eager_loading()
        self.queries.disable_caching()

    # -- helpers ------------------------------------------------------------------------------
    def _eager_load(self, findings: list[Recommendation]) -> list[AppliedFix]:
        applied: list[AppliedFix] = []
        for r in findings:
            relationship = r.evidence.relationship
            if r.kind != "n_plus_one" or not relationship or any(f.target == relationship for f in applied):
                continue
            [name] = self.queries.enable_eager_loading([relationship])
            applied.append(AppliedFix(
                "eager_loading", name, f"selectinload({relationship}) added to ORM queries in every session",
                f"n_plus_one in {r.operation}"))
        return applied

    def _compact(self, policy: MemoryPolicy, because: str) -> tuple[AppliedFix | None, MemoryOptimizationResult]:
        assert self.memory is not None
        memory = MemoryOptimizer(self.memory.execution, policy, self.thresholds)
        result = memory.optimize_memory_usage()
        if not result.changed:
            return None, result
        detail = (f"{len(result.moved)} values moved, {len(result.removed)} temporary keys removed, "
                  f"{result.archived_transitions} transitions archived: {result.bytes_before:,} -> "
                  f"{result.bytes_after:,} bytes stored")
        return AppliedFix("memory", memory.subject, detail, because), result


def _measured(operation: Callable[[], Any] | None, label: str) -> RunMetrics | None:
    if operation is None:
        return None
    return measure(operation, label)[1]
