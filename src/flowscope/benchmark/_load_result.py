"""What a load test reports: throughput, latency per action, errors, memory, and accounting.

    >>> result = load_test(DocumentApproval, concurrent_executions=10, operations_per_execution=5)
    >>> result.throughput, result.to_dict()["throughput"]            # workflows per second
    >>> result.latency_of("approve").p95_ms
    >>> result.operations_planned == result.operations_accounted_for

Design decisions:
- Every planned operation is accounted for exactly once: ``performed`` (the action
  committed), ``failed`` (it raised; the engine rolled it back), ``skipped_no_action`` (the
  execution reached a step with no action available to the load test's user, or the policy
  chose none), or ``not_run`` (its execution had failed earlier or could not start, or the
  test was interrupted). A failing execution stops; the others go on.
- Latency quantiles are exact (numpy percentiles of every sample, merged across workers):
  a load test keeps ``executions x operations`` floats, a size the caller chose.
- ``throughput`` is executions that finished without an error per second of the timed phase
  (from the moment every execution was ready to go until the last one finished); setting up
  the database, the records and the worker processes is reported apart (``setup_seconds``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..telemetry import OperationStats


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one action (``start`` is ``start_workflow``), in milliseconds."""

    action: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float


@dataclass(frozen=True)
class ErrorGroup:
    """All errors of one exception type: how many, in which actions, and the first message."""

    type: str
    count: int
    actions: dict[str, int]
    example: str


@dataclass(frozen=True)
class WorkerSummary:
    """One worker: the process that ran a share of the executions (one in ``threads`` mode)."""

    worker: int
    pid: int
    executions: int
    operations_performed: int
    seconds: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class LoadProgress:
    """Handed to the ``progress`` callback about ten times a second."""

    done: int            # operations accounted for so far (any outcome)
    planned: int
    errors: int
    elapsed_seconds: float


@dataclass(frozen=True)
class LoadTestResult:
    """The outcome of :func:`load_test` (see the module docstring for the definitions)."""

    workflow: str
    mode: str
    workers: int
    concurrent_executions: int
    operations_per_execution: int
    action_policy: str
    seed: int
    database: str
    temporary_database: bool
    interrupted: bool
    total_seconds: float
    setup_seconds: float
    throughput: float                      # workflows (executions finished without error) per second
    operations_per_second: float           # performed actions per second
    executions_started: int
    executions_completed: int
    executions_failed: int
    operations_planned: int
    operations_performed: int
    operations_failed: int
    operations_skipped_no_action: int
    operations_not_run: int
    latency: tuple[LatencyStats, ...]      # "start" first, then actions by name
    errors: tuple[ErrorGroup, ...]         # most frequent first
    memory_at_start_bytes: int
    peak_memory_bytes: int                 # threads: this process; processes: sum of the workers' peaks
    operation_stats: tuple[OperationStats, ...]   # the aggregating processor, scoped to this test
    worker_summaries: tuple[WorkerSummary, ...]
    notes: tuple[str, ...]

    @property
    def errors_total(self) -> int:
        return sum(e.count for e in self.errors)

    @property
    def operations_accounted_for(self) -> int:
        return (self.operations_performed + self.operations_failed + self.operations_skipped_no_action
                + self.operations_not_run)

    def latency_of(self, action: str) -> LatencyStats:
        for stats in self.latency:
            if stats.action == action:
                return stats
        raise KeyError(f"no latency for {action!r}; measured: {', '.join(s.action for s in self.latency)}")

    def operation(self, name: str) -> OperationStats:
        for stats in self.operation_stats:
            if stats.name == name:
                return stats
        raise KeyError(f"no operation {name!r}; aggregated: {', '.join(s.name for s in self.operation_stats)}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors_total"] = self.errors_total
        data["operations_accounted_for"] = self.operations_accounted_for
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_html(self) -> str:
        """A self-contained HTML page: summary, latency per action, errors, operations, workers."""
        from ._html import load_test_html  # jinja2 only when a page is asked for

        return load_test_html(self)
