"""Span-based operations on a real Flask app: every request is an operation, with no code change.

The app (tests/support/flask_app.py) knows nothing of flowscope: two list endpoints with the same
planted N+1 over ``Post.author``, their eager-loaded twin, and a detail endpoint. It runs once
in-process through Flask's test client with opentelemetry-instrumentation-flask, and once as
its own process served by a real WSGI server (waitress) on 127.0.0.1, switched on only with
``FLOWSCOPE_AUTO_INSTRUMENT=true`` and read back from its ``FLOWSCOPE_REPORT_JSON``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

import flowscope
from flowscope.performance import process_report
from flowscope.telemetry import SpanOperationProcessor, Telemetry
from flowscope.telemetry import _attributes as attr
from flowscope.telemetry._span_operations import parse_kinds
from support.e2e import clean_env
from support.flask_app import create_app
from support.served_app import served_app

APP_SOURCE = Path(__file__).parent / "support" / "flask_app.py"
AUTHORS = 12
LAZY_LINE = next(i for i, line in enumerate(APP_SOURCE.read_text().splitlines(), 1) if "# the lazy load" in line)


@pytest.fixture
def client(tmp_path: Path, telemetry: Telemetry) -> Iterator:
    app = create_app(f"sqlite:///{tmp_path / 'blog.db'}", authors=AUTHORS)
    FlaskInstrumentor().instrument_app(app)
    telemetry.aggregator.reset()
    telemetry.span_store.clear()
    try:
        yield app.test_client()
    finally:
        FlaskInstrumentor().uninstrument_app(app)


def n_plus_ones(report) -> dict[str, object]:
    return {r.operation: r for r in report.recommendations if r.kind == "n_plus_one"}


def test_each_request_is_an_operation_named_by_its_route_with_exact_query_counts(client, telemetry) -> None:
    for path in ("/api/posts", "/api/posts", "/api/feed", "/api/posts/eager", "/api/posts/3"):
        assert client.get(path).status_code == 200

    operations = {op.name: op for op in process_report().operations}
    assert set(operations) == {"GET /api/posts", "GET /api/feed", "GET /api/posts/eager",
                               "GET /api/posts/<int:post_id>"}       # route templates, never raw URLs
    assert operations["GET /api/posts"].count == 2
    assert operations["GET /api/posts"].query_count.total == 2 * (1 + AUTHORS)   # the list + one per author
    assert operations["GET /api/feed"].query_count.total == 1 + AUTHORS
    assert operations["GET /api/posts/eager"].query_count.total == 2             # posts + one selectin
    assert operations["GET /api/posts/<int:post_id>"].query_count.total == 2     # the post + its author
    [server_span] = [s for s in telemetry.span_store.spans() if s.name == "GET /api/feed"]
    assert server_span.kind is SpanKind.SERVER                     # flowscope's attributes on that same span
    assert server_span.attributes[attr.QUERY_COUNT] == 1 + AUTHORS
    assert server_span.attributes[attr.OPERATION] == "GET /api/feed"
    assert server_span.attributes[attr.RSS_BYTES] > 0


def test_both_endpoints_with_the_same_n_plus_one_are_reported_with_the_relationship_and_app_line(client) -> None:
    for path in ("/api/posts", "/api/feed", "/api/posts/eager"):
        client.get(path)

    found = n_plus_ones(process_report())

    assert set(found) == {"GET /api/posts", "GET /api/feed"}        # the eager twin is silent
    for rec in found.values():
        assert rec.evidence.relationship == "Post.author"
        assert rec.evidence.executions == AUTHORS
        assert rec.evidence.call_site == f"tests/support/flask_app.py:{LAZY_LINE} in serialize"


def test_a_request_inside_an_operation_is_a_nested_operation_and_owns_its_finding(client, telemetry) -> None:
    with flowscope.operation("scenario"):
        client.get("/api/posts")     # the instrumentation starts an INTERNAL span under "scenario"

    operations = {op.name: op for op in process_report().operations}
    assert operations["scenario"].query_count.total == 1 + AUTHORS      # inclusive of the request
    assert operations["GET /api/posts"].query_count.total == 1 + AUTHORS
    assert set(n_plus_ones(process_report())) == {"GET /api/posts"}     # the innermost owns it
    [request] = [s for s in telemetry.span_store.spans() if s.name == "GET /api/posts"]
    [scenario] = [s for s in telemetry.span_store.spans() if s.name == "scenario"]
    assert request.parent.span_id == scenario.context.span_id


def test_span_kinds_are_configurable_and_none_switches_span_operations_off() -> None:
    assert parse_kinds("server, consumer") == {SpanKind.SERVER, SpanKind.CONSUMER}
    assert parse_kinds("none") == frozenset()
    with pytest.raises(ValueError, match="unknown span kind 'severs'.*server, consumer"):
        parse_kinds("severs")
    provider = TracerProvider()
    off, on = SpanOperationProcessor(parse_kinds("none")), SpanOperationProcessor(parse_kinds("consumer"))
    provider.add_span_processor(off)
    provider.add_span_processor(on)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as server:
        pass
    with tracer.start_as_current_span("run/task", kind=SpanKind.CONSUMER) as consumer:
        assert on.open_operations() == 1 and off.open_operations() == 0
    assert attr.QUERY_COUNT not in server.attributes          # SERVER is not configured here
    assert consumer.attributes[attr.QUERY_COUNT] == 0
    assert on.open_operations() == 0


SERVED_APP = '''
import sys
import waitress
sys.path.insert(0, {app_dir!r})
from flask_app import create_app

app = create_app("sqlite:///" + sys.argv[1], authors=%d)
server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
print(server.effective_port, flush=True)
import threading
threading.Thread(target=server.run, daemon=True).start()
sys.stdin.readline()          # the test says when to stop
server.close()
''' % AUTHORS


def test_a_flask_app_served_by_waitress_is_measured_with_only_the_auto_switch(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    with served_app(tmp_path, APP_SOURCE, SERVED_APP, str(tmp_path / "blog.db"),
                    FLOWSCOPE_AUTO_INSTRUMENT="true", FLOWSCOPE_REPORT_JSON=str(report_path)) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for path in ("/api/posts", "/api/feed", "/api/posts/eager", "/api/posts/5"):
                assert http.get(path).status_code == 200

    report = json.loads(report_path.read_text())
    operations = {op["name"]: op for op in report["operations"]}
    assert set(operations) == {"GET /api/posts", "GET /api/feed", "GET /api/posts/eager",
                               "GET /api/posts/<int:post_id>"}
    assert operations["GET /api/posts"]["query_count"]["total"] == 1 + AUTHORS
    assert operations["GET /api/posts/eager"]["query_count"]["total"] == 2
    found = {r["operation"]: r for r in report["recommendations"] if r["kind"] == "n_plus_one"}
    assert set(found) == {"GET /api/posts", "GET /api/feed"}
    for rec in found.values():
        assert rec["evidence"]["relationship"] == "Post.author"
        assert rec["evidence"]["call_site"] == f"flask_app.py:{LAZY_LINE} in serialize"


SCENARIO = '''
import sys
sys.path.insert(0, {support!r})
from flask_app import create_app

client = create_app("sqlite:///" + sys.argv[1], authors={authors}).test_client()
for path in ("/api/posts", "/api/feed", "/api/posts/eager"):
    assert client.get(path).status_code == 200
'''

THREADED_SCENARIO = '''
import sys, threading
from sqlalchemy import create_engine, text

engine = create_engine("sqlite:///" + sys.argv[1])
def work():                       # a thread starts with an empty context: outside any operation
    with engine.connect() as connection:
        for i in range(4):
            connection.execute(text("SELECT :i"), {{"i": i}})
thread = threading.Thread(target=work)
thread.start()
thread.join()
'''


def run_check(tmp_path: Path, source: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "flask_app.py").write_text(APP_SOURCE.read_text())
    script = tmp_path / "scenario.py"
    script.write_text(source.format(support=str(tmp_path), authors=AUTHORS))
    flowscope_command = Path(sys.executable).parent / "flowscope"
    done = subprocess.run([str(flowscope_command), "check", "--json", str(tmp_path / "check.json"), *extra,
                           str(script), str(tmp_path / "app.db")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=clean_env())
    return done, json.loads((tmp_path / "check.json").read_text())


def test_check_measures_the_requests_a_scenario_makes_and_fails_on_both_endpoints(tmp_path: Path) -> None:
    done, result = run_check(tmp_path, SCENARIO)

    assert done.returncode == 1, done.stdout + done.stderr
    operations = {op["name"]: op for op in result["report"]["operations"]}
    assert set(operations) == {"scenario.py", "GET /api/posts", "GET /api/feed", "GET /api/posts/eager"}
    requests = [operations[name]["query_count"]["total"] for name in ("GET /api/posts", "GET /api/feed",
                                                                         "GET /api/posts/eager")]
    assert requests == [1 + AUTHORS, 1 + AUTHORS, 2]
    assert operations["scenario.py"]["query_count"]["total"] > sum(requests)   # inclusive, + the app's set-up
    failing = {(r["kind"], r["operation"]) for r in result["failing"]}
    assert failing == {("n_plus_one", "GET /api/posts"), ("n_plus_one", "GET /api/feed")}
    assert {r["evidence"]["call_site"] for r in result["failing"]} == {f"flask_app.py:{LAZY_LINE} in serialize"}
    assert "check failed" in done.stdout


def test_check_never_passes_on_queries_it_did_not_measure(tmp_path: Path) -> None:
    done, result = run_check(tmp_path, THREADED_SCENARIO)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "check passed" not in done.stdout
    assert "4 queries ran outside any operation" in done.stdout
    unmeasured = result["report"]["unmeasured"]
    assert unmeasured["queries"] == 4
    [statement] = unmeasured["statements"]
    assert statement["count"] == 4 and statement["call_site"].startswith("scenario.py:")
    assert result["passed"] is False and "none was measured" in result["unmeasured_only"]


def test_two_endpoints_sharing_one_finding_show_it_once_with_both_operations(client) -> None:
    from rich.console import Console

    from flowscope.reports._terminal import print_recommendations

    for path in ("/api/posts", "/api/feed"):
        client.get(path)
    report = process_report()
    console = Console(record=True, width=200)

    print_recommendations(report.recommendations, console)
    html = report.to_html()

    shared = [r for r in report.recommendations if r.kind == "n_plus_one"]
    assert len(shared) == 2                                  # the data keeps one finding per operation
    printed = console.export_text()
    assert printed.count("N+1 query pattern in") == 1
    other = ({"GET /api/posts", "GET /api/feed"} - {shared[0].operation}).pop()
    assert f"also in: {other}" in printed
    cards = html.split('<section id="recommendations">')[1].split("</section>")[0]
    assert cards.count('<article class="rec') == len(report.recommendations) - 1
    assert f"Also in 1 more: <code>{other}</code>" in html
