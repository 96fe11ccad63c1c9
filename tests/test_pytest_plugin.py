"""flowscope's pytest plugin, run as users run it: pytest in a subprocess (pytester) on a small project.

The project (written into the pytester directory) is the Flask + SQLAlchemy API of
tests/support/flask_app.py (``/api/posts`` lazy-loads each post's author: a planted N+1;
``/api/posts/eager`` is its twin) and a suite hitting it through Flask's test client: plain
tests, a unittest class that requests in ``setUp``, the ``query_budget`` marker,
``flowscope.testing.assert_max_queries`` and the ``flowscope_monitor`` fixture. With the plugin on,
opentelemetry-instrumentation-flask (installed) is turned on too, so each request is an
operation nested in its test's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

APP_SOURCE = Path(__file__).parent / "support" / "flask_app.py"
AUTHORS = 12

CONFTEST = '''
import pytest
from flask_app import create_app


@pytest.fixture
def client(tmp_path):
    return create_app(f"sqlite:///{tmp_path / 'blog.db'}", authors=12).test_client()
'''

TESTS = '''
import tempfile
import unittest

from flask_app import create_app


def test_lists_posts(client):
    assert len(client.get("/api/posts").json) == 12


def test_lists_posts_eagerly(client):
    assert len(client.get("/api/posts/eager").json) == 12


class TestWithSetUp(unittest.TestCase):
    def setUp(self):
        client = create_app(f"sqlite:///{tempfile.mkdtemp()}/blog.db", authors=12).test_client()
        self.feed = client.get("/api/feed").json          # the set-up's N+1 counts in the test

    def test_feed(self):
        self.assertEqual(len(self.feed["items"]), 12)
'''

BUDGETS = '''
import pytest
from flowscope.testing import assert_max_queries


@pytest.mark.query_budget(3)
def test_over_budget(client):
    client.get("/api/posts")


@pytest.mark.query_budget(2)
def test_within_budget(client):
    client.get("/api/posts/eager")


def test_assert_max_queries(client):
    with assert_max_queries(2) as frame:
        client.get("/api/posts/eager")
    assert frame.query_count == 2
    with pytest.raises(AssertionError, match="13 queries ran, the budget is 5"):
        with assert_max_queries(5):
            client.get("/api/posts")


def test_the_monitor_sees_this_tests_queries(client, flowscope_monitor):
    client.get("/api/posts")
    assert flowscope_monitor.queries == 13
    assert [r.kind for r in flowscope_monitor.recommendations()] == ["n_plus_one"]
    assert "12x SELECT authors.id" in flowscope_monitor.statements()
'''

MORE_TESTS = """
def test_lists_posts_again(client):
    assert len(client.get("/api/posts").json) == 12


def test_lists_posts_once_more(client):
    assert len(client.get("/api/posts").json) == 12
"""

MONITOR_JUDGES = """
def test_judged(client, flowscope_monitor):
    client.get("/api/posts")
    assert flowscope_monitor.queries == 13
    assert [r.kind for r in flowscope_monitor.recommendations()] == []
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(flask_app=APP_SOURCE.read_text(), conftest=CONFTEST, test_blog=TESTS, test_budgets=BUDGETS)
    return pytester


def lazy_line(project: pytest.Pytester) -> int:
    """The line of the lazy load in the flask_app.py pytester wrote."""
    written = (project.path / "flask_app.py").read_text().splitlines()
    return next(i for i, line in enumerate(written, 1) if "# the lazy load" in line)


