"""``QueryOptimizer``: N+1 and repeated-query findings from measured spans (one execution's, or the
whole process's), per operation across threads and asyncio tasks; its report; and
``optimize_queries_for_operation``, which proves a fix by measuring again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import flowscope
from flowscope.performance import Thresholds
from flowscope.performance.optimizations import QueryOptimizer
from flowscope.telemetry import Telemetry
from support.optimizer_scenarios import (
    SIGN_OFF,
    assignee_names_eagerly,
    assignee_names_lazily,
    batched_select,
    no_optimizations_left,
    of_kind,
    onboarding_at_orientation,
    select_loop,
)

STAFF_BY_ID = "FROM example_staff WHERE example_staff.id = ?"
SECRET = "s3cr3t-value-123"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    with no_optimizations_left():
        yield


# --- N+1 ------------------------------------------------------------------------------------

def test_the_planted_n_plus_one_names_the_relationship_its_eager_load_and_the_line(
        session: Session, telemetry: Telemetry) -> None:
    execution, _ = onboarding_at_orientation(session)
    execution.perform_action("complete_orientation", user="hr")

    [finding] = of_kind(QueryOptimizer(execution).recommendations(), "n_plus_one")

    assert finding.operation == SIGN_OFF
    assert finding.evidence.relationship == "OnboardingTask.assignee"
    assert finding.evidence.fingerprint.endswith(STAFF_BY_ID)
    assert "flowscope/examples/employee_onboarding.py:" in finding.evidence.call_site
    assert "selectinload(OnboardingTask.assignee)" in finding.suggestion
    assert finding.evidence.executions == finding.evidence.distinct_parameter_sets == 8


def test_the_whole_process_optimizer_finds_the_same_n_plus_one_in_the_aggregated_statistics(
        session: Session, telemetry: Telemetry) -> None:
    for _ in range(2):
        execution, _ = onboarding_at_orientation(session)
        execution.perform_action("complete_orientation", user="hr")

    [finding] = of_kind(QueryOptimizer().recommendations(), "n_plus_one")

    assert (finding.operation, finding.evidence.relationship, finding.evidence.spans) == (
        SIGN_OFF, "OnboardingTask.assignee", 2)


def test_a_loop_of_core_text_statements_is_n_plus_one_shown_by_fingerprint_and_line(
        session: Session, telemetry: Telemetry) -> None:
    with flowscope.operation("core_loop"):
        select_loop(session, 6)

    [finding] = of_kind(QueryOptimizer().recommendations(), "n_plus_one", "core_loop")

    assert finding.evidence.relationship is None
    assert finding.evidence.fingerprint == "SELECT current_step FROM workflow_executions WHERE id = ?"
    assert "optimizer_scenarios.py:" in finding.evidence.call_site
    assert "WHERE ... IN (...)" in finding.suggestion


@pytest.mark.parametrize("clean_twin", ["batched", "eager_loaded", "below_threshold", "identical_parameters"])
def test_the_clean_twins_of_an_n_plus_one_are_silent(
        clean_twin: str, engine: Engine, session: Session, telemetry: Telemetry) -> None:
    _, employee_id = onboarding_at_orientation(session)

    with flowscope.operation("twin"):
        if clean_twin == "batched":
            batched_select(session, 8)
        elif clean_twin == "eager_loaded":
            assert len(assignee_names_eagerly(engine, employee_id)) == 8
        elif clean_twin == "below_threshold":
            select_loop(session, 4)
        else:
            select_loop(session, 8, same_parameters=True)

    recs = QueryOptimizer().recommendations()
    assert of_kind(recs, "n_plus_one") == []
    assert bool(of_kind(recs, "repeated_query", "twin")) == (clean_twin == "identical_parameters")


def test_the_n_plus_one_threshold_is_configurable(session: Session, telemetry: Telemetry) -> None:
    with flowscope.operation("three"):
        select_loop(session, 3)

    assert of_kind(QueryOptimizer().recommendations(), "n_plus_one") == []
    assert len(of_kind(QueryOptimizer(thresholds=Thresholds(n_plus_one=3)).recommendations(), "n_plus_one")) == 1


def test_n_plus_one_is_found_per_operation_in_concurrent_threads(engine: Engine, telemetry: Telemetry) -> None:
    start = threading.Barrier(6)

    def request(name: str) -> None:
        with Session(engine) as session:
            start.wait()
            with flowscope.operation(name):
                select_loop(session, 6) if name == "looping" else batched_select(session, 6)

    threads = [threading.Thread(target=request, args=(name,)) for name in ["looping", "batched"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    [finding] = of_kind(QueryOptimizer().recommendations(), "n_plus_one")
    assert finding.operation == "looping"
    assert finding.evidence.executions == 6           # one thread's operation, not the three summed
    assert finding.evidence.spans == 3


def test_n_plus_one_is_found_in_an_operation_whose_queries_run_in_asyncio_tasks(
        engine: Engine, telemetry: Telemetry) -> None:
    def lookup(i: int) -> None:
        with Session(engine) as session:
            session.execute(text("SELECT current_step FROM workflow_executions WHERE id = :id"), {"id": i}).all()

    async def main() -> None:
        async with flowscope.operation("fan_out"):
            await asyncio.gather(*(asyncio.to_thread(lookup, i) for i in range(8)))
        async with flowscope.operation("single"):
            await asyncio.to_thread(lookup, 1)

    asyncio.run(main())

    [finding] = of_kind(QueryOptimizer().recommendations(), "n_plus_one")
    assert finding.operation == "fan_out"
    assert finding.evidence.executions == 8


# --- the report -----------------------------------------------------------------------------

def test_the_report_counts_queries_and_lists_eager_loading_and_caching_opportunities(
        session: Session, telemetry: Telemetry) -> None:
    execution, _ = onboarding_at_orientation(session)
    execution.perform_action("complete_orientation", user="hr")
    with flowscope.operation("same_again"):
        select_loop(session, 4, same_parameters=True)

    report = QueryOptimizer().optimization_report()

    counts = report.current_queries
    assert (counts.n_plus_one, counts.repeated, counts.slow) == (1, 1, 0)
    assert counts.total == sum(op.query_count.total for op in telemetry.aggregator.operations())
    [eager] = report.eager_loading_suggestions
    assert (eager.relationship, eager.option, eager.queries_saved_per_operation, eager.enabled) == (
        "OnboardingTask.assignee", "selectinload(OnboardingTask.assignee)", 7, False)
    [cache] = report.caching_opportunities
    assert (cache.operation, cache.repeats) == ("same_again", 4)
    assert report.recommended_indexes == () and not report.explain.requested
    assert {r.kind for r in report.optimization_opportunities} == {"n_plus_one", "repeated_query"}


def test_the_report_of_an_execution_covers_only_its_own_spans(session: Session, telemetry: Telemetry) -> None:
    looping, _ = onboarding_at_orientation(session)
    quiet, _ = onboarding_at_orientation(session)
    looping.perform_action("complete_orientation", user="hr")

    assert QueryOptimizer(looping).optimization_report().current_queries.n_plus_one == 1
    assert QueryOptimizer(quiet).optimization_report().current_queries.n_plus_one == 0


def test_the_report_holds_no_sql_parameter_values(session: Session, telemetry: Telemetry) -> None:
    with flowscope.operation("secret_lookups"):
        for _ in range(4):
            session.execute(text("SELECT id FROM workflow_executions WHERE assigned_to = :v"), {"v": SECRET}).all()
        for i in range(6):
            session.execute(text("SELECT id FROM workflow_executions WHERE current_step = :v"),
                            {"v": f"{SECRET}-{i}"}).all()
        for _ in range(3):
            session.execute(text(f"SELECT id FROM workflow_executions WHERE status = '{SECRET}'")).all()

    report = QueryOptimizer(thresholds=Thresholds(slow_query_ms=0.0)).optimization_report()

    assert {"n_plus_one", "repeated_query", "slow_query"} <= {r.kind for r in report.optimization_opportunities}
    assert SECRET not in report.to_json()


# --- optimize_queries_for_operation ---------------------------------------------------------

def test_optimize_queries_for_operation_eager_loads_what_its_n_plus_one_names_and_measures_again(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    _, employee_id = onboarding_at_orientation(session)
    optimizer = QueryOptimizer()

    result = optimizer.optimize_queries_for_operation(
        "sign_off_names", lambda: assignee_names_lazily(engine, employee_id))

    assert (result.queries_before, result.queries_after, result.queries_saved) == (10, 3, 7)
    assert result.applied == ("OnboardingTask.assignee",)
    assert [r.kind for r in result.findings_before] == ["n_plus_one"]
    assert result.findings_after == ()
    assert optimizer.eager_loading == ("OnboardingTask.assignee",)


def test_optimize_queries_for_clean_code_applies_nothing_and_measures_the_same(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    _, employee_id = onboarding_at_orientation(session)

    result = QueryOptimizer().optimize_queries_for_operation(
        "names_eagerly", lambda: assignee_names_eagerly(engine, employee_id))

    assert result.applied == ()
    assert result.queries_before == result.queries_after == 2
