"""Query budgets in tests, with or without flowscope's pytest plugin.

    from flowscope.testing import assert_max_queries

    def test_the_list_page_runs_two_queries(client):
        with assert_max_queries(2):
            client.get("/api/posts/eager")

The pytest plugin (``pytest --flowscope``; see README, "In your test suite") adds the same check
per test with ``@pytest.mark.query_budget(n)``, each test as an operation, N+1 findings as
warnings or failures, and the ``flowscope_monitor`` fixture.
"""

from __future__ import annotations

from .integrations._query_budget import QueryBudgetExceeded, assert_max_queries

__all__ = ["QueryBudgetExceeded", "assert_max_queries"]
