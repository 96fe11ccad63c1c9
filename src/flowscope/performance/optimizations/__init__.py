"""Optimizers: recommendations from measured data, and fixes that really apply.

    >>> from flowscope.performance.optimizations import PerformanceOptimizer, QueryOptimizer, MemoryOptimizer
    >>> for rec in PerformanceOptimizer(execution).recommendations():
    ...     print(rec.kind, rec.severity, rec.message, rec.suggestion)
    >>> QueryOptimizer().optimization_report(explain=True, engine=engine).recommended_indexes
    >>> QueryOptimizer().enable_eager_loading(["OnboardingTask.assignee"])
    >>> MemoryOptimizer(execution).optimize_memory_usage().bytes_after
    >>> PerformanceOptimizer().auto_optimize(representative_operation=run_once)

Every finding comes from measurements (spans, the aggregating processor, the database's own
plans); every fix is measured again. The kinds of finding are documented in
docs/recommendations.md.
"""

from ...analysis._indexes import IndexSuggestion
from ...analysis._recommendation import KINDS, SEVERITIES, Evidence, Recommendation, Savings, most_valuable_first
from ...analysis._redaction import is_secret_key
from ._caching import CACHE_NAMES, CacheStats, UnknownCacheError
from ._compaction import Footprint, MemoryOptimizationResult, MemoryPolicy, MovedValue, RestoreResult
from ._eager_loading import WORKFLOWABLE, UnknownRelationshipError
from ._measure import OperationQueries, RunMetrics, measure
from ._memory_optimizer import MemoryOptimizer
from ._optimization_result import (
    AppliedFix,
    AutoOptimizationResult,
    NotApplied,
    OptimizationResult,
    PerformanceOptimizationResult,
)
from ._performance_optimizer import PerformanceOptimizer
from ._query_optimizer import QueryOptimizer
from ._query_report import (
    CachingOpportunity,
    EagerLoadingSuggestion,
    ExplainSummary,
    QueryComparison,
    QueryCounts,
    QueryOptimizationReport,
)

__all__ = [
    "CACHE_NAMES", "KINDS", "SEVERITIES", "WORKFLOWABLE", "AppliedFix", "AutoOptimizationResult", "CacheStats",
    "CachingOpportunity", "EagerLoadingSuggestion", "Evidence", "ExplainSummary", "Footprint", "IndexSuggestion",
    "MemoryOptimizationResult", "MemoryOptimizer", "MemoryPolicy", "MovedValue", "NotApplied", "OperationQueries",
    "OptimizationResult", "PerformanceOptimizationResult", "PerformanceOptimizer", "QueryComparison",
    "QueryCounts", "QueryOptimizationReport", "QueryOptimizer", "Recommendation", "RestoreResult", "RunMetrics",
    "Savings", "UnknownCacheError", "UnknownRelationshipError", "is_secret_key", "measure",
    "most_valuable_first",
]
