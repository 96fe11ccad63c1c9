"""``MemoryOptimizer``: keep one execution's stored state small, losslessly and reversibly.

    >>> optimizer = MemoryOptimizer(execution, policy=MemoryPolicy(temporary_prefix="tmp_", history_limit=100))
    >>> for rec in optimizer.generate_memory_recommendations():
    ...     print(rec.kind, rec.message)
    large_context DocumentApproval execution 7 stores 412.1 KiB of context data; largest values: ...
    >>> result = optimizer.optimize_memory_usage()
    >>> result.bytes_before, result.bytes_after, result.moved
    >>> optimizer.restore()                    # exactly as it was

Moved context values stay readable: handlers are given the values, and
``execution.resolved_context()`` returns them; ``execution.context_data`` holds small
references in their place (``workflows/_context_resolution.py`` says why).
See ``_compaction`` for the transaction and ``_memory_rules`` for the findings.
"""

from __future__ import annotations

from sqlalchemy import inspect as sa_inspect

from ...analysis import _findings, _memory_rules
from ...analysis._recommendation import Recommendation, most_valuable_first
from ...telemetry import configure, operation_spans
from ...workflows import WorkflowExecution
from ._compaction import (
    Footprint,
    MemoryOptimizationResult,
    MemoryPolicy,
    RestoreResult,
    compact,
    footprint,
    restore,
    session_of,
)


class MemoryOptimizer:
    """Memory findings and fixes for one persisted execution."""

    def __init__(self, workflow_execution: WorkflowExecution, policy: MemoryPolicy | None = None,
                 thresholds: _findings.Thresholds | None = None) -> None:
        if not isinstance(workflow_execution, WorkflowExecution):
            raise TypeError(f"MemoryOptimizer needs a WorkflowExecution, got {type(workflow_execution).__name__}")
        identity = sa_inspect(workflow_execution).identity
        if identity is None:
            raise ValueError("MemoryOptimizer needs a persisted execution (start_workflow() commits one)")
        self.execution = workflow_execution
        self.execution_id: int = identity[0]
        self.policy = policy or MemoryPolicy()
        self.thresholds = thresholds or _findings.Thresholds()

    @property
    def subject(self) -> str:
        """How findings name this execution, e.g. ``DocumentApproval execution 7``."""
        return f"{self.execution.workflow_class.rpartition(':')[2]} execution {self.execution_id}"

    def footprint(self) -> Footprint:
        """Stored bytes of the context and the history, measured now."""
        return footprint(session_of(self.execution), self.execution)

    def optimize_memory_usage(self) -> MemoryOptimizationResult:
        """Apply the policy in one transaction (commits); bytes before and after, and what moved."""
        return compact(session_of(self.execution), self.execution, self.policy)

    def restore(self) -> RestoreResult:
        """Undo every compaction of this execution in one transaction (commits)."""
        return restore(session_of(self.execution), self.execution)

    def generate_memory_recommendations(self) -> list[Recommendation]:
        """``large_context``, ``history_growth`` and ``memory_growth`` (a trend across this
        execution's operations), from measurements taken now; most valuable first."""
        measured = self.footprint()
        spans = operation_spans(configure().span_store.by_execution(self.execution_id))
        found = [
            _memory_rules.large_context(self.subject, self.execution.context_data, self.thresholds,
                                        self.policy.value_bytes),
            _memory_rules.history_growth(self.subject, measured.transitions, self.thresholds),
            _memory_rules.memory_trend(self.subject, spans, self.thresholds),
        ]
        return most_valuable_first([r for r in found if r is not None])
