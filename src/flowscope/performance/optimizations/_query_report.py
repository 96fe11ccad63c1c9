"""What ``QueryOptimizer`` returns: its report, and a measured before/after comparison.

    >>> report = QueryOptimizer(execution).optimization_report(explain=True)
    >>> report.current_queries.n_plus_one, report.eager_loading_suggestions[0].option
    (1, 'selectinload(OnboardingTask.assignee)')
    >>> print(report.to_json())

Sections follow the seed API (current_queries, optimization_opportunities,
recommended_indexes, caching_opportunities, eager_loading_suggestions). Everything is data
(frozen dataclasses); nothing holds a parameter value or a context value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ...analysis._indexes import IndexSuggestion
from ...analysis._recommendation import Recommendation
from ._caching import CacheStats
from ._measure import RunMetrics


@dataclass(frozen=True)
class QueryCounts:
    """The measured queries, and how many statements each finding kind flagged."""

    total: int              # queries run by the measured operations (outermost spans)
    slow: int               # statements flagged slow_query
    repeated: int           # statements flagged repeated_query
    n_plus_one: int         # statements flagged n_plus_one


@dataclass(frozen=True)
class EagerLoadingSuggestion:
    """A relationship an N+1 finding names, and the option that loads it in one query."""

    relationship: str       # "OnboardingTask.assignee"
    operation: str
    option: str             # "selectinload(OnboardingTask.assignee)"
    queries_saved_per_operation: int
    call_site: str | None
    enabled: bool           # already applied with enable_eager_loading()


@dataclass(frozen=True)
class CachingOpportunity:
    """A statement run again and again with the same parameters inside one operation."""

    operation: str
    fingerprint: str
    repeats: int            # identical executions in one operation
    call_site: str | None
    suggestion: str


@dataclass(frozen=True)
class ExplainSummary:
    """What ``explain=True`` did (all zero and ``requested=False`` when not asked)."""

    requested: bool = False
    explained: int = 0
    failed: int = 0
    skipped: str | None = None


@dataclass(frozen=True)
class QueryOptimizationReport:
    current_queries: QueryCounts
    optimization_opportunities: tuple[Recommendation, ...]   # most valuable first
    recommended_indexes: tuple[IndexSuggestion, ...]
    caching_opportunities: tuple[CachingOpportunity, ...]
    eager_loading_suggestions: tuple[EagerLoadingSuggestion, ...]
    eager_loading_enabled: tuple[str, ...] = ()              # in the whole process
    caches: dict[str, CacheStats] = field(default_factory=dict)
    explain: ExplainSummary = field(default_factory=ExplainSummary)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["optimization_opportunities"] = [r.to_dict() for r in self.optimization_opportunities]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)


@dataclass(frozen=True)
class QueryComparison:
    """``optimize_queries_for_operation``: the same callable measured before and after the fixes."""

    operation: str
    before: RunMetrics
    after: RunMetrics
    applied: tuple[str, ...]                  # eager-loading paths enabled in between
    findings_before: tuple[Recommendation, ...]
    findings_after: tuple[Recommendation, ...]

    @property
    def queries_before(self) -> int:
        return self.before.queries

    @property
    def queries_after(self) -> int:
        return self.after.queries

    @property
    def queries_saved(self) -> int:
        return self.before.queries - self.after.queries

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings_before"] = [r.to_dict() for r in self.findings_before]
        data["findings_after"] = [r.to_dict() for r in self.findings_after]
        return data
