"""HTML rendering of reports: one self-contained page to open in a browser or keep as a CI artifact.

    >>> Path("flowscope-report.html").write_text(process_report().to_html())
    >>> monitor.export_performance_data(format="html")
    >>> render_page("flowscope.benchmark", "comparison.html.j2", "flowscope: benchmark comparison", result=r)
    $ flowscope check --html flowscope-report.html scenario.py   # also: demo, bench, load-test

Design decisions:
- Jinja2 templates (``templates/*.html.j2``, package data) with autoescaping on: every value
  (operation names, SQL fingerprints, call sites, messages) is escaped by the template engine,
  never by hand; an unknown name in a template is an error, not an empty cell.
- Self-contained: the CSS is inline, there is no JavaScript, and a Content-Security-Policy
  forbids loading anything, so the file opens offline, attached to a CI run or mailed.
- No data is computed here: the templates read the typed reports, as the terminal and JSON
  renderings do.
- One look for every page: the layout and macros live here; a higher layer with pages of its
  own (benchmark comparisons, load tests) keeps its templates in its own package and renders
  them with :func:`render_page`, which looks there first and then here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined

from .._version import __version__
from ..analysis._recommendation import grouped
from ._units import format_bytes, format_seconds

if TYPE_CHECKING:
    from ._performance_report import PerformanceReport
    from ._process_report import ProcessReport

_OWN_PACKAGE = "flowscope.reports"


@lru_cache(maxsize=None)
def _environment(package: str) -> Environment:
    loaders = [PackageLoader(package, "templates")]
    if package != _OWN_PACKAGE:
        loaders.append(PackageLoader(_OWN_PACKAGE, "templates"))
    env = Environment(loader=ChoiceLoader(loaders), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["kib"] = lambda n: f"{n / 1024:,.0f}"
    env.filters["mib"] = lambda n: f"{n / (1024 * 1024):,.1f}"
    env.filters["ms"] = lambda v: f"{v:,.2f}"
    env.filters["seconds"] = format_seconds
    env.filters["bytes"] = format_bytes
    env.filters["grouped"] = lambda recommendations: grouped(list(recommendations))
    return env


def render_page(package: str, template: str, title: str, **data: Any) -> str:
    """``template`` from ``package``'s ``templates/`` folder, in the layout every page shares."""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _environment(package).get_template(template).render(
        title=title, generated=generated, version=__version__, **data)


def process_report_html(report: ProcessReport, limit: int = 50) -> str:
    """The process report (every operation the aggregator saw) as an HTML page."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more operations to list, got {limit}")
    return render_page(_OWN_PACKAGE, "process_report.html.j2", "flowscope: process performance report",
                       report=report, operations=report.operations[:limit],
                       hidden=max(0, len(report.operations) - limit))


def performance_report_html(report: PerformanceReport) -> str:
    """One execution's performance report (Monitor.performance_report()) as an HTML page."""
    summary = report.execution_summary
    title = f"flowscope: {summary.workflow_class} execution {summary.execution_id}"
    return render_page(_OWN_PACKAGE, "performance_report.html.j2", title, report=report)
