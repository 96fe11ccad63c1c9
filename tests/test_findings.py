"""The finding rules (``analysis/_findings.py``): each fires on a real measurement above its
threshold and stays silent on the clean twin below it.

N+1 is one SELECT run with many different parameters in one operation (the planted lazy load in
``EmployeeOnboarding.complete_orientation``); a repeated query is one statement with the same
parameters; write loops are neither. Recommendations never carry SQL parameter values.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, selectinload

from flowscope.examples import (
    Employee,
    EmployeeOnboarding,
    OnboardingTask,
    OrderFulfillment,
    Staff,
    seed_employees,
    seed_orders,
)
from flowscope.performance import Monitor, Thresholds, process_report
from flowscope.performance.optimizations import KINDS, SEVERITIES, Recommendation
from flowscope.telemetry import Telemetry, fingerprint
from flowscope.workflows import Workflow, WorkflowExecution, start_workflow, step

MiB = 1024 * 1024
STAFF_BY_ID = "FROM example_staff WHERE example_staff.id = ?"   # PostgreSQL adds a bind cast: ?::INTEGER
SECRET = "s3cr3t-value-123"


class Job(Workflow):
    queued = step(run="done")
    done = step()


def recommendations(monitor: Monitor) -> list[Recommendation]:
    return list(monitor.performance_report().optimization_recommendations)


def of_kind(recs: list[Recommendation], kind: str, operation: str | None = None) -> list[Recommendation]:
    return [r for r in recs if r.kind == kind and (operation is None or r.operation == operation)]


def job_monitor(session: Session, thresholds: Thresholds | None = None) -> Monitor:
    return Monitor(start_workflow(session, Job), thresholds)


def select_loop(session: Session, n: int, same_parameters: bool = False) -> None:
    """``n`` executions of one SELECT: each with its own parameter, or all with the same one."""
    for i in range(n):
        session.execute(text("SELECT current_step FROM workflow_executions WHERE id = :id"),
                        {"id": 1 if same_parameters else i}).all()


def onboarding_at_orientation(session: Session, role: str = "support") -> tuple[WorkflowExecution, Employee]:
    """An onboarding execution whose tasks exist, one action short of the planted N+1."""
    [employee] = seed_employees(session, 1, role=role)
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    for action in ("order_equipment", "create_accounts", "start_orientation"):
        execution.perform_action(action, user="hr")
    return execution, employee


def task_count(session: Session, employee_id: int) -> int:
    return len(session.scalars(select(OnboardingTask.id).where(OnboardingTask.employee_id == employee_id)).all())


# --- N+1: the planted one, and its clean twins ------------------------------------------------

@pytest.mark.parametrize("role", ["support", "engineer"])
def test_the_planted_n_plus_one_in_complete_orientation_is_found(
        role: str, session: Session, telemetry: Telemetry) -> None:
    execution, employee = onboarding_at_orientation(session, role)
    monitor = Monitor(execution)
    execution.perform_action("complete_orientation", user="hr")
    tasks = task_count(session, employee.id)

    [finding] = of_kind(recommendations(monitor), "n_plus_one")

    assert finding.operation == "EmployeeOnboarding.complete_orientation"
    assert finding.evidence.fingerprint.startswith("SELECT example_staff.id")
    assert STAFF_BY_ID in finding.evidence.fingerprint
    assert finding.evidence.executions == finding.evidence.distinct_parameter_sets == tasks
    assert tasks == (10 if role == "engineer" else 8)
    assert finding.estimated_savings.queries == tasks - 1
    assert str(tasks) in finding.message


def test_an_n_plus_one_inside_a_monitored_operation_is_reported_once_at_the_innermost_operation(
        session: Session, telemetry: Telemetry) -> None:
    execution, _ = onboarding_at_orientation(session)
    monitor = Monitor(execution)

    with monitor.monitor_operation("finish_onboarding"):
        execution.perform_action("complete_orientation", user="hr")
        session.execute(select(Employee.status)).all()          # the outer operation does more

    [finding] = of_kind(recommendations(monitor), "n_plus_one")
    assert finding.operation == "EmployeeOnboarding.complete_orientation"


def test_the_same_loop_with_lazy_loads_in_a_test_operation_is_n_plus_one(
        session: Session, telemetry: Telemetry) -> None:
    execution, employee = onboarding_at_orientation(session)
    monitor = Monitor(execution)
    employee_id = employee.id
    session.expire_all()                  # nothing loaded: as in a new request

    with monitor.monitor_operation("sign_off_lazily"):
        tasks = session.scalars(select(OnboardingTask).where(OnboardingTask.employee_id == employee_id)).all()
        names = [task.assignee.name for task in tasks]

    [finding] = of_kind(recommendations(monitor), "n_plus_one", "sign_off_lazily")
    assert STAFF_BY_ID in finding.evidence.fingerprint
    assert finding.evidence.executions == len(names) == 8


def test_the_same_loop_after_selectinload_is_silent(session: Session, telemetry: Telemetry) -> None:
    execution, employee = onboarding_at_orientation(session)
    monitor = Monitor(execution)
    employee_id = employee.id
    session.expire_all()                  # nothing loaded: as in a new request

    with monitor.monitor_operation("sign_off_eagerly"):
        tasks = session.scalars(select(OnboardingTask).where(OnboardingTask.employee_id == employee_id)
                                .options(selectinload(OnboardingTask.assignee))).all()
        names = [task.assignee.name for task in tasks]

    assert len(names) == 8
    [span] = telemetry.span_store.by_operation("sign_off_eagerly")
    assert span.attributes["workflow.db.query_count"] == 2          # the tasks, then all assignees
    assert of_kind(recommendations(monitor), "n_plus_one") == []


def test_order_pick_batches_its_lines_and_is_not_n_plus_one(session: Session, telemetry: Telemetry) -> None:
    [order] = seed_orders(session, 1, lines_per_order=6)
    session.commit()
    execution = start_workflow(session, OrderFulfillment, workflowable=order)
    monitor = Monitor(execution)
    for action in ("pay", "pick", "ship", "deliver"):
        execution.perform_action(action, user="warehouse")

    report = monitor.performance_report()

    pick = next(t for t in report.timing_analysis.operations if t.name == "OrderFulfillment.pick")
    assert pick.queries < 6 + 2                                      # not one query per line
    assert of_kind(list(report.optimization_recommendations), "n_plus_one") == []


# --- the N+1 threshold -----------------------------------------------------------------------

def test_a_loop_below_the_n_plus_one_threshold_is_silent(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)                                   # n_plus_one = 5

    with monitor.monitor_operation("four"):
        select_loop(session, 4)

    assert of_kind(recommendations(monitor), "n_plus_one") == []


def test_a_loop_reaching_the_n_plus_one_threshold_is_found(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)

    with monitor.monitor_operation("five"):
        select_loop(session, 5)

    [finding] = of_kind(recommendations(monitor), "n_plus_one", "five")
    assert finding.evidence.fingerprint == "SELECT current_step FROM workflow_executions WHERE id = ?"
    assert finding.evidence.executions == 5


def test_the_n_plus_one_threshold_is_data(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(n_plus_one=3))

    with monitor.monitor_operation("three"):
        select_loop(session, 3)

    assert len(of_kind(recommendations(monitor), "n_plus_one", "three")) == 1


# --- repeated queries and write loops --------------------------------------------------------

def test_an_identical_statement_with_identical_parameters_is_a_repeated_query_not_n_plus_one(
        session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)

    with monitor.monitor_operation("same_again"):
        select_loop(session, 6, same_parameters=True)

    recs = recommendations(monitor)
    [repeated] = of_kind(recs, "repeated_query", "same_again")
    assert repeated.evidence.executions == 6
    assert repeated.evidence.distinct_parameter_sets == 1
    assert repeated.estimated_savings.queries == 5
    assert of_kind(recs, "n_plus_one") == []


def test_a_statement_repeated_below_the_threshold_is_silent(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)                                   # repeated_query = 3

    with monitor.monitor_operation("twice"):
        select_loop(session, 2, same_parameters=True)

    assert of_kind(recommendations(monitor), "repeated_query") == []


def test_an_insert_loop_is_not_n_plus_one(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)

    with monitor.monitor_operation("hire_staff"):
        for i in range(12):
            session.execute(insert(Staff).values(name=f"temp {i}", email=f"temp{i}@example.com", department="Ops"))
    session.commit()

    [span] = telemetry.span_store.by_operation("hire_staff")
    assert span.attributes["workflow.db.query_count"] == 12
    assert session.scalar(select(Staff.id).where(Staff.name == "temp 11")) is not None
    assert of_kind(recommendations(monitor), "n_plus_one") == []
    [loop] = of_kind(recommendations(monitor), "write_loop", "hire_staff")   # one INSERT per row
    assert loop.evidence.executions == 12 and loop.estimated_savings.queries == 11
    assert "session.execute(insert(Model), rows)" in loop.suggestion


def test_an_update_loop_is_not_n_plus_one(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)

    with monitor.monitor_operation("touch_all"):
        for i in range(8):
            session.execute(text("UPDATE workflow_executions SET assigned_to = :who WHERE id = :id"),
                            {"who": f"user{i}", "id": i})
    session.commit()

    assert of_kind(recommendations(monitor), "n_plus_one") == []


# --- operation rules: slow, many queries, memory ---------------------------------------------

def test_slow_operation_fires_above_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(slow_operation_ms=1))

    with monitor.monitor_operation("nap"):
        time.sleep(0.01)

    [finding] = of_kind(recommendations(monitor), "slow_operation", "nap")
    assert finding.evidence.value >= 10.0
    assert (finding.evidence.unit, finding.evidence.threshold) == ("ms", 1)
    assert finding.severity == "high"                                # >= 4x the threshold


def test_slow_operation_is_silent_below_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(slow_operation_ms=10_000))

    with monitor.monitor_operation("nap"):
        time.sleep(0.01)

    assert of_kind(recommendations(monitor), "slow_operation") == []


def test_high_query_count_fires_above_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(high_query_count=5))

    with monitor.monitor_operation("chatty"):
        select_loop(session, 6, same_parameters=True)

    [finding] = of_kind(recommendations(monitor), "high_query_count", "chatty")
    assert (finding.evidence.value, finding.evidence.unit, finding.evidence.threshold) == (6, "queries", 5)
    assert finding.estimated_savings.queries == 1


def test_high_query_count_on_writes_advises_batching_the_writes_not_eager_loading(
        session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(high_query_count=5))

    with monitor.monitor_operation("fixture_rows"):
        for i in range(8):
            session.execute(insert(Staff).values(name=f"f{i}", email=f"f{i}@example.com", department="Ops"))
    session.commit()

    [finding] = of_kind(recommendations(monitor), "high_query_count", "fixture_rows")
    assert "100% of them INSERT/UPDATE/DELETE" in finding.message
    assert "executemany" in finding.suggestion and "eager" not in finding.suggestion


def test_a_slow_operation_spending_its_time_outside_the_database_says_so(
        session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(slow_operation_ms=20))

    with monitor.monitor_operation("hash_password"):
        session.execute(text("SELECT 1")).all()
        deadline = time.process_time() + 0.03
        while time.process_time() < deadline:      # CPU work: password hashing, say
            pass

    [finding] = of_kind(recommendations(monitor), "slow_operation", "hash_password")
    assert "the rest is the application's own work" in finding.message
    assert "Profile the code" in finding.suggestion and "N+1" not in finding.suggestion


def test_per_operation_thresholds_apply_to_the_operations_their_glob_matches(
        session: Session, telemetry: Telemetry) -> None:
    thresholds = Thresholds(per_operation={"report.*": Thresholds(n_plus_one=20)})
    monitor = job_monitor(session, thresholds)

    for name in ("report.monthly", "checkout"):
        with monitor.monitor_operation(name):
            select_loop(session, 8)

    assert {r.operation for r in of_kind(recommendations(monitor), "n_plus_one")} == {"checkout"}
    assert thresholds.for_operation("report.monthly").n_plus_one == 20
    assert thresholds.for_operation("checkout") is thresholds
    with pytest.raises(TypeError, match="maps operation-name globs .str. to Thresholds; got 'x': int"):
        Thresholds(per_operation={"x": 5})


@pytest.mark.parametrize("source", ["execution spans", "process statistics"])
def test_high_query_count_judges_an_enclosing_operation_on_the_queries_it_ran_itself(
        session: Session, telemetry: Telemetry, source: str) -> None:
    thresholds = Thresholds(high_query_count=5)
    monitor = job_monitor(session, thresholds)

    with monitor.monitor_operation("suite"):           # 2 queries of its own around 2 chatty ones
        select_loop(session, 1)
        for _ in range(2):
            with monitor.monitor_operation("request"):
                select_loop(session, 6, same_parameters=True)
        select_loop(session, 1)
    with monitor.monitor_operation("busy suite"):      # 6 of its own, and a chatty nested one
        select_loop(session, 6, same_parameters=True)
        with monitor.monitor_operation("request"):
            select_loop(session, 6, same_parameters=True)

    found = recommendations(monitor) if source == "execution spans" else list(
        process_report(thresholds=thresholds).recommendations)
    counted = {r.operation: r for r in of_kind(found, "high_query_count")}
    assert set(counted) == {"request", "busy suite"}            # "suite" ran 2 itself: not chatty
    assert counted["busy suite"].evidence.value == 6
    assert "runs 6 queries of its own (12 with its nested operations)" in counted["busy suite"].message


def test_high_query_count_is_silent_below_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(high_query_count=5))

    with monitor.monitor_operation("modest"):
        select_loop(session, 4, same_parameters=True)

    assert of_kind(recommendations(monitor), "high_query_count", "modest") == []


def test_memory_growth_fires_above_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(memory_growth_bytes=16 * MiB))

    with monitor.monitor_operation("hoard"):
        ballast = b"\x01" * (48 * MiB)
    try:
        [finding] = of_kind(recommendations(monitor), "memory_growth", "hoard")
    finally:
        del ballast

    assert finding.evidence.value >= 40 * MiB
    assert finding.evidence.unit == "bytes"


def test_memory_growth_is_silent_below_its_threshold(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(memory_growth_bytes=256 * MiB))

    with monitor.monitor_operation("hoard"):
        ballast = b"\x01" * (48 * MiB)
    try:
        assert of_kind(recommendations(monitor), "memory_growth") == []
    finally:
        del ballast


def test_an_operation_under_every_default_threshold_has_no_findings(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)
    telemetry.span_store.clear()          # only the operation below

    with monitor.monitor_operation("tidy"):
        select_loop(session, 2)

    assert recommendations(monitor) == []


# --- no secrets in recommendations -----------------------------------------------------------

def test_recommendations_contain_no_sql_parameter_values(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session, Thresholds(slow_query_ms=0.0))   # every statement is "slow" too

    with monitor.monitor_operation("secret_lookups"):
        for _ in range(4):      # repeated query, bound parameter
            session.execute(text("SELECT id FROM workflow_executions WHERE assigned_to = :v"), {"v": SECRET}).all()
        for i in range(6):      # N+1, bound parameters
            session.execute(text("SELECT id FROM workflow_executions WHERE current_step = :v"),
                            {"v": f"{SECRET}-{i}"}).all()
        for _ in range(3):      # repeated query, inline literal
            session.execute(text(f"SELECT id FROM workflow_executions WHERE status = '{SECRET}'")).all()

    report = monitor.performance_report()
    kinds = {r.kind for r in report.optimization_recommendations}
    assert {"n_plus_one", "repeated_query", "slow_query"} <= kinds
    assert SECRET not in report.to_json()
    assert SECRET not in monitor.export_performance_data("csv")
    assert SECRET not in process_report(telemetry.aggregator, Thresholds(slow_query_ms=0.0)).to_json()


def test_fingerprints_replace_literals_and_placeholders() -> None:
    assert fingerprint(f"SELECT id FROM t WHERE name = '{SECRET}' AND n = 42") == "SELECT id FROM t WHERE name = ? AND n = ?"
    assert fingerprint("SELECT id FROM t WHERE a = %(a_1)s AND b = $2 AND c = :c") == "SELECT id FROM t WHERE a = ? AND b = ? AND c = ?"


# --- Recommendation itself -------------------------------------------------------------------

def test_recommendation_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown recommendation kind 'too_slow'"):
        Recommendation(kind="too_slow", severity="low", operation="x", message="m", suggestion="s")  # type: ignore[arg-type]


def test_recommendation_rejects_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="unknown severity 'critical'"):
        Recommendation(kind="n_plus_one", severity="critical", operation="x", message="m", suggestion="s")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_recommendation_accepts_every_documented_kind(kind: str) -> None:
    for severity in SEVERITIES:
        assert Recommendation(kind=kind, severity=severity, operation="x", message="m", suggestion="s").kind == kind  # type: ignore[arg-type]


def test_recommendation_value_weighs_savings_by_severity() -> None:
    from flowscope.performance.optimizations import Savings

    low = Recommendation(kind="n_plus_one", severity="low", operation="x", message="m", suggestion="s",
                         estimated_savings=Savings(queries=9, milliseconds=10.0))
    high = Recommendation(kind="n_plus_one", severity="high", operation="x", message="m", suggestion="s",
                          estimated_savings=Savings(queries=9, milliseconds=10.0))

    assert high.value_score == 4 * low.value_score == 4 * (1 + 9 + 10.0)


def test_a_loop_with_literals_inlined_in_the_sql_is_still_n_plus_one(session: Session, telemetry: Telemetry) -> None:
    """Six raw statements that differ only in an inlined literal are one fingerprint, six times."""
    monitor = job_monitor(session)

    with monitor.monitor_operation("inlined"):
        for i in range(6):
            session.execute(text(f"SELECT current_step FROM workflow_executions WHERE id = {i}")).all()

    recs = recommendations(monitor)
    [finding] = of_kind(recs, "n_plus_one", "inlined")
    assert finding.evidence.fingerprint == "SELECT current_step FROM workflow_executions WHERE id = ?"
    assert finding.evidence.executions == finding.evidence.distinct_parameter_sets == 6
    assert of_kind(recs, "repeated_query") == []


def test_the_same_inlined_statement_repeated_is_a_repeated_query(session: Session, telemetry: Telemetry) -> None:
    monitor = job_monitor(session)

    with monitor.monitor_operation("inlined_again"):
        for _ in range(6):
            session.execute(text("SELECT current_step FROM workflow_executions WHERE id = 1")).all()

    recs = recommendations(monitor)
    [repeated] = of_kind(recs, "repeated_query", "inlined_again")
    assert repeated.evidence.executions == 6
    assert of_kind(recs, "n_plus_one") == []
