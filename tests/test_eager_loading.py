"""``QueryOptimizer.enable_eager_loading``: the named relationships really load in one query per
level, in every session, for top-level queries and lazy loads alike; ``disable_eager_loading``
brings the lazy loads back. Query counts are measured (``measure``), never assumed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from flowscope.examples import (
    Document,
    Employee,
    ExampleBase,
    OnboardingTask,
    seed_documents,
    seed_employees,
)
from flowscope.performance.optimizations import QueryOptimizer, UnknownRelationshipError, measure
from flowscope.telemetry import Telemetry
from flowscope.workflows import Base, Workflow, WorkflowExecution, start_workflow, step
from support.optimizer_scenarios import (
    SIGN_OFF,
    assignee_names_lazily,
    no_optimizations_left,
    of_kind,
    onboarding_at_orientation,
    span_queries,
)


class Ticket(Workflow):
    opened = step(triage="triaged")
    triaged = step(resolve="resolved")
    resolved = step()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    with no_optimizations_left():
        yield


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'eager.db'}")
    ExampleBase.metadata.create_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def queries(fn) -> int:
    return measure(fn, "measured")[1].queries


def test_eager_loading_the_relationship_of_an_n_plus_one_loads_it_in_one_query(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    _, employee_id = onboarding_at_orientation(session)
    lazy = queries(lambda: assignee_names_lazily(engine, employee_id))

    QueryOptimizer().enable_eager_loading(["OnboardingTask.assignee"])
    eager = queries(lambda: assignee_names_lazily(engine, employee_id))

    assert lazy == 2 + 8                 # the employee, its tasks, one query per assignee
    assert eager == 3                    # the employee, its tasks, all assignees


def test_the_planted_sign_off_runs_one_query_for_all_assignees_once_eager_loaded(
        session: Session, telemetry: Telemetry) -> None:
    first, _ = onboarding_at_orientation(session)
    second, _ = onboarding_at_orientation(session)
    first.perform_action("complete_orientation", user="hr")
    optimizer = QueryOptimizer()

    optimizer.enable_eager_loading(["OnboardingTask.assignee"])
    second.perform_action("complete_orientation", user="hr")

    lazy, eager = span_queries(telemetry, SIGN_OFF)
    assert lazy - eager == 8 - 1
    assert of_kind(QueryOptimizer(second).recommendations(), "n_plus_one") == []
    assert len(of_kind(QueryOptimizer(first).recommendations(), "n_plus_one")) == 1


def test_disable_eager_loading_brings_the_lazy_loads_back(
        sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        _, employee_id = onboarding_at_orientation(session)
    optimizer = QueryOptimizer()
    optimizer.enable_eager_loading(["OnboardingTask.assignee"])

    optimizer.disable_eager_loading()

    assert queries(lambda: assignee_names_lazily(sqlite_engine, employee_id)) == 10
    assert optimizer.eager_loading == ()


def test_eager_loading_transitions_loads_the_history_of_listed_executions_in_one_query(
        engine: Engine, session: Session, telemetry: Telemetry) -> None:
    for _ in range(6):
        execution = start_workflow(session, Ticket)
        execution.perform_action("triage", user="ann")
        execution.perform_action("resolve", user="ann")

    def history_lengths() -> list[int]:
        with Session(engine) as fresh:
            return [len(e.transitions) for e in fresh.scalars(select(WorkflowExecution).order_by(WorkflowExecution.id))]

    lazy = queries(history_lengths)
    assert QueryOptimizer().enable_eager_loading(["transitions"]) == ("WorkflowExecution.transitions",)
    eager = queries(history_lengths)

    assert history_lengths() == [2] * 6
    assert (lazy, eager) == (1 + 6, 2)


def test_eager_loading_workflowable_loads_the_records_of_listed_executions_once_per_type(
        sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        records = seed_employees(session, 4) + seed_documents(session, 3)
        session.commit()
        for record in records:
            start_workflow(session, Ticket, workflowable=record)

    def workflowables() -> list[str]:
        with Session(sqlite_engine) as fresh:
            return [type(e.workflowable).__name__ for e in fresh.scalars(select(WorkflowExecution))]

    lazy = queries(workflowables)
    QueryOptimizer().enable_eager_loading(["workflowable"])
    eager = queries(workflowables)

    assert sorted(workflowables()) == ["Document"] * 3 + ["Employee"] * 4
    assert (lazy, eager) == (1 + 7, 1 + 2)          # one query per type: employees, documents


def test_a_single_execution_s_workflowable_is_not_preloaded(sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        [document] = seed_documents(session, 1)
        session.commit()
        execution_id = start_workflow(session, Ticket, workflowable=document).id
    QueryOptimizer().enable_eager_loading(["workflowable"])

    def status_only() -> str:
        with Session(sqlite_engine) as fresh:
            return fresh.get(WorkflowExecution, execution_id).status

    assert queries(status_only) == 1                # no query for a record nobody reads


def test_a_chained_path_eager_loads_every_level(sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        _, employee_id = onboarding_at_orientation(session)

    def names() -> list[str]:
        with Session(sqlite_engine) as fresh:
            loaded = fresh.scalars(select(Employee).where(Employee.id == employee_id)).one()
            return [task.assignee.name for task in loaded.tasks]

    lazy = queries(names)
    assert QueryOptimizer().enable_eager_loading(["Employee.tasks.assignee"]) == ("Employee.tasks.assignee",)

    assert (lazy, queries(names)) == (10, 3)


def test_column_queries_of_an_eager_loaded_class_run_unchanged(sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        _, employee_id = onboarding_at_orientation(session)
    QueryOptimizer().enable_eager_loading(["OnboardingTask.assignee"])

    with Session(sqlite_engine) as session:
        ids = session.scalars(select(OnboardingTask.id).where(OnboardingTask.employee_id == employee_id)).all()

    assert len(ids) == 8


def test_an_unknown_relationship_raises_and_enables_nothing() -> None:
    optimizer = QueryOptimizer()

    with pytest.raises(UnknownRelationshipError, match="OnboardingTask has no relationship 'owner'"):
        optimizer.enable_eager_loading(["transitions", "OnboardingTask.owner"])
    with pytest.raises(UnknownRelationshipError, match="neither a WorkflowExecution relationship"):
        optimizer.enable_eager_loading(["user"])
    with pytest.raises(UnknownRelationshipError, match="names a class but no relationship"):
        optimizer.enable_eager_loading(["Document"])

    assert optimizer.eager_loading == ()


def test_one_optimizer_disabling_leaves_another_s_eager_loading_on(
        sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        _, employee_id = onboarding_at_orientation(session)
    mine, theirs = QueryOptimizer(), QueryOptimizer()
    mine.enable_eager_loading(["OnboardingTask.assignee"])
    theirs.enable_eager_loading(["OnboardingTask.assignee", "transitions"])

    mine.disable_eager_loading()

    assert theirs.eager_loading == ("OnboardingTask.assignee", "WorkflowExecution.transitions")
    assert queries(lambda: assignee_names_lazily(sqlite_engine, employee_id)) == 3


def test_documents_without_relationships_are_unaffected(sqlite_engine: Engine, telemetry: Telemetry) -> None:
    with Session(sqlite_engine) as session:
        seed_documents(session, 3)
        session.commit()
    QueryOptimizer().enable_eager_loading(["OnboardingTask.assignee", "transitions"])

    with Session(sqlite_engine) as session:
        assert len(session.scalars(select(Document)).all()) == 3
