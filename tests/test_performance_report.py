"""``Monitor.performance_report()`` and ``process_report()``: what each section says, exactly.

A performance report covers one execution (its spans in the local span store, never another
execution's); the process report covers every operation the aggregating processor has seen.
Both are plain data that serialize to JSON (and the execution report to CSV).
"""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

import flowscope
from flowscope.examples import EmployeeOnboarding, seed_employees
from flowscope.performance import Monitor, PerformanceReport, ProcessReport, Thresholds, process_report
from flowscope.telemetry import Telemetry
from flowscope.workflows import Workflow, WorkflowExecution, start_workflow, step

MiB = 1024 * 1024
LOOKUP = "SELECT current_step FROM workflow_executions WHERE id = :id"
LOOKUP_FINGERPRINT = "SELECT current_step FROM workflow_executions WHERE id = ?"


class Shipment(Workflow):
    packed = step(dispatch="in_transit")
    in_transit = step(deliver="delivered")
    delivered = step()


def run_queries(session: Session, n: int) -> None:
    """Exactly ``n`` SELECTs of one statement, each with its own parameter."""
    for i in range(n):
        session.execute(text(LOOKUP), {"id": i}).all()


def execution_without_history(session: Session, telemetry: Telemetry) -> WorkflowExecution:
    """A persisted execution whose report starts empty (its start span is dropped)."""
    execution = start_workflow(session, Shipment)
    telemetry.span_store.clear()
    return execution


def timing_of(report: PerformanceReport) -> dict[str, object]:
    return {t.name: t for t in report.timing_analysis.operations}


# --- one execution only ----------------------------------------------------------------------

def test_a_report_covers_only_its_own_execution_s_operations_and_queries(
        session: Session, telemetry: Telemetry) -> None:
    first, second = start_workflow(session, Shipment), start_workflow(session, Shipment)
    first_monitor, second_monitor = Monitor(first), Monitor(second)

    with first_monitor.monitor_operation("alpha"):
        run_queries(session, 3)
    with second_monitor.monitor_operation("beta"):
        run_queries(session, 5)
    with first_monitor.monitor_operation("alpha"):
        run_queries(session, 3)
    second.perform_action("dispatch", user="courier")

    first_report, second_report = first_monitor.performance_report(), second_monitor.performance_report()
    first_ops, second_ops = timing_of(first_report), timing_of(second_report)
    assert set(first_ops) == {"Shipment.start", "alpha"}
    assert set(second_ops) == {"Shipment.start", "beta", "Shipment.dispatch"}
    assert (first_ops["Shipment.start"].count, first_ops["alpha"].count) == (1, 2)
    assert first_report.database_analysis.total_queries == first_ops["Shipment.start"].queries + 6
    assert second_report.database_analysis.total_queries == (
        second_ops["Shipment.start"].queries + 5 + second_ops["Shipment.dispatch"].queries)
    assert first_report.execution_summary.execution_id == first.id
    assert second_report.execution_summary.execution_id == second.id


# --- execution_summary -----------------------------------------------------------------------

def test_execution_summary_names_the_execution_its_class_step_status_and_transitions(
        session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Shipment)
    monitor = Monitor(execution)
    execution.perform_action("dispatch", user="courier")
    with monitor.monitor_operation("track"):
        pass
    execution.perform_action("deliver", user="courier")

    summary = monitor.performance_report().execution_summary

    assert summary.execution_id == execution.id
    assert summary.workflow_class == Shipment.import_path()
    assert (summary.current_step, summary.status) == ("delivered", "completed")
    assert summary.transitions == 2
    assert summary.operations == 4          # start, dispatch, track, deliver
    assert summary.errors == 0


