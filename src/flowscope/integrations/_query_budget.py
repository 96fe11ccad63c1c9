"""Query budgets for tests: more than ``n`` queries fails, listing the statements with counts and lines.

    >>> from flowscope.testing import assert_max_queries
    >>> with assert_max_queries(3):
    ...     client.get("/api/posts")
    QueryBudgetExceeded: 13 queries ran, the budget is 3:
      12x SELECT authors.id, authors.name FROM authors WHERE authors.id = ?  at app/views.py:36 in serialize
       1x SELECT posts.id, posts.title, posts.author_id FROM posts ORDER BY posts.id

Works with or without the pytest plugin (it configures flowscope if nothing has): the block is
an operation of its own (nested in the test's when the plugin is on), and its query frame is
what is counted. ``@pytest.mark.query_budget(n)`` applies the same check to a whole test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..telemetry import configure, operation
from ..telemetry._frames import OperationFrame, innermost_frame
from ..telemetry.sql._tallies import tallies_by_fingerprint

MAX_LISTED_STATEMENTS = 10


class QueryBudgetExceeded(AssertionError):
    """More queries ran than the budget allows; ``queries`` and ``budget`` say how many."""

    def __init__(self, where: str, queries: int, budget: int, statements: str) -> None:
        self.queries, self.budget = queries, budget
        super().__init__(f"{where}: {queries} queries ran, the budget is {budget}:\n{statements}")


def check_budget(frame: OperationFrame, budget: int, where: str) -> None:
    """Raise :class:`QueryBudgetExceeded` when ``frame`` counted more than ``budget`` queries."""
    if frame.query_count > budget:
        raise QueryBudgetExceeded(where, frame.query_count, budget, describe_statements(frame))


def describe_statements(frame: OperationFrame, limit: int = MAX_LISTED_STATEMENTS) -> str:
    """The frame's statements, most executed first: count, fingerprint, and the line when known."""
    tallies = sorted(tallies_by_fingerprint(frame.statements).items(), key=lambda kv: kv[1].count, reverse=True)
    width = len(str(tallies[0][1].count)) if tallies else 1
    lines = [f"  {tally.count:>{width}}x {key}" + (f"  at {tally.call_site}" if tally.call_site else "")
             for key, tally in tallies[:limit]]
    if len(tallies) > limit:
        lines.append(f"  ... and {len(tallies) - limit} more statements")
    return "\n".join(lines)


def _valid_budget(budget: object) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise TypeError(f"a query budget is a number of queries (an int >= 0), got {budget!r}")
    return budget


@contextmanager
def assert_max_queries(budget: int, name: str = "assert_max_queries") -> Iterator[OperationFrame]:
    """Fail (:class:`QueryBudgetExceeded`, an ``AssertionError``) when the block runs more than
    ``budget`` queries. Yields the block's query frame (``frame.query_count`` so far)."""
    budget = _valid_budget(budget)
    configure()
    with operation(name):
        frame = innermost_frame()
        assert frame is not None
        yield frame
    check_budget(frame, budget, f"{name}")
