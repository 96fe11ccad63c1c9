"""``Recommendation``: one finding, as data, with its evidence and the concrete fix.

    >>> for rec in PerformanceOptimizer(execution).recommendations():
    ...     print(rec.kind, rec.severity, rec.message, rec.suggestion)
    >>> json.dumps(rec.to_dict())

The kinds are stable identifiers (documented in docs/recommendations.md):
``n_plus_one``, ``write_loop``, ``repeated_query``, ``slow_query``, ``missing_index``,
``high_query_count``, ``slow_operation``, ``memory_growth``, ``large_context``, ``history_growth``,
``unused_eager_load``.
Evidence never holds SQL parameter values or context values: statements are fingerprints
(literals replaced by ``?``) and parameters are only ever counted through their hashes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["n_plus_one", "write_loop", "repeated_query", "slow_query", "missing_index",
               "high_query_count", "slow_operation", "memory_growth", "large_context", "history_growth",
               "unused_eager_load"]
Severity = Literal["low", "medium", "high"]
KINDS: tuple[str, ...] = ("n_plus_one", "write_loop", "repeated_query", "slow_query", "missing_index",
                          "high_query_count", "slow_operation", "memory_growth", "large_context",
                          "history_growth", "unused_eager_load")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class Evidence:
    """What was measured. Unset fields are left out of :meth:`Recommendation.to_dict`."""

    fingerprint: str | None = None      # normalized SQL, literals replaced by ?
    executions: int | None = None       # how many times (in the worst span, for query kinds)
    distinct_parameter_sets: int | None = None
    spans: int | None = None            # how many operation spans showed it
    total_ms: float | None = None
    value: float | None = None          # the measured quantity for non-query kinds
    unit: str | None = None             # its unit: ms, bytes, queries, rows
    threshold: float | None = None      # the threshold it crossed
    relationship: str | None = None     # Class.attribute, for ORM lazy loads
    call_site: str | None = None        # file:line of application code
    trace_id: str | None = None         # an example span
    span_id: str | None = None


@dataclass(frozen=True)
class Savings:
    """Estimated saving per occurrence if the suggestion is applied."""

    queries: int = 0
    milliseconds: float = 0.0


@dataclass(frozen=True)
class Recommendation:
    kind: Kind
    severity: Severity
    operation: str
    message: str
    suggestion: str
    evidence: Evidence = field(default_factory=Evidence)
    estimated_savings: Savings = field(default_factory=Savings)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown recommendation kind {self.kind!r}; expected one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {SEVERITIES}")

    @property
    def value_score(self) -> float:
        """How much applying it is worth: milliseconds saved, weighted by severity."""
        weight = {"low": 1.0, "medium": 2.0, "high": 4.0}[self.severity]
        return weight * (1.0 + self.estimated_savings.milliseconds + self.estimated_savings.queries)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["evidence"] = {k: v for k, v in data["evidence"].items() if v is not None}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        """The recommendation :meth:`to_dict` gave (a pytest-xdist worker's, a saved report's)."""
        return cls(**{**data, "evidence": Evidence(**data.get("evidence", {})),
                      "estimated_savings": Savings(**data.get("estimated_savings", {}))})


def most_valuable_first(recommendations: list[Recommendation]) -> list[Recommendation]:
    return sorted(recommendations, key=lambda r: r.value_score, reverse=True)


@dataclass(frozen=True)
class RecommendationGroup:
    """One finding shared by several operations (the same statement, relationship and line):
    shown once, with every operation it was found in. ``first`` is the most valuable of them."""

    first: Recommendation
    operations: tuple[str, ...]

    @property
    def others(self) -> tuple[str, ...]:
        return self.operations[1:]


def grouped(recommendations: list[Recommendation]) -> list[RecommendationGroup]:
    """``recommendations`` (most valuable first) with the findings that share kind, statement,
    relationship and line across operations folded into one group each, in that order.

        >>> [(g.first.operation, g.others) for g in grouped(report.recommendations)]
        [('GET /api/posts', ('GET /api/feed',)), ...]

    Findings without a statement (slow operations, memory, ...) are their operation's own.
    """
    groups: dict[tuple, list[Recommendation]] = {}
    for index, rec in enumerate(recommendations):
        e = rec.evidence
        key = ((rec.kind, e.fingerprint, e.relationship, e.call_site) if e.fingerprint is not None
               else (rec.kind, index))
        groups.setdefault(key, []).append(rec)
    return [RecommendationGroup(recs[0], tuple(dict.fromkeys(r.operation for r in recs)))
            for recs in groups.values()]
