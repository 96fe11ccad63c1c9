"""HTML pages of benchmark comparisons and load tests, in the reports' shared layout.

    >>> Path("bench.html").write_text(compare(json.dumps, json_fast).to_html())
    >>> Path("load.html").write_text(load_test(DocumentApproval).to_html())

The templates (``templates/comparison.html.j2``, ``load_test.html.j2``) live beside this module
and extend the layout of :mod:`flowscope.reports._html` (see its design decisions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..reports._html import render_page

if TYPE_CHECKING:
    from ._compare import ComparisonResult
    from ._load_result import LoadTestResult

_PACKAGE = "flowscope.benchmark"


def comparison_html(result: ComparisonResult) -> str:
    """A benchmark comparison (``Benchmark.compare``) as an HTML page."""
    return render_page(_PACKAGE, "comparison.html.j2", "flowscope: benchmark comparison", result=result)


def load_test_html(result: LoadTestResult) -> str:
    """A load test (``Benchmark.load_test``) as an HTML page."""
    return render_page(_PACKAGE, "load_test.html.j2", f"flowscope: load test of {result.workflow}", result=result)
