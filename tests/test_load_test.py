"""Specification of ``load_test()``: concurrent executions, every operation accounted for.

Real databases (a SQLite file and PostgreSQL, through the ``database_url`` fixture), real
threads and real worker processes. Counts are asserted exactly; timings only as "positive".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session
from support.load_workflows import (
    Crunch,
    Flaky,
    Gated,
    Inert,
    PingPong,
    SlowPingPong,
    failing_factory,
    last_action,
    stop_at_once,
)

from flowscope.examples import EXAMPLE_WORKFLOWS, Document, DocumentApproval
from flowscope.performance import (
    Benchmark,
    ImportTargetError,
    InvalidLoadParameterError,
    InvalidPolicyError,
    LoadProgress,
    LoadTestDatabaseError,
    LoadTestResult,
    LoadTestSetupError,
    NoInitialActionError,
    NotAWorkflowClassError,
    NotPicklableError,
    load_test,
    memory_stress_test,
)
from flowscope.workflows import Workflow, WorkflowTransition, start_workflow, step


@pytest.fixture
def fresh_url(engine, database_url: str) -> str:
    """``database_url`` with flowscope's and the examples' tables just recreated (ids from 1)."""
    return database_url


def assert_accounted_for(result: LoadTestResult) -> None:
    assert result.operations_planned == result.concurrent_executions * result.operations_per_execution
    assert result.operations_accounted_for == result.operations_planned


def test_every_planned_operation_is_performed_when_an_action_is_always_available(fresh_url: str) -> None:
    result = load_test(PingPong, concurrent_executions=4, operations_per_execution=5, database_url=fresh_url,
                       seed=1)

    assert result.executions_started == result.executions_completed == 4
    assert result.operations_performed == 20
    assert result.operations_failed == result.operations_skipped_no_action == result.operations_not_run == 0
    assert_accounted_for(result)
    assert result.latency_of("start").count == 4 and result.latency_of("hit").count == 20
    assert result.throughput > 0 and result.operations_per_second > result.throughput
    assert result.operation("PingPong.hit").count == 20
    assert result.operation("PingPong.start").count == 4
    assert result.errors == () and not result.interrupted


def test_operations_with_no_available_action_are_counted_not_performed(fresh_url: str) -> None:
    # DocumentApproval with the first available action: submit_for_review, approve, then the
    # execution is at a final step, so three of its five operations have nothing to perform.
    result = load_test(DocumentApproval, concurrent_executions=3, operations_per_execution=5,
                       database_url=fresh_url, seed=1)

    assert result.operations_performed == 3 * 2
    assert result.operations_skipped_no_action == 3 * 3
    assert_accounted_for(result)
    assert {s.action for s in result.latency} == {"start", "submit_for_review", "approve"}
    assert result.operation("DocumentApproval.approve").query_count.mean > 0   # query attribution works
    engine = create_engine(fresh_url)
    try:
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(WorkflowTransition)) == 6
            assert session.scalar(select(func.count()).select_from(Document)) == 3
    finally:
        engine.dispose()


def test_errors_are_grouped_by_type_and_never_abort_the_test(fresh_url: str) -> None:
    result = load_test(Flaky, concurrent_executions=6, operations_per_execution=3, database_url=fresh_url,
                       seed=1)

    # ids 1..6 on a fresh database: 2, 4 and 6 fail at "finish"; 1, 3 and 5 reach "done".
    assert result.executions_failed == 3 and result.executions_completed == 3
    [group] = result.errors
    assert group.type == "support.load_workflows.FlakyError"
    assert group.count == 3 and group.actions == {"finish": 3}
    assert "refuses to finish" in group.example
    assert result.operations_performed == 3 * 2 + 3 * 1
    assert result.operations_failed == 3
    assert result.operations_skipped_no_action == 3     # the completed ones: nothing after "done"
    assert result.operations_not_run == 3              # the failed ones: their third operation
    assert_accounted_for(result)
    assert result.operation("Flaky.finish").errors == 3


def test_processes_mode_merges_the_workers_results_into_one(fresh_url: str) -> None:
    result = load_test(PingPong, concurrent_executions=4, operations_per_execution=3, mode="processes", workers=2,
                       database_url=fresh_url, seed=1)

    assert result.mode == "processes" and result.workers == 2
    assert result.operations_performed == 12 and result.executions_completed == 4
    assert_accounted_for(result)
    assert [w.executions for w in result.worker_summaries] == [2, 2]
    assert [w.operations_performed for w in result.worker_summaries] == [6, 6]
    pids = {w.pid for w in result.worker_summaries}
    assert len(pids) == 2 and os.getpid() not in pids
    assert result.latency_of("hit").count == 12
    # spans recorded in the workers, replayed into one aggregating processor here
    assert result.operation("PingPong.hit").count == 12
    assert result.operation("PingPong.start").count == 4
    assert result.operation("PingPong.hit").query_count.mean > 0
    assert result.peak_memory_bytes >= sum(w.peak_rss_bytes for w in result.worker_summaries) > 0


def test_errors_in_worker_processes_are_counted_too(tmp_path: Path) -> None:
    result = load_test(Flaky, concurrent_executions=4, operations_per_execution=2, mode="processes", workers=2,
                       database_url=f"sqlite:///{tmp_path / 'flaky.db'}", seed=1)

    assert result.errors_total == 2 and result.errors[0].actions == {"finish": 2}
    assert result.operation("Flaky.finish").errors == 2
    assert_accounted_for(result)


def test_without_a_database_url_a_temporary_sqlite_file_is_used_and_removed() -> None:
    result = load_test(PingPong, concurrent_executions=2, operations_per_execution=2, seed=1)

    assert result.temporary_database
    assert result.database.startswith("sqlite:///")
    assert any("temporary SQLite file" in note for note in result.notes)
    assert any("one write lock" in note for note in result.notes)
    assert not Path(result.database.removeprefix("sqlite:///")).exists()
    assert result.operations_performed == 4


def test_a_sqlite_file_is_switched_to_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    load_test(PingPong, concurrent_executions=2, operations_per_execution=1, database_url=url, seed=1)

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


@pytest.mark.parametrize("workflow", EXAMPLE_WORKFLOWS, ids=lambda w: w.__qualname__)
def test_the_example_workflows_need_no_workflowable_factory(workflow: type[Workflow], tmp_path: Path) -> None:
    result = load_test(workflow, concurrent_executions=3, operations_per_execution=4,
                       database_url=f"sqlite:///{tmp_path / 'examples.db'}", seed=1)

    assert result.errors == (), result.errors
    assert result.operations_performed >= 3 * 2
    assert_accounted_for(result)


def test_a_workflowable_factory_gives_each_execution_its_record(tmp_path: Path) -> None:
    titles: list[str] = []

    def factory(session: Session, index: int) -> Document:
        titles.append(f"doc {index}")
        return Document(title=f"doc {index}", body="enough words to submit", author="ada")

    url = f"sqlite:///{tmp_path / 'factory.db'}"
    result = load_test(DocumentApproval, concurrent_executions=3, operations_per_execution=1, database_url=url,
                       workflowable_factory=factory, seed=1)

    assert sorted(titles) == ["doc 0", "doc 1", "doc 2"]
    assert result.operations_performed == 3
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            statuses = session.scalars(select(Document.status)).all()
            assert sorted(statuses) == ["pending_review"] * 3
    finally:
        engine.dispose()


def test_the_random_policy_is_repeatable_with_a_seed(tmp_path: Path) -> None:
    def actions(seed: int, name: str) -> dict[str, int]:
        result = load_test(DocumentApproval, concurrent_executions=4, operations_per_execution=4,
                           action_policy="random", seed=seed, database_url=f"sqlite:///{tmp_path / name}")
        assert_accounted_for(result)
        return {s.action: s.count for s in result.latency}

    first = actions(7, "a.db")
    assert actions(7, "b.db") == first
    assert "save_draft" in first or "submit_for_review" in first


def test_a_callable_policy_chooses_the_action(tmp_path: Path) -> None:
    result = load_test(DocumentApproval, concurrent_executions=2, operations_per_execution=1,
                       action_policy=last_action, database_url=f"sqlite:///{tmp_path / 'p.db'}", seed=1)
    assert {s.action for s in result.latency} == {"start", "save_draft"}


def test_a_policy_that_chooses_nothing_stops_its_execution(tmp_path: Path) -> None:
    result = load_test(PingPong, concurrent_executions=2, operations_per_execution=3, action_policy=stop_at_once,
                       database_url=f"sqlite:///{tmp_path / 'p.db'}", seed=1)
    assert result.operations_performed == 0 and result.operations_skipped_no_action == 6
    assert result.executions_completed == 2


def test_guards_that_leave_nothing_available_skip_every_operation(tmp_path: Path) -> None:
    result = load_test(Gated, concurrent_executions=2, operations_per_execution=3,
                       database_url=f"sqlite:///{tmp_path / 'g.db'}", seed=1)
    assert result.operations_skipped_no_action == 6 and result.operations_performed == 0


def test_interrupting_returns_the_partial_result(tmp_path: Path) -> None:
    calls = []

    def interrupt_once(state: LoadProgress) -> None:
        calls.append(state)
        if len(calls) == 2:
            raise KeyboardInterrupt      # what Ctrl-C raises in the calling thread

    result = load_test(SlowPingPong, concurrent_executions=2, operations_per_execution=500, seed=1,
                       database_url=f"sqlite:///{tmp_path / 'i.db'}", progress=interrupt_once)

    assert result.interrupted
    assert 0 < result.operations_performed < 1000
    assert result.operations_not_run > 0
    assert_accounted_for(result)


def test_the_aggregated_statistics_are_scoped_to_the_test(telemetry, tmp_path: Path) -> None:
    import flowscope

    with flowscope.operation("unrelated work"):
        pass
    result = load_test(PingPong, concurrent_executions=2, operations_per_execution=2,
                       database_url=f"sqlite:///{tmp_path / 's.db'}", seed=1)

    assert {op.name for op in result.operation_stats} == {"PingPong.start", "PingPong.hit"}
    # flowscope's process-wide aggregator is not reset: it still has the earlier operation
    assert telemetry.aggregator.operation("unrelated work") is not None
    assert telemetry.aggregator.operation("PingPong.hit").count >= 4


def test_the_result_is_data() -> None:
    result = Benchmark(seed=3).load_test(PingPong, concurrent_executions=2, operations_per_execution=2)
    data = result.to_dict()

    assert data["throughput"] == result.throughput
    assert data["seed"] == 3
    assert data["operations_accounted_for"] == 4
    assert '"latency"' in result.to_json()


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"concurrent_executions": 0}, "concurrent_executions must be at least 1, got 0"),
    ({"concurrent_executions": -3}, "concurrent_executions must be at least 1, got -3"),
    ({"operations_per_execution": 0}, "operations_per_execution must be at least 1, got 0"),
    ({"concurrent_executions": 2.5}, "concurrent_executions must be a whole number"),
    ({"mode": "fibers"}, "mode must be 'threads' or 'processes'"),
    ({"mode": "processes", "workers": 3, "concurrent_executions": 2}, "workers=3 is more than"),
    ({"workers": 2}, "needs mode='processes'"),
])
def test_out_of_range_parameters_are_refused_before_anything_runs(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidLoadParameterError, match=message) as info:
        load_test(PingPong, **kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("target", [int, "builtins:int", Workflow, object()])
def test_a_class_that_is_not_a_workflow_is_refused(target: object) -> None:
    with pytest.raises(NotAWorkflowClassError, match="is not a workflow class") as info:
        load_test(target)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_a_workflow_with_no_action_at_its_initial_step_is_refused() -> None:
    with pytest.raises(NoInitialActionError, match="Inert has no action at its initial step 'only'"):
        load_test(Inert)


@pytest.mark.parametrize("target, message", [
    ("no_such_module_xyz:Flow", "module 'no_such_module_xyz' cannot be imported"),
    ("flowscope.examples:NoSuchFlow", "has no attribute 'NoSuchFlow'"),
    ("flowscope.examples.DocumentApproval", "expected 'module:name'"),
])
def test_an_unimportable_target_names_the_problem(target: str, message: str) -> None:
    with pytest.raises(ImportTargetError, match=message):
        load_test(target)


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(InvalidPolicyError, match="unknown action_policy 'greedy'"):
        load_test(PingPong, action_policy="greedy")


def test_processes_mode_refuses_what_a_worker_process_could_not_import() -> None:
    class Local(Workflow):
        a = step(go="b")
        b = step()

    with pytest.raises(NotPicklableError, match="defined inside a function"):
        load_test(Local, mode="processes", concurrent_executions=2)
    with pytest.raises(NotPicklableError, match="action_policy"):
        load_test(PingPong, mode="processes", concurrent_executions=2, action_policy=lambda e, a: a[0])


@pytest.mark.parametrize("url, message", [
    ("sqlite://", "in-memory SQLite database"),
    ("not a url", "is not a database URL"),
    ("nosuchdialect://x/y", "unknown database dialect"),
])
def test_a_database_that_cannot_be_used_is_refused(url: str, message: str) -> None:
    with pytest.raises(LoadTestDatabaseError, match=message):
        load_test(PingPong, database_url=url)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_factory_that_fails_stops_the_test_before_the_clock_starts(mode: str, tmp_path: Path) -> None:
    with pytest.raises(LoadTestSetupError, match="LookupError: no record for execution 0"):
        load_test(PingPong, concurrent_executions=2, mode=mode, workflowable_factory=failing_factory,
                  database_url=f"sqlite:///{tmp_path / 'f.db'}")


# -- memory stress ------------------------------------------------------------------------------

def test_memory_stress_test_performs_actions_carrying_the_data_and_sees_memory_come_back(session: Session) -> None:
    execution = start_workflow(session, PingPong)

    result = memory_stress_test(execution, data_size_mb=2, operations=3)

    assert result.operations_completed == 3 and result.actions == ("hit", "hit", "hit")
    assert result.stopped_because == "done"
    assert result.python_peak_bytes is not None and result.python_peak_bytes >= 2 * 1024 * 1024
    assert result.peak_rss_bytes >= result.rss_before_bytes
    assert result.memory_returned, result
    stored = session.scalars(select(WorkflowTransition).where(WorkflowTransition.execution_id == execution.id)).all()
    assert len(stored) == 3 and len(stored[0].additional_context["stress_payload"]) == 2048


def test_memory_stress_test_stops_when_no_action_is_available(session: Session) -> None:
    [document] = _documents(session)
    execution = start_workflow(session, DocumentApproval, workflowable=document)

    result = Benchmark().memory_stress_test(execution, data_size_mb=0.5, operations=5, trace_python=False)

    assert result.operations_completed == 2 and result.stopped_because == "no available action"
    assert result.python_retained_bytes is None


def test_memory_stress_test_refuses_bad_input(session: Session) -> None:
    execution = start_workflow(session, PingPong)
    with pytest.raises(ValueError, match="data_size_mb must be a positive number"):
        memory_stress_test(execution, data_size_mb=0)
    with pytest.raises(ValueError, match="needs a WorkflowExecution"):
        memory_stress_test("execution 1")  # type: ignore[arg-type]


def _documents(session: Session) -> list[Document]:
    from flowscope.examples import seed_documents

    documents = seed_documents(session, 1)
    session.commit()
    return documents


def test_cpu_bound_work_runs_in_parallel_in_processes_mode(tmp_path: Path) -> None:
    """Smoke test of the CPU-bound workflow used by benchmarks/bench_load_scaling.py."""
    result = load_test(Crunch, concurrent_executions=2, operations_per_execution=2, mode="processes", workers=2,
                       database_url=f"sqlite:///{tmp_path / 'c.db'}", seed=1)
    assert result.operations_performed == 4 and result.errors == ()