def test_installed_it_changes_nothing_until_switched_on(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("test_blog.py", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)   # the planted N+1 included: nothing measured, nothing judged
    assert "= flowscope =" not in result.stdout.str() and "n_plus_one" not in result.stdout.str()


def test_with_flowscope_each_test_is_an_operation_and_the_summary_names_the_n_plus_ones(
        project: pytest.Pytester) -> None:
    report = project.path / "report.json"
    project._monkeypatch.setenv("FLOWSCOPE_REPORT_JSON", str(report))

    result = project.runpytest_subprocess("test_blog.py", "--flowscope", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    summary = result.stdout.str()
    assert "= flowscope =" in summary and "findings" in summary
    # One finding shared by two tests (the lazy load, the same line): one line, the other test counted.
    result.stdout.fnmatch_lines([f"*n_plus_one*Post.author in test_blog.py::* (and 1 more tests) "
                                 f"at flask_app.py:{lazy_line(project)} in serialize"])
    data = json.loads(report.read_text())
    operations = {op["name"]: op for op in data["operations"]}
    assert operations["test_blog.py::test_lists_posts"]["query_count"]["total"] == 1 + AUTHORS
    assert operations["test_blog.py::test_lists_posts_eagerly"]["query_count"]["total"] == 2
    # setUp is in the call phase: the app's schema and seed rows, then the request
    assert operations["test_blog.py::TestWithSetUp::test_feed"]["query_count"]["total"] > 1 + AUTHORS
    assert operations.get("GET /api/feed", {}).get("query_count", {}).get("total") == 1 + AUTHORS, sorted(operations)
    assert operations["GET /api/posts"]["count"] == 1          # the request: an operation nested in the test
    # In the process report the request owns its N+1 (the innermost operation that ran it).
    assert {r["operation"] for r in data["recommendations"] if r["kind"] == "n_plus_one"} == {
        "GET /api/posts", "GET /api/feed"}


def test_nplusone_error_fails_the_test_with_the_relationship_statement_count_and_line(
        project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("test_blog.py", "--flowscope", "--flowscope-nplusone=error",
                                          "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    assert "1 passed" in output                            # the eager twin
    result.stdout.fnmatch_lines([
        "*N+1 query pattern in test_blog.py::test_lists_posts (--flowscope-nplusone=error):*",
        f"*lazy loads of Post.author ran {AUTHORS} queries*at flask_app.py:{lazy_line(project)} in serialize*",
        "*statement: SELECT authors.id*FROM authors WHERE authors.id = ?*",
        "*selectinload(Post.author)*"])


def test_an_eager_load_no_code_of_the_test_reads_is_in_the_summary(project: pytest.Pytester) -> None:
    project.makepyfile(test_titles='''
def test_titles(client):
    assert len(client.get("/api/titles").json) == 12
''')
    written = (project.path / "flask_app.py").read_text().splitlines()
    line = next(i for i, text in enumerate(written, 1) if "# the unused eager load" in text)

    result = project.runpytest_subprocess("test_titles.py", "--flowscope", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*unused_eager_load Post.author in test_titles.py::test_titles "
                                 f"at flask_app.py:{line} in list_titles"])


def test_tool_flowscope_in_the_rootdirs_pyproject_ignores_findings_and_is_checked(project: pytest.Pytester) -> None:
    project.makefile(".toml", pyproject='''
[[tool.flowscope.ignore]]
kind = "n_plus_one"
operation = "test_blog.py::test_lists_posts"
reason = "the lazy list is the point of this test"
''')
    result = project.runpytest_subprocess("test_blog.py", "--flowscope", "--flowscope-nplusone=error",
                                          "-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=1)          # ignored in test_lists_posts, an error in setUp's test
    result.stdout.fnmatch_lines(["*1 ignored by *pyproject.toml*"])
    assert "N+1 query pattern in test_blog.py::TestWithSetUp::test_feed" in result.stdout.str()

    (project.path / "pyproject.toml").write_text("[tool.flowscope]\nthresholds = 5\n")
    bad = project.runpytest_subprocess("test_blog.py", "--flowscope", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "pyproject.toml: [tool.flowscope].thresholds: expected a table, got int 5" in bad.stderr.str()


def test_with_xdist_the_workers_findings_and_statistics_are_merged_on_the_controller(
        project: pytest.Pytester) -> None:
    report = project.path / "report.json"
    project._monkeypatch.setenv("FLOWSCOPE_REPORT_JSON", str(report))
    project.makepyfile(test_more=MORE_TESTS)

    result = project.runpytest_subprocess("test_blog.py", "test_more.py", "--flowscope", "-n", "2",
                                          "-p", "no:cacheprovider")

    result.assert_outcomes(passed=5)
    output = result.stdout.str()
    assert "2 workers" in output
    # one summary, on the controller: the lazy load the four tests share (three lists, one feed) in one line
    result.stdout.fnmatch_lines(["*4 findings in tests (1 distinct)*",
                                 f"*n_plus_one*Post.author in test_*::* (and 3 more tests) "
                                 f"at flask_app.py:{lazy_line(project)} in serialize"])
    assert output.count("= flowscope =") == 1
    data = json.loads(report.read_text())
    operations = {op["name"]: op for op in data["operations"]}
    assert operations["GET /api/posts"]["count"] == 3                    # requests made on both workers
    assert operations["GET /api/posts"]["query_count"]["total"] == 3 * (1 + AUTHORS)
    assert {name for name in operations if "::" in name} >= {
        "test_blog.py::test_lists_posts", "test_more.py::test_lists_posts_again",
        "test_more.py::test_lists_posts_once_more"}


def test_the_monitor_judges_with_the_thresholds_of_tool_flowscope(project: pytest.Pytester) -> None:
    project.makefile(".toml", pyproject="[tool.flowscope.thresholds]\nn_plus_one = 50\n")
    project.makepyfile(test_judged=MONITOR_JUDGES)

    result = project.runpytest_subprocess("test_judged.py", "--flowscope", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)   # 12 lazy loads are below this project's n_plus_one = 50


def test_query_budgets_fail_over_the_budget_listing_the_statements_plugin_or_not(project: pytest.Pytester) -> None:
    for switch in ((), ("--flowscope",)):
        result = project.runpytest_subprocess("test_budgets.py", *switch, "-p", "no:cacheprovider")

        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines([
            "*QueryBudgetExceeded: test_budgets.py::test_over_budget: 13 queries ran, the budget is 3:*",
            f"*12x SELECT authors.id*  at flask_app.py:{lazy_line(project)} in serialize*"])


def test_a_bad_budget_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.query_budget("many")
def test_x():
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a query budget is a number of queries (an int >= 0), got 'many'*"])