def test_execution_summary_counts_failed_operations(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with pytest.raises(ZeroDivisionError), monitor.monitor_operation("divide"):
        1 / 0
    with monitor.monitor_operation("fine"):
        pass

    report = monitor.performance_report()

    assert (report.execution_summary.operations, report.execution_summary.errors) == (2, 1)
    assert timing_of(report)["divide"].errors == 1


def test_a_report_with_no_operations_is_empty_not_an_error(session: Session, telemetry: Telemetry) -> None:
    report = Monitor(execution_without_history(session, telemetry)).performance_report()

    assert report.timing_analysis.total_ms == 0.0
    assert report.timing_analysis.slowest_operation is None
    assert report.database_analysis.total_queries == 0
    assert report.memory_analysis.growth_bytes == 0
    assert report.optimization_recommendations == ()


# --- timing_analysis -------------------------------------------------------------------------

def test_total_time_is_the_sum_of_outermost_operations_without_nested_ones(
        session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Shipment)
    monitor = Monitor(execution)
    with monitor.monitor_operation("outer"):
        with monitor.monitor_operation("inner"):
            time.sleep(0.02)
        execution.perform_action("dispatch", user="courier")      # an engine span, nested too

    report = monitor.performance_report()

    ops = timing_of(report)
    assert set(ops) == {"Shipment.start", "outer", "inner", "Shipment.dispatch"}
    assert report.timing_analysis.total_ms == pytest.approx(ops["Shipment.start"].total_ms + ops["outer"].total_ms)
    assert report.timing_analysis.total_ms < sum(t.total_ms for t in ops.values())
    assert report.timing_analysis.average_ms == pytest.approx(report.timing_analysis.total_ms / 2)


def test_slowest_and_fastest_operations_are_named_with_their_durations(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("nap"):
        time.sleep(0.03)
    with monitor.monitor_operation("blink"):
        pass
    with monitor.monitor_operation("doze"):
        time.sleep(0.005)

    timing = monitor.performance_report().timing_analysis

    assert (timing.slowest_operation, timing.fastest_operation) == ("nap", "blink")
    assert timing.slowest_ms >= 30.0
    assert timing.fastest_ms < 5.0
    assert timing.slowest_ms == max(t.max_ms for t in timing.operations)


def test_the_timing_table_aggregates_each_operation_name_slowest_total_first(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    for _ in range(3):
        with monitor.monitor_operation("poll"):
            run_queries(session, 2)
    with monitor.monitor_operation("wait"):
        time.sleep(0.05)

    operations = monitor.performance_report().timing_analysis.operations

    assert [t.name for t in operations] == ["wait", "poll"]
    poll = operations[1]
    assert (poll.count, poll.queries, poll.errors) == (3, 6, 0)
    assert poll.mean_ms == pytest.approx(poll.total_ms / 3)
    assert poll.max_ms <= poll.total_ms


# --- memory_analysis -------------------------------------------------------------------------

def test_memory_growth_reflects_a_large_allocation_held_after_a_monitored_operation(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))

    with monitor.monitor_operation("load_everything"):
        ballast = b"\x01" * (48 * MiB)           # every page written, so it is resident
    report = monitor.performance_report()

    try:
        memory = report.memory_analysis
        assert 40 * MiB <= memory.growth_bytes < 200 * MiB
        assert memory.peak_rss_bytes >= 48 * MiB
        assert memory.current_rss_bytes >= 48 * MiB
        assert report.bottleneck_analysis.memory[0].operation == "load_everything"
        assert report.bottleneck_analysis.memory[0].value >= 40 * MiB
    finally:
        del ballast


def test_the_process_high_water_mark_is_never_below_an_rss_the_report_shows(
        session: Session, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowscope.performance import _monitor

    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("steady"):
        pass
    # The kernel's mark is updated lazily: read beside statm's RSS it can trail it (seen: 0.2 MiB).
    monkeypatch.setattr(_monitor, "peak_rss_bytes", lambda: 1 * MiB)

    memory = monitor.performance_report().memory_analysis

    assert memory.process_peak_rss_bytes >= max(memory.current_rss_bytes, memory.peak_rss_bytes) > 1 * MiB


def test_memory_growth_is_small_when_nothing_is_held(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))

    with monitor.monitor_operation("transient"):
        len(b"\x01" * (48 * MiB))                # allocated and freed inside the operation

    assert monitor.performance_report().memory_analysis.growth_bytes < 16 * MiB


# --- database_analysis -----------------------------------------------------------------------

def test_total_queries_is_exact_and_counts_nested_operations_once(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("outer"):
        run_queries(session, 3)
        with monitor.monitor_operation("inner"):
            run_queries(session, 4)
    with monitor.monitor_operation("after"):
        run_queries(session, 2)

    database = monitor.performance_report().database_analysis

    assert database.total_queries == 9
    assert database.total_query_ms > 0


def test_queries_per_operation_is_the_mean_per_operation_name(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    for n in (2, 4):
        with monitor.monitor_operation("batch"):
            run_queries(session, n)
    with monitor.monitor_operation("single"):
        run_queries(session, 1)

    per_operation = monitor.performance_report().database_analysis.queries_per_operation

    assert per_operation == {"batch": 3.0, "single": 1.0}


def test_hotspots_name_the_statement_fingerprint_with_its_count(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    for n in (4, 2):
        with monitor.monitor_operation("lookup"):
            run_queries(session, n)

    hotspots = monitor.performance_report().database_analysis.hotspots

    [hotspot] = [h for h in hotspots if h.operation == "lookup"]
    assert hotspot.fingerprint == LOOKUP_FINGERPRINT
    assert (hotspot.executions, hotspot.max_in_one_operation) == (6, 4)
    assert hotspot.total_ms > 0


def test_hotspots_keep_different_statements_apart(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("mixed"):
        run_queries(session, 2)
        session.execute(select(WorkflowExecution.status).where(WorkflowExecution.id == 1)).all()

    hotspots = {h.fingerprint: h.executions for h in monitor.performance_report().database_analysis.hotspots}

    assert hotspots[LOOKUP_FINGERPRINT] == 2
    [other] = [fp for fp in hotspots if fp != LOOKUP_FINGERPRINT]
    assert other.startswith("SELECT workflow_executions.status") and hotspots[other] == 1


# --- bottleneck_analysis and recommendations -------------------------------------------------

def test_bottleneck_analysis_ranks_operations_by_time_and_by_queries(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("slow"):
        time.sleep(0.03)
    with monitor.monitor_operation("chatty"):
        run_queries(session, 6)
    with monitor.monitor_operation("quiet"):
        run_queries(session, 1)

    bottlenecks = monitor.performance_report().bottleneck_analysis

    assert bottlenecks.time[0].operation == "slow" and bottlenecks.time[0].unit == "ms"
    assert [(b.operation, b.value, b.unit) for b in bottlenecks.queries] == [
        ("chatty", 6, "queries"), ("quiet", 1, "queries")]
    assert len(bottlenecks.time) <= 3


def test_optimization_recommendations_come_from_the_monitor_s_thresholds(
        session: Session, telemetry: Telemetry) -> None:
    execution = execution_without_history(session, telemetry)
    strict, lenient = Monitor(execution, Thresholds(slow_operation_ms=1)), Monitor(execution)
    with strict.monitor_operation("nap"):
        time.sleep(0.01)

    strict_kinds = {(r.kind, r.operation) for r in strict.performance_report().optimization_recommendations}
    lenient_kinds = {(r.kind, r.operation) for r in lenient.performance_report().optimization_recommendations}

    assert ("slow_operation", "nap") in strict_kinds
    assert ("slow_operation", "nap") not in lenient_kinds


def test_optimization_recommendations_are_most_valuable_first(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry), Thresholds(slow_operation_ms=1))
    with monitor.monitor_operation("loop"):
        run_queries(session, 20)
    with monitor.monitor_operation("nap"):
        time.sleep(0.01)

    recommendations = monitor.performance_report().optimization_recommendations

    assert {r.kind for r in recommendations} >= {"n_plus_one", "slow_operation"}
    scores = [r.value_score for r in recommendations]
    assert scores == sorted(scores, reverse=True)


# --- serialization and export ----------------------------------------------------------------

def monitored_with_everything(session: Session, telemetry: Telemetry) -> Monitor:
    execution = start_workflow(session, Shipment)
    monitor = Monitor(execution)
    with monitor.monitor_operation("lookup"):
        run_queries(session, 6)
    execution.perform_action("dispatch", user="courier")
    return monitor


def test_to_json_round_trips_through_json_loads_with_every_section(session: Session, telemetry: Telemetry) -> None:
    report = monitored_with_everything(session, telemetry).performance_report()

    data = json.loads(report.to_json())

    assert list(data) == ["execution_summary", "timing_analysis", "memory_analysis", "database_analysis",
                          "bottleneck_analysis", "optimization_recommendations", "slowest_traces"]
    assert {trace["root"] for trace in data["slowest_traces"]} == {"Shipment.start", "lookup", "Shipment.dispatch"}
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["execution_summary"]["execution_id"] == report.execution_summary.execution_id
    assert data["database_analysis"]["total_queries"] == report.database_analysis.total_queries
    assert [op["name"] for op in data["timing_analysis"]["operations"]] == [
        op.name for op in report.timing_analysis.operations]
    assert [(r["kind"], r["evidence"]["fingerprint"]) for r in data["optimization_recommendations"]] == [
        (r.kind, r.evidence.fingerprint) for r in report.optimization_recommendations]
    assert ("n_plus_one", LOOKUP_FINGERPRINT) in [
        (r["kind"], r["evidence"].get("fingerprint")) for r in data["optimization_recommendations"]]


def test_to_dict_leaves_unset_evidence_out(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry), Thresholds(slow_operation_ms=1))
    with monitor.monitor_operation("nap"):
        time.sleep(0.01)

    [slow] = [r for r in monitor.performance_report().to_dict()["optimization_recommendations"]
              if r["kind"] == "slow_operation"]

    assert "fingerprint" not in slow["evidence"]
    assert slow["evidence"]["unit"] == "ms" and slow["evidence"]["threshold"] == 1


def test_export_performance_data_as_json_is_the_report(session: Session, telemetry: Telemetry) -> None:
    monitor = monitored_with_everything(session, telemetry)

    data = json.loads(monitor.export_performance_data("json"))

    assert data["execution_summary"]["execution_id"] == monitor.execution_id
    assert {op["name"] for op in data["timing_analysis"]["operations"]} == {
        "Shipment.start", "lookup", "Shipment.dispatch"}


def test_export_performance_data_defaults_to_json(session: Session, telemetry: Telemetry) -> None:
    monitor = monitored_with_everything(session, telemetry)

    assert json.loads(monitor.export_performance_data())["execution_summary"]["execution_id"] == monitor.execution_id


def test_export_performance_data_as_csv_has_one_row_per_operation(session: Session, telemetry: Telemetry) -> None:
    monitor = monitored_with_everything(session, telemetry)

    rows = list(csv.DictReader(io.StringIO(monitor.export_performance_data("csv"))))

    assert list(rows[0]) == ["execution_id", "operation", "count", "total_ms", "mean_ms", "max_ms",
                             "queries", "errors"]
    assert {r["operation"] for r in rows} == {"Shipment.start", "lookup", "Shipment.dispatch"}
    assert {r["execution_id"] for r in rows} == {str(monitor.execution_id)}
    lookup = next(r for r in rows if r["operation"] == "lookup")
    assert (lookup["count"], lookup["queries"], lookup["errors"]) == ("1", "6", "0")
    assert float(lookup["total_ms"]) > 0


@pytest.mark.parametrize("bad", ["xml", "JSON", "", "csv "])
def test_export_performance_data_in_an_unknown_format_raises_value_error(
        bad: str, session: Session, telemetry: Telemetry) -> None:
    monitor = monitored_with_everything(session, telemetry)

    with pytest.raises(ValueError, match="unknown export format"):
        monitor.export_performance_data(bad)


# --- process_report() ------------------------------------------------------------------------

def test_process_report_is_built_from_the_aggregator(telemetry: Telemetry) -> None:
    for _ in range(3):
        with flowscope.operation("ingest"):
            pass
    with flowscope.operation("publish"):
        pass

    report = process_report(telemetry.aggregator)

    assert isinstance(report, ProcessReport)
    assert {op.name: op.count for op in report.operations} == {"ingest": 3, "publish": 1}


def test_process_report_reads_configure_s_aggregator_by_default(telemetry: Telemetry) -> None:
    with flowscope.operation("ingest"):
        pass

    assert [(op.name, op.count) for op in process_report().operations] == [("ingest", 1)]


def test_process_report_sorts_operations_by_p95_slowest_first(telemetry: Telemetry) -> None:
    for name, seconds in (("medium", 0.01), ("fast", 0.0), ("slow", 0.03), ("medium", 0.01)):
        with flowscope.operation(name):
            time.sleep(seconds)

    report = process_report(telemetry.aggregator)

    assert [op.name for op in report.operations] == ["slow", "medium", "fast"]
    p95s = [op.duration_ms.p95 for op in report.operations]
    assert p95s == sorted(p95s, reverse=True)
    assert report.bottlenecks.slowest[0].name == "slow"


def test_process_report_lists_an_n_plus_one_in_its_bottlenecks(session: Session, telemetry: Telemetry) -> None:
    [employee] = seed_employees(session, 1, role="support")
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    for action in ("order_equipment", "create_accounts", "start_orientation", "complete_orientation"):
        execution.perform_action(action, user="hr")
    tasks = len(employee.tasks)

    report = process_report(telemetry.aggregator)

    [(operation, fp)] = report.bottlenecks.n_plus_one
    assert operation == "EmployeeOnboarding.complete_orientation"
    assert fp.fingerprint.startswith("SELECT example_staff.id")
    assert "FROM example_staff WHERE example_staff.id = ?" in fp.fingerprint   # PostgreSQL adds ::INTEGER
    assert fp.max_repeats_in_span == fp.max_distinct_parameters_in_span == tasks == 8
    assert [(r.kind, r.operation) for r in report.recommendations if r.kind == "n_plus_one"] == [
        ("n_plus_one", "EmployeeOnboarding.complete_orientation")]


def test_process_report_to_json_round_trips_through_json_loads(session: Session, telemetry: Telemetry) -> None:
    with flowscope.operation("lookup"):
        run_queries(session, 6)

    report = process_report(telemetry.aggregator, span_store=telemetry.span_store)
    data = json.loads(report.to_json())

    assert [op["name"] for op in data["operations"]] == ["lookup"]
    assert data["operations"][0]["query_count"]["total"] == 6
    assert data["bottlenecks"]["n_plus_one"][0][0] == "lookup"
    assert data["recommendations"][0]["kind"] == "n_plus_one"
    assert data["recommendations"][0]["evidence"]["fingerprint"] == LOOKUP_FINGERPRINT
    assert set(data) == {"operations", "bottlenecks", "recommendations", "overflow_operations",
                         "telemetry_health", "slowest_traces", "unmeasured"}
    [lookup_trace] = data["slowest_traces"]
    assert lookup_trace["root"] == "lookup" and lookup_trace["spans"][0]["query_count"] == 6


def test_hotspots_add_up_statements_that_differ_only_in_inlined_literals(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(execution_without_history(session, telemetry))
    with monitor.monitor_operation("inlined"):
        for i in range(5):
            session.execute(text(f"SELECT current_step FROM workflow_executions WHERE id = {i}")).all()

    [hotspot] = [h for h in monitor.performance_report().database_analysis.hotspots if h.operation == "inlined"]

    assert hotspot.fingerprint == LOOKUP_FINGERPRINT
    assert (hotspot.executions, hotspot.max_in_one_operation) == (5, 5)
