"""Scenarios shared by the optimizer tests: real workflows and real queries, each with a clean twin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, selectinload

from flowscope.examples import Employee, EmployeeOnboarding, OnboardingTask, seed_employees
from flowscope.performance.optimizations import Recommendation, _caching, _eager_loading
from flowscope.telemetry import Telemetry
from flowscope.workflows import WorkflowExecution, start_workflow

ORIENTATION = ("order_equipment", "create_accounts", "start_orientation")
SIGN_OFF = "EmployeeOnboarding.complete_orientation"


def onboarding_at_orientation(session: Session, role: str = "support") -> tuple[WorkflowExecution, int]:
    """An onboarding execution one action short of the planted N+1 (tasks created, assigned),
    and its employee's id."""
    [employee] = seed_employees(session, 1, role=role)
    session.commit()
    employee_id = employee.id
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    for action in ORIENTATION:
        execution.perform_action(action, user="hr")
    return execution, employee_id


def assignee_names_lazily(engine: Engine, employee_id: int) -> list[str]:
    """The planted pattern in a new session: the tasks, then one lazy load per assignee."""
    with Session(engine) as session:
        employee = session.get(Employee, employee_id)
        return [task.assignee.name for task in employee.tasks]


def assignee_names_eagerly(engine: Engine, employee_id: int) -> list[str]:
    """The clean twin: the same names, the assignees loaded with the tasks."""
    with Session(engine) as session:
        tasks = session.scalars(select(OnboardingTask).where(OnboardingTask.employee_id == employee_id)
                                .options(selectinload(OnboardingTask.assignee))).all()
        return [task.assignee.name for task in tasks]


def select_loop(session: Session, n: int, same_parameters: bool = False) -> None:
    """``n`` Core text() SELECTs: each with its own parameter, or all with the same one."""
    for i in range(n):
        session.execute(text("SELECT current_step FROM workflow_executions WHERE id = :id"),
                        {"id": 1 if same_parameters else i}).all()


def batched_select(session: Session, n: int) -> None:
    """The clean twin of :func:`select_loop`: the same rows in one query."""
    ids = ", ".join(str(i) for i in range(n))
    session.execute(text(f"SELECT current_step FROM workflow_executions WHERE id IN ({ids})")).all()


def of_kind(recs: list[Recommendation], kind: str, operation: str | None = None) -> list[Recommendation]:
    return [r for r in recs if r.kind == kind and (operation is None or r.operation == operation)]


def span_queries(telemetry: Telemetry, operation: str) -> list[int]:
    return [int(s.attributes["workflow.db.query_count"]) for s in telemetry.span_store.by_operation(operation)]


def last_span(telemetry: Telemetry, operation: str) -> ReadableSpan:
    return telemetry.span_store.by_operation(operation)[-1]


@contextmanager
def no_optimizations_left() -> Iterator[None]:
    """Whatever a test enabled process-wide is gone afterwards, even if it failed."""
    try:
        yield
    finally:
        _eager_loading.disable_all()
        _caching.disable_all()


def as_json_text(*objects: Any) -> str:
    import json

    parts = []
    for obj in objects:
        data = obj.to_dict() if hasattr(obj, "to_dict") else obj
        parts.append(json.dumps(data, default=str))
    return "\n".join(parts)
