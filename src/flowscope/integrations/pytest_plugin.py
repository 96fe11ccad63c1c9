"""flowscope's pytest plugin (the ``pytest11`` entry point ``flowscope``): each test an operation.

    $ pytest --flowscope                               # or with FLOWSCOPE_AUTO_INSTRUMENT=true
    $ pytest --flowscope --flowscope-nplusone=error    # a test with an N+1 fails, with its evidence

    @pytest.mark.query_budget(5)                        # more than 5 queries fails the test
    def test_list_page(client, flowscope_monitor):
        client.get("/api/posts")
        assert flowscope_monitor.queries <= 5

Opt-in: installed, it changes nothing in a test run until ``--flowscope`` is given or
``FLOWSCOPE_AUTO_INSTRUMENT`` is set; its marker is always registered and its fixture always
available, and a ``query_budget`` marker is enforced whenever a test carries one.

When on, each test's call phase (for unittest classes: setUp, the test and tearDown) is an
operation named by the test's node id, started under no span, with the installed OpenTelemetry
instrumentations on (a request through a Flask or FastAPI test client is a nested operation);
the end of the run prints each test's query findings, worst first, with its test and line (one
line for a finding several tests share), and ``FLOWSCOPE_REPORT_JSON`` / ``FLOWSCOPE_REPORT_HTML``
are honoured (the process report: there a request's finding belongs to the request).
``[tool.flowscope]`` in the rootdir's ``pyproject.toml`` gives the thresholds and ignore rules
(ci/_project_config); ``--flowscope-baseline`` / ``--flowscope-write-baseline`` read and write a
baseline (ci/_baseline). Under pytest-xdist the workers hand their findings and aggregator state
to the controller, which prints the one summary and writes the report.

Design decisions: nothing of flowscope is imported until the plugin is on or a marker is met
(the entry point loads this module in every pytest run of the environment); the per-test rules
read the test's own query frame as the test ends, before its span reaches any processor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_ON_VALUES = ("1", "true", "yes", "on")
_NPLUSONE_MODES = ("error", "warn", "off")
_FRAME = pytest.StashKey[Any]()
_STATE = pytest.StashKey["_PluginState"]()
MAX_SUMMARY_LINES = 20


class _PluginState:
    def __init__(self, nplusone: str, project: Any) -> None:
        self.nplusone = nplusone
        self.project = project          # [tool.flowscope] of the rootdir's pyproject.toml (ci/_project_config)
        self.findings: list[Any] = []   # every test's query findings (Recommendation), for the summary
        self.ignored = 0                # findings an ignore rule matched
        self.baseline: frozenset[Any] = frozenset()   # known finding identities (ci/_baseline)
        self.known: list[Any] = []      # findings the baseline knew (kept for --flowscope-write-baseline)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowscope", "flowscope: each test an operation, N+1 and query budgets")
    group.addoption("--flowscope", action="store_true", default=False,
                    help="measure each test as a flowscope operation (also on with FLOWSCOPE_AUTO_INSTRUMENT)")
    group.addoption("--flowscope-nplusone", choices=_NPLUSONE_MODES, default="warn",
                    help="an N+1 inside a test: fail it (error), list it at the end (warn, default), or ignore it")
    group.addoption("--flowscope-baseline", metavar="FILE", default=None,
                    help="findings in this baseline (flowscope check --write-baseline, or the option below) are "
                         "known: never an error, counted apart in the summary")
    group.addoption("--flowscope-write-baseline", metavar="FILE", default=None,
                    help="write the run's findings as a baseline at the end")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Switched on, flowscope and the installed instrumentations start before any conftest is
    imported: an instrumentation patches its framework's classes (``flask.Flask``), so a conftest
    that imports the application first would keep the unpatched ones."""
    if _enabled(early_config):
        _switch_on()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "query_budget(n): the test fails when it runs more than n SQL queries "
                                       "(flowscope)")
    if not _enabled(config):
        return
    from flowscope.ci._project_config import ConfigError, load_project_config

    try:
        project = load_project_config(start=config.rootpath)
    except ConfigError as err:
        raise pytest.UsageError(f"flowscope: {err}") from None
    from flowscope.ci._baseline import BaselineError, read_baseline

    state = _PluginState(config.getoption("--flowscope-nplusone"), project)
    baseline_path = config.getoption("--flowscope-baseline")
    try:
        state.baseline = frozenset(read_baseline(baseline_path)) if baseline_path else frozenset()
    except BaselineError as err:
        raise pytest.UsageError(f"flowscope: {err}".replace("--baseline", "--flowscope-baseline")) from None
    _switch_on()
    config.stash[_STATE] = state
    if config.pluginmanager.hasplugin("xdist") and not _is_xdist_worker():
        config.pluginmanager.register(_XdistController(config.stash[_STATE]), "flowscope-xdist")


