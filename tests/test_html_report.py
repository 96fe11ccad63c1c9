"""HTML reports: every section of the typed reports on one self-contained page, escaped, and
rendered by a real browser (headless Chromium) into the structure the templates promise.

The browser test needs Chromium (Debian's ``chromium`` package; ``scripts/install-chromium.sh``).
It is skipped when none is installed, unless FLOWSCOPE_REQUIRE_CHROMIUM=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

import flowscope
from flowscope.performance import Monitor, compare, load_test, process_report
from flowscope.telemetry import Telemetry
from flowscope.workflows import Workflow, start_workflow, step
from support.load_workflows import Flaky

LOOKUP = "SELECT current_step FROM workflow_executions WHERE id = :id"
LOOKUP_FINGERPRINT = "SELECT current_step FROM workflow_executions WHERE id = ?"


class Parcel(Workflow):
    packed = step(dispatch="in_transit")
    in_transit = step()


def lookups(session: Session, n: int) -> None:
    """``n`` SELECTs of one statement with different parameters: an N+1 pattern past 5."""
    for i in range(n):
        session.execute(text(LOOKUP), {"id": i}).all()


class _Page(HTMLParser):
    """What a reader sees: the operation cells, the recommendation cards, section ids, resources."""

    def __init__(self) -> None:
        super().__init__()
        self.operation_names: list[str] = []
        self.trace_span_names: list[str] = []
        self.recommendations: list[str] = []
        self.section_ids: list[str] = []
        self.resource_attributes: list[str] = []
        self.scripts = 0
        self._capture: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self.resource_attributes += [name for name in ("src", "href") if name in attributes]
        self.scripts += tag == "script"
        if tag == "section" and attributes.get("id"):
            self.section_ids.append(attributes["id"])  # type: ignore[arg-type]
        if self._capture is not None:
            self._depth += tag == "article"
        elif tag == "td" and "name" in classes:
            self._capture, self._depth = self.operation_names, 0
            self.operation_names.append("")
        elif tag == "td" and "span-name" in classes:
            self._capture, self._depth = self.trace_span_names, 0
            self.trace_span_names.append("")
        elif tag == "article" and "rec" in classes and "n-plus-one" not in classes:
            self._capture, self._depth = self.recommendations, 1
            self.recommendations.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._capture in (self.operation_names, self.trace_span_names) and tag == "td":
            self._capture = None
        elif self._capture is self.recommendations and tag == "article":
            self._depth -= 1
            if self._depth == 0:
                self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._capture[-1] += data


def read_page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.recommendations = [" ".join(text.split()) for text in page.recommendations]
    return page


def planted_process_report(telemetry: Telemetry, session: Session):
    with flowscope.operation("lookup"):
        lookups(session, 6)
        with flowscope.operation("nested_lookup"):
            lookups(session, 1)
    for _ in range(3):
        with flowscope.operation("quick"):
            pass
    return process_report(telemetry.aggregator, span_store=telemetry.span_store)


def test_the_process_report_page_lists_every_operation_slowest_first_and_the_n_plus_one(
        session: Session, telemetry: Telemetry) -> None:
    report = planted_process_report(telemetry, session)

    page = read_page(report.to_html())

    assert page.operation_names == [op.name for op in report.operations]
    assert page.section_ids == ["recommendations", "bottlenecks", "operations", "slowest-traces"]
    [n_plus_one] = [r for r in page.recommendations if "n_plus_one" in r]
    assert "lookup" in n_plus_one and LOOKUP_FINGERPRINT in n_plus_one and "Fix:" in n_plus_one
    assert len(page.recommendations) == len(report.recommendations)


def test_queries_outside_any_operation_are_shown_first_with_their_count_statement_and_line(
        session: Session, telemetry: Telemetry) -> None:
    report = planted_process_report(telemetry, session)
    assert "unmeasured" not in read_page(report.to_html()).section_ids   # everything was measured
    lookups(session, 4)                                                  # outside any operation

    html = process_report(telemetry.aggregator, span_store=telemetry.span_store).to_html()

    assert read_page(html).section_ids[0] == "unmeasured"
    assert "<strong>4 queries ran outside any operation</strong>" in html
    assert re.search(rf'<li>4x <span class="sql">{re.escape(LOOKUP_FINGERPRINT)}</span> at '
                     r'<code>\S*test_html_report\.py:\d+ in lookups</code></li>', html)


def test_the_process_report_page_draws_the_slowest_traces_as_waterfalls(
        session: Session, telemetry: Telemetry) -> None:
    report = planted_process_report(telemetry, session)

    page = read_page(report.to_html())

    [lookup_trace] = [t for t in report.slowest_traces if t.root == "lookup"]
    assert [(s.name, s.depth) for s in lookup_trace.spans] == [("lookup", 0), ("nested_lookup", 1)]
    assert page.trace_span_names == [s.name for trace in report.slowest_traces for s in trace.spans]
    assert f"trace {lookup_trace.trace_id}" in report.to_html()


def test_the_process_report_page_shows_only_the_slowest_up_to_the_limit(
        session: Session, telemetry: Telemetry) -> None:
    report = planted_process_report(telemetry, session)

    html = report.to_html(limit=1)

    assert read_page(html).operation_names == [report.operations[0].name]
    assert f"and {len(report.operations) - 1} more operations" in html


def test_a_negative_limit_is_a_clear_value_error(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="limit must be 0 or more operations to list, got -1"):
        process_report(telemetry.aggregator).to_html(limit=-1)


def test_names_and_statements_are_escaped_never_markup(telemetry: Telemetry) -> None:
    with flowscope.operation("<script>alert('x')</script>"):
        pass

    html = process_report(telemetry.aggregator).to_html()

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert read_page(html).operation_names == ["<script>alert('x')</script>"]


def test_the_page_is_self_contained_no_script_no_resource_and_a_policy_forbidding_both(
        session: Session, telemetry: Telemetry) -> None:
    html = planted_process_report(telemetry, session).to_html()

    page = read_page(html)
    assert page.scripts == 0 and page.resource_attributes == []
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">" in html


def test_an_execution_report_page_has_every_section_of_the_typed_report(
        session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Parcel)
    monitor = Monitor(execution)
    with monitor.monitor_operation("lookup"):
        lookups(session, 6)
    execution.perform_action("dispatch", user="courier")
    report = monitor.performance_report()

    html = monitor.export_performance_data("html")

    page = read_page(html)
    assert page.section_ids == ["execution-summary", "recommendations", "timing-analysis", "memory-analysis",
                                "database-analysis", "bottleneck-analysis", "slowest-traces"]
    assert page.trace_span_names == [s.name for trace in report.slowest_traces for s in trace.spans]
    assert {trace.root for trace in report.slowest_traces} == {"Parcel.start", "lookup", "Parcel.dispatch"}
    assert page.operation_names[:3] == [op.name for op in report.timing_analysis.operations]
    assert f"<dd>{monitor.execution_id}</dd>" in html
    assert any(LOOKUP_FINGERPRINT in r and "n_plus_one" in r for r in page.recommendations)


def test_a_comparison_page_shows_each_verdict_and_every_subject_with_its_ratio() -> None:
    def one() -> int:
        return sum(range(50))

    def four() -> int:
        return sum(range(50)) + sum(range(50)) + sum(range(50)) + sum(range(50))

    result = compare({"one": one, "four": four}, iterations=6, warmup=1, min_time=0.001, clock="cpu")

    html = result.to_html()

    page = read_page(html)
    assert page.operation_names == ["one", "four"]
    assert page.section_ids == ["verdicts", "subjects"]
    [verdict] = page.recommendations
    assert result.comparison("four").verdict in verdict
    assert f"{result.ratio('four'):.3f}x" in verdict
    assert "baseline" in html and page.scripts == 0


def test_a_load_test_page_shows_throughput_latency_errors_operations_and_workers(tmp_path: Path) -> None:
    result = load_test(Flaky, concurrent_executions=4, operations_per_execution=3,
                       database_url=f"sqlite:///{tmp_path / 'load.db'}", seed=1)

    html = result.to_html()

    page = read_page(html)
    assert page.section_ids == ["summary", "latency", "errors", "operations", "workers"]
    assert page.operation_names[:len(result.latency)] == [stats.action for stats in result.latency]
    assert f"<strong>{result.throughput:.1f}</strong> workflows/s" in html
    [group] = result.errors
    assert f"{group.count}x" in html and group.type in html
    assert f"{result.operations_accounted_for} of {result.operations_planned} planned" in html


# --- in a real browser -----------------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("FLOWSCOPE_REQUIRE_CHROMIUM") == "1":
        pytest.fail("FLOWSCOPE_REQUIRE_CHROMIUM=1 but no Chromium is installed (scripts/install-chromium.sh)")
    pytest.skip("no Chromium installed (scripts/install-chromium.sh); set FLOWSCOPE_REQUIRE_CHROMIUM=1 to require it")


def test_chromium_renders_the_page_into_the_promised_structure(
        session: Session, telemetry: Telemetry, tmp_path: Path) -> None:
    browser = _chromium()
    report = planted_process_report(telemetry, session)
    page_file = tmp_path / "report.html"
    page_file.write_text(report.to_html(), encoding="utf-8")

    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", page_file.as_uri()], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    rendered = read_page(done.stdout)
    assert rendered.operation_names == [op.name for op in report.operations]
    assert rendered.section_ids == ["recommendations", "bottlenecks", "operations", "slowest-traces"]
    assert rendered.trace_span_names == [s.name for trace in report.slowest_traces for s in trace.spans]
    assert any(LOOKUP_FINGERPRINT in r for r in rendered.recommendations)
    assert rendered.scripts == 0
