"""What ``PerformanceOptimizer`` returns: the fixes applied, and the measured effect.

    >>> result = PerformanceOptimizer().auto_optimize(run_onboarding)
    >>> [fix.target for fix in result.applied]
    ['OnboardingTask.assignee']
    >>> result.queries_per_operation("EmployeeOnboarding.complete_orientation")
    (15.6, 8.0)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ...analysis._recommendation import Recommendation
from ._compaction import MemoryOptimizationResult
from ._measure import RunMetrics

FixKind = Literal["eager_loading", "caching", "memory"]


@dataclass(frozen=True)
class AppliedFix:
    """One fix applied, and the finding (or request) that justified it."""

    kind: FixKind
    target: str             # "OnboardingTask.assignee", "available_actions", "DocumentApproval execution 7"
    detail: str             # what was done, e.g. "selectinload(OnboardingTask.assignee) in every session"
    because: str            # the finding's kind and operation, or "requested"


@dataclass(frozen=True)
class NotApplied:
    """A finding no fix was applied for, and why."""

    kind: str
    operation: str
    reason: str


@dataclass(frozen=True)
class OptimizationResult:
    """``optimize_performance`` / ``auto_optimize``: fixes, and one operation measured around them."""

    applied: tuple[AppliedFix, ...]
    not_applied: tuple[NotApplied, ...]
    findings: tuple[Recommendation, ...]          # what the decision was based on
    before: RunMetrics | None                     # the representative operation, before the fixes
    after: RunMetrics | None                      # ... and after them
    memory: MemoryOptimizationResult | None = None
    note: str | None = None                       # why nothing was measured, if so

    @property
    def queries_before(self) -> int | None:
        return None if self.before is None else self.before.queries

    @property
    def queries_after(self) -> int | None:
        return None if self.after is None else self.after.queries

    def queries_per_operation(self, name: str) -> tuple[float | None, float | None]:
        """Mean queries of operation ``name`` in the before and the after run."""
        before = self.before.queries_per_operation(name) if self.before else None
        after = self.after.queries_per_operation(name) if self.after else None
        return before, after

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [r.to_dict() for r in self.findings]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)


# The seed API has two methods returning the same shape; both names read naturally.
AutoOptimizationResult = OptimizationResult
PerformanceOptimizationResult = OptimizationResult