def _is_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def _switch_on() -> None:
    from flowscope.telemetry import configure, install_eager_load_audit
    from flowscope.telemetry._contrib import instrument_installed

    if _is_xdist_worker():   # the controller writes the merged report; a worker's would be partial
        for variable in ("FLOWSCOPE_REPORT_JSON", "FLOWSCOPE_REPORT_HTML"):
            os.environ.pop(variable, None)
    telemetry = configure()
    if not telemetry.disabled:
        instrument_installed()   # idempotent: skips what is already instrumented
        install_eager_load_audit()   # a test run is where its per-read cost is welcome


def _enabled(config: pytest.Config) -> bool:
    known = getattr(config, "known_args_namespace", None)
    switched = getattr(known, "flowscope", False) or config.getoption("--flowscope", default=False)
    return bool(switched) or os.environ.get("FLOWSCOPE_AUTO_INSTRUMENT", "").strip().lower() in _ON_VALUES


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    state = item.config.stash.get(_STATE, None)
    budget_marker = item.get_closest_marker("query_budget")
    if state is None and budget_marker is None:
        return (yield)
    from opentelemetry import context as otel_context

    from flowscope.telemetry import configure, operation
    from flowscope.telemetry._frames import innermost_frame

    from ._query_budget import _valid_budget, check_budget

    budget = _valid_budget(budget_marker.args[0] if budget_marker.args else budget_marker.kwargs.get("n")) \
        if budget_marker is not None else None
    configure()
    token = otel_context.attach(otel_context.Context())   # nested under nothing
    try:
        with operation(item.nodeid):
            frame = innermost_frame()
            item.stash[_FRAME] = frame
            result = yield
    finally:
        otel_context.detach(token)
    if budget is not None:
        check_budget(frame, budget, item.nodeid)
    if state is not None:
        _judge(item, frame, state)
    return result


def _judge(item: pytest.Item, frame: Any, state: _PluginState) -> None:
    """The test's query findings, from its own frame (requests inside it included): kept for the
    summary; an N+1 fails the test under ``--flowscope-nplusone=error``."""
    from flowscope.analysis._findings import frame_findings
    from flowscope.ci._identity import identity

    kept, ignored = state.project.split(tuple(frame_findings(item.nodeid, frame, state.project.thresholds)))
    state.ignored += len(ignored)
    findings = [r for r in kept if identity(r) not in state.baseline]
    state.known.extend(r for r in kept if identity(r) in state.baseline)
    if state.nplusone == "off":
        findings = [r for r in findings if r.kind != "n_plus_one"]
    state.findings.extend(findings)
    n_plus_ones = [r for r in findings if r.kind == "n_plus_one"]
    lines = [f"{r.message}\n    statement: {r.evidence.fingerprint}\n    fix: {r.suggestion}" for r in n_plus_ones]
    if lines and state.nplusone == "error":
        pytest.fail(f"N+1 query pattern in {item.nodeid} (--flowscope-nplusone=error):\n" + "\n".join(lines),
                    pytrace=False)
    for line in lines:   # warn: listed at the end of the run, and in JUnit XML as properties
        item.user_properties.append(("flowscope_n_plus_one", line))


@pytest.fixture
def flowscope_monitor(request: pytest.FixtureRequest) -> Iterator[TestMeasurement]:
    """The running test's measurement: its queries so far, their statements, its findings.

    With the plugin on it reads the test's own operation; without, it opens an operation of its
    own for as long as the fixture lives (the rest of the set-up, the test, the tear-down).
    """
    from flowscope.telemetry import configure, operation
    from flowscope.telemetry._frames import innermost_frame

    if request.config.stash.get(_STATE, None) is not None:
        yield TestMeasurement(request.node, None)
        return
    configure()
    with operation(f"{request.node.nodeid} (flowscope_monitor)"):
        yield TestMeasurement(request.node, innermost_frame())


