"""HTML rendering of reports: one self-contained page to open in a browser or keep as a CI artifact.

    >>> Path("flowscope-report.html").write_text(process_report().to_html())
    >>> monitor.export_performance_data(format="html")
    >>> compare(json.dumps, json_fast).to_html(); load_test(DocumentApproval).to_html()
    $ flowscope check scenario.py --html flowscope-report.html    # also: demo, bench, load-test

Design decisions:
- Jinja2 templates (``templates/*.html.j2``, package data) with autoescaping on: every value
  (operation names, SQL fingerprints, call sites, messages) is escaped by the template engine,
  never by hand; an unknown name in a template is an error, not an empty cell.
- Self-contained: the CSS is inline, there is no JavaScript, and a Content-Security-Policy
  forbids loading anything, so the file opens offline, attached to a CI run or mailed.
- No data is computed here: the templates read the typed reports, as the terminal and JSON
  renderings do.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from .. import __version__
from ._units import format_bytes, format_seconds

if TYPE_CHECKING:
    from ._compare import ComparisonResult
    from ._load_result import LoadTestResult
    from ._process_report import ProcessReport
    from ._report import PerformanceReport


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("flowscope.performance", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["kib"] = lambda n: f"{n / 1024:,.0f}"
    env.filters["mib"] = lambda n: f"{n / (1024 * 1024):,.1f}"
    env.filters["ms"] = lambda v: f"{v:,.2f}"
    env.filters["seconds"] = format_seconds
    env.filters["bytes"] = format_bytes
    return env


def _render(template: str, title: str, **data: Any) -> str:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _environment().get_template(template).render(
        title=title, generated=generated, version=__version__, **data)


def process_report_html(report: ProcessReport, limit: int = 50) -> str:
    """The process report (every operation the aggregator saw) as an HTML page."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more operations to list, got {limit}")
    return _render("process_report.html.j2", "flowscope: process performance report", report=report,
                   operations=report.operations[:limit], hidden=max(0, len(report.operations) - limit))


def performance_report_html(report: PerformanceReport) -> str:
    """One execution's performance report (Monitor.performance_report()) as an HTML page."""
    summary = report.execution_summary
    title = f"flowscope: {summary.workflow_class} execution {summary.execution_id}"
    return _render("performance_report.html.j2", title, report=report)


def comparison_html(result: ComparisonResult) -> str:
    """A benchmark comparison (``Benchmark.compare``) as an HTML page."""
    return _render("comparison.html.j2", "flowscope: benchmark comparison", result=result)


def load_test_html(result: LoadTestResult) -> str:
    """A load test (``Benchmark.load_test``) as an HTML page."""
    return _render("load_test.html.j2", f"flowscope: load test of {result.workflow}", result=result)