class TestMeasurement:
    """What ``flowscope_monitor`` gives a test."""

    __test__ = False   # not a test class, whatever pytest's naming rules say

    def __init__(self, item: pytest.Item, frame: Any) -> None:
        self._item, self._own = item, frame

    @property
    def frame(self) -> Any:
        return self._own if self._own is not None else self._item.stash.get(_FRAME, None)

    @property
    def queries(self) -> int:
        """Queries run so far in this test (nested operations included)."""
        frame = self.frame
        return frame.query_count if frame is not None else 0

    def statements(self) -> str:
        """The statements so far, most executed first, with counts and lines."""
        from ._query_budget import describe_statements

        return describe_statements(self.frame) if self.frame is not None else ""

    def recommendations(self) -> list[Any]:
        """The query findings of this test so far (N+1, repeated queries, write loops, ...; unused
        eager loads once the test's operation has ended)."""
        from flowscope.analysis._findings import Thresholds, frame_findings

        frame = self.frame
        state = self._item.config.stash.get(_STATE, None)   # the plugin on: [tool.flowscope]'s thresholds
        thresholds = state.project.thresholds if state is not None else Thresholds()
        return frame_findings(self._item.nodeid, frame, thresholds) if frame else []


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's findings and statistics to the controller."""
    state = session.config.stash.get(_STATE, None)
    output = getattr(session.config, "workeroutput", None)
    if state is None or output is None:
        return
    from flowscope.telemetry import configure
    from flowscope.telemetry._frames import unmeasured

    output["flowscope"] = {"findings": [rec.to_dict() for rec in state.findings], "ignored": state.ignored,
                           "known": [rec.to_dict() for rec in state.known],
                           "aggregator": configure().aggregator.export_state(), "unmeasured": unmeasured.state()}


class _XdistController:
    """On the pytest-xdist controller: merge each worker's data as the worker finishes (its
    findings, and its aggregator's state: sketches merged, not quantiles averaged), so the
    summary and ``FLOWSCOPE_REPORT_JSON`` / ``_HTML`` cover the whole run."""

    def __init__(self, state: _PluginState) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get("flowscope")
        if not data:
            return
        from flowscope.analysis._recommendation import Recommendation
        from flowscope.telemetry import configure
        from flowscope.telemetry._frames import unmeasured

        self.state.findings.extend(Recommendation.from_dict(found) for found in data["findings"])
        self.state.ignored += data["ignored"]
        self.state.known.extend(Recommendation.from_dict(found) for found in data["known"])
        configure().aggregator.merge_state(data["aggregator"])
        unmeasured.merge(data["unmeasured"])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    from flowscope.analysis._recommendation import grouped, most_valuable_first
    from flowscope.performance import process_report

    report = process_report(thresholds=state.project.thresholds)
    terminalreporter.section("flowscope")
    groups = grouped(most_valuable_first(state.findings))
    terminalreporter.write_line(f"{len(report.operations)} operations measured, {report.measured_queries} queries; "
                                f"{len(state.findings)} findings in tests ({len(groups)} distinct), worst first"
                                + (f"; {state.ignored} ignored by {state.project.source}" if state.ignored else "")
                                + (f"; {len(state.known)} known to the baseline" if state.known else ""))
    for group in groups[:MAX_SUMMARY_LINES]:
        rec = group.first
        at = f" at {rec.evidence.call_site}" if rec.evidence.call_site else ""
        also = f" (and {len(group.others)} more tests)" if group.others else ""
        what = f"{rec.evidence.relationship} " if rec.evidence.relationship else ""
        terminalreporter.write_line(f"  {rec.severity:<6} {rec.kind:<14} {what}in {rec.operation}{also}{at}")
    if len(groups) > MAX_SUMMARY_LINES:
        terminalreporter.write_line(f"  ... and {len(groups) - MAX_SUMMARY_LINES} more (FLOWSCOPE_REPORT_HTML=...)")
    if report.unmeasured.queries:
        terminalreporter.write_line(f"  {report.unmeasured.queries} queries ran outside any test's call phase "
                                    f"(fixtures, collection): not measured")
    baseline_path = config.getoption("--flowscope-write-baseline")
    if baseline_path:
        from flowscope.ci._baseline import baseline_json

        try:
            with open(baseline_path, "w", encoding="utf-8") as written:
                written.write(baseline_json([*state.findings, *state.known]))
            terminalreporter.write_line(f"  wrote the baseline {baseline_path}")
        except OSError as err:
            terminalreporter.write_line(f"  cannot write the baseline {baseline_path}: {err.strerror or err}")
