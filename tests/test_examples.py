"""The example workflows: each runs start to finish with real database effects, the onboarding
sign-off really is N+1 (one SELECT per task's assignee) and the order pick really is not."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event, func, inspect, select
from sqlalchemy.orm import Session

from flowscope.examples import (
    CHECKLIST,
    ENGINEERING_CHECKLIST,
    Document,
    DocumentApproval,
    EmployeeOnboarding,
    EmptyDocumentError,
    ExampleBase,
    OnboardingTask,
    Order,
    OrderFulfillment,
    OrderLine,
    OutOfStockError,
    Product,
    Staff,
    create_example_schema,
    seed_documents,
    seed_employees,
    seed_orders,
)
from flowscope.workflows import InvalidActionError, WorkflowExecution, WorkflowTransition, start_workflow

ONBOARDING = ("order_equipment", "create_accounts", "start_orientation", "complete_orientation")


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """Every statement the engine sends to the database while the block runs (SQL, parameters)."""
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def selects_from(statements: list[tuple[str, object]], table: str) -> list[tuple[str, object]]:
    pattern = re.compile(rf"^\s*SELECT\b.*\bFROM\s+{table}\b", re.IGNORECASE | re.DOTALL)
    return [s for s in statements if pattern.match(s[0])]


def path_of(session: Session, execution: WorkflowExecution) -> list[tuple[str, str, str]]:
    transitions = session.scalars(select(WorkflowTransition).where(WorkflowTransition.execution_id == execution.id)
                                  .order_by(WorkflowTransition.id))
    return [(t.from_step, t.action, t.to_step) for t in transitions]


# --- document approval ------------------------------------------------------------------------

def test_document_approval_declares_the_documented_steps() -> None:
    assert {name: dict(s.actions) for name, s in DocumentApproval.steps.items()} == {
        "draft": {"submit_for_review": "pending_review", "save_draft": "draft"},
        "pending_review": {"approve": "approved", "reject": "rejected", "request_changes": "draft"},
        "approved": {},
        "rejected": {"resubmit": "draft"},
    }
    assert DocumentApproval.initial_step == "draft"
    assert DocumentApproval.final_steps() == ["approved"]


def test_a_submitted_document_is_approved_by_a_reviewer(session: Session) -> None:
    [document] = seed_documents(session, 1)
    session.commit()
    execution = start_workflow(session, DocumentApproval, workflowable=document)

    execution.perform_action("submit_for_review", user=document.author)
    execution.perform_action("approve", user="rita", additional_context={"comment": "ship it"})

    assert path_of(session, execution) == [("draft", "submit_for_review", "pending_review"),
                                           ("pending_review", "approve", "approved")]
    assert (execution.current_step, execution.status) == ("approved", "completed")
    session.expire_all()
    stored = session.get(Document, document.id)
    assert stored.status == "approved"
    assert stored.word_count == len(stored.body.split()) > 0
    assert (stored.reviewed_by, stored.review_comment) == ("rita", "ship it")
    assert stored.reviewed_at is not None and stored.submitted_at is not None
    assert execution.context_data["word_count"] == stored.word_count
    assert execution.context_data["approved_by"] == "rita"


def test_a_rejected_document_can_be_resubmitted_revised_and_approved(session: Session) -> None:
    [document] = seed_documents(session, 1)
    session.commit()
    author = document.author
    execution = start_workflow(session, DocumentApproval, workflowable=document)

    execution.perform_action("submit_for_review", user=author)
    execution.perform_action("reject", user="sam", additional_context={"reason": "too long"})
    assert session.get(Document, document.id).status == "rejected"
    execution.perform_action("resubmit", user=author)
    execution.perform_action("save_draft", user=author, additional_context={"body": "short and sweet"})
    execution.perform_action("submit_for_review", user=author)
    execution.perform_action("approve", user="sam")

    assert [action for _, action, _ in path_of(session, execution)] == [
        "submit_for_review", "reject", "resubmit", "save_draft", "submit_for_review", "approve"]
    stored = session.get(Document, document.id)
    assert (stored.status, stored.word_count, stored.revision) == ("approved", 3, 3)
    assert execution.context_data["submissions"] == 2
    assert execution.context_data["rejected_by"] == "sam"


def test_the_author_cannot_review_their_own_document(session: Session) -> None:
    [document] = seed_documents(session, 1)
    session.commit()
    author = document.author
    execution = start_workflow(session, DocumentApproval, workflowable=document)
    execution.perform_action("submit_for_review", user=author)

    assert execution.available_actions(author) == []
    assert execution.available_actions(None) == []
    assert execution.available_actions("rita") == ["approve", "reject", "request_changes"]
    with pytest.raises(InvalidActionError, match="a guard refused it"):
        execution.perform_action("approve", user=author)
    assert execution.current_step == "pending_review"


def test_submitting_an_empty_document_fails_and_writes_nothing(session: Session) -> None:
    document = Document(title="Empty", body="   ", author="ada")
    session.add(document)
    session.commit()
    execution = start_workflow(session, DocumentApproval, workflowable=document)

    with pytest.raises(EmptyDocumentError, match="has no text"):
        execution.perform_action("submit_for_review", user="ada")

    assert execution.current_step == "draft"
    assert path_of(session, execution) == []
    assert session.get(Document, document.id).status == "draft"


# --- order fulfillment ------------------------------------------------------------------------

def test_a_paid_order_is_picked_shipped_and_delivered_taking_its_stock(session: Session) -> None:
    [order] = seed_orders(session, 1, lines_per_order=3)
    session.commit()
    taken = {line.product_id: line.quantity for line in order.lines}
    total = sum(line.quantity * line.unit_price_cents for line in order.lines)
    stock_before = {p.id: p.stock for p in session.scalars(select(Product))}
    execution = start_workflow(session, OrderFulfillment, workflowable=order)

    for action in ("pay", "pick", "ship", "deliver"):
        execution.perform_action(action, user="warehouse")

    assert path_of(session, execution) == [("placed", "pay", "paid"), ("paid", "pick", "picked"),
                                           ("picked", "ship", "shipped"), ("shipped", "deliver", "delivered")]
    assert execution.status == "completed"
    stored = session.get(Order, order.id)
    assert (stored.status, stored.total_cents, stored.tracking_number) == ("delivered", total, f"TRK-{order.id:06d}")
    assert stored.paid_at and stored.picked_at and stored.shipped_at and stored.delivered_at
    stock_after = {p.id: p.stock for p in session.scalars(select(Product))}
    assert stock_after == {pid: n - taken.get(pid, 0) for pid, n in stock_before.items()}
    assert execution.context_data["items_picked"] == sum(taken.values())


def test_an_order_cancelled_after_payment_is_refunded_and_keeps_stock(session: Session) -> None:
    [order] = seed_orders(session, 1)
    session.commit()
    stock_before = session.scalar(select(func.sum(Product.stock)))
    execution = start_workflow(session, OrderFulfillment, workflowable=order)

    execution.perform_action("pay", user="customer")
    execution.perform_action("cancel", user="support", additional_context={"reason": "duplicate"})

    assert (execution.current_step, execution.status) == ("cancelled", "completed")
    stored = session.get(Order, order.id)
    assert (stored.status, stored.cancel_reason) == ("cancelled", "duplicate")
    assert execution.context_data["refund_cents"] == stored.total_cents > 0
    assert session.scalar(select(func.sum(Product.stock))) == stock_before


def test_a_picked_order_can_no_longer_be_cancelled(session: Session) -> None:
    [order] = seed_orders(session, 1)
    session.commit()
    execution = start_workflow(session, OrderFulfillment, workflowable=order)
    execution.perform_action("pay")
    execution.perform_action("pick")

    with pytest.raises(InvalidActionError):
        execution.perform_action("cancel")


def test_picking_without_enough_stock_takes_nothing(session: Session) -> None:
    [order] = seed_orders(session, 1, lines_per_order=2)
    session.commit()
    first, second = order.lines
    first.product.stock = 100
    second.product.stock = second.quantity - 1
    session.commit()
    execution = start_workflow(session, OrderFulfillment, workflowable=order)
    execution.perform_action("pay")

    with pytest.raises(OutOfStockError, match=second.product.sku) as raised:
        execution.perform_action("pick")

    assert raised.value.order_id == order.id
    assert execution.current_step == "paid"
    assert session.get(Product, first.product_id).stock == 100       # the line that fit was not taken either
    assert session.get(Product, second.product_id).stock == second.quantity - 1
    assert session.get(Order, order.id).status == "paid"


def test_pick_query_count_does_not_grow_with_the_number_of_lines(engine: Engine, session: Session) -> None:
    small, large = seed_orders(session, 1, lines_per_order=1) + seed_orders(session, 1, lines_per_order=10)
    session.commit()
    counts = {}
    for order in (small, large):
        execution = start_workflow(session, OrderFulfillment, workflowable=order)
        execution.perform_action("pay")
        with recorded_statements(engine) as statements:
            execution.perform_action("pick")
        counts[len(order.lines)] = len(statements)
        assert len(selects_from(statements, "example_products")) <= 1
        assert len(selects_from(statements, "example_order_lines")) <= 1

    assert counts[10] == counts[1], counts


# --- employee onboarding ----------------------------------------------------------------------

@pytest.mark.parametrize("role, expected_tasks", [("support", len(CHECKLIST)),
                                                  ("engineer", len(CHECKLIST) + len(ENGINEERING_CHECKLIST))])
def test_onboarding_creates_assigned_tasks_and_finishes_them(session: Session, role: str,
                                                             expected_tasks: int) -> None:
    [employee] = seed_employees(session, 1, role=role)
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)

    for action in ONBOARDING:
        execution.perform_action(action, user="hr")

    assert [a for _, a, _ in path_of(session, execution)] == list(ONBOARDING)
    assert (execution.current_step, execution.status) == ("onboarded", "completed")
    tasks = session.scalars(select(OnboardingTask).where(OnboardingTask.employee_id == employee.id)).all()
    assert len(tasks) == expected_tasks
    assert all(task.done and task.completed_at is not None for task in tasks)
    assert len({task.assignee_id for task in tasks}) == expected_tasks       # each its own assignee
    assert all(task.assignee.department == task.department for task in tasks)
    stored = session.get(type(employee), employee.id)
    assert stored.status == "onboarded" and stored.onboarded_at is not None
    assert stored.work_email and stored.work_email.endswith("@example.com")
    assert execution.context_data["tasks_created"] == expected_tasks
    assert len(execution.context_data["signed_off_by"]) == expected_tasks


def test_creating_accounts_ticks_off_the_it_task_only(session: Session) -> None:
    [employee] = seed_employees(session, 1, role="support")
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    execution.perform_action("order_equipment")
    execution.perform_action("create_accounts")

    done = session.scalars(select(OnboardingTask.department).where(OnboardingTask.employee_id == employee.id,
                                                                   OnboardingTask.done)).all()
    assert done == ["IT"]


def test_complete_orientation_loads_every_assignee_with_its_own_query(engine: Engine, session: Session) -> None:
    """The planted N+1: one SELECT on example_staff per task, each for a different staff id."""
    [employee] = seed_employees(session, 1, role="support")
    session.commit()
    execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
    for action in ONBOARDING[:-1]:
        execution.perform_action(action, user="hr")
    tasks = session.scalar(select(func.count()).where(OnboardingTask.employee_id == employee.id))
    assert tasks == 8
    session.expire_all()     # as after any commit: nothing left loaded

    with recorded_statements(engine) as statements:
        execution.perform_action("complete_orientation", user="hr")

    staff_selects = selects_from(statements, "example_staff")
    assert len(staff_selects) >= tasks
    assert len({str(parameters) for _, parameters in staff_selects}) >= tasks     # N different parameters


def test_the_onboarding_n_plus_1_grows_with_the_number_of_tasks(engine: Engine, session: Session) -> None:
    counts = {}
    for role in ("support", "engineer"):
        [employee] = seed_employees(session, 1, role=role)
        session.commit()
        execution = start_workflow(session, EmployeeOnboarding, workflowable=employee)
        for action in ONBOARDING[:-1]:
            execution.perform_action(action)
        with recorded_statements(engine) as statements:
            execution.perform_action("complete_orientation")
        counts[role] = len(selects_from(statements, "example_staff"))

    assert counts["engineer"] - counts["support"] == len(ENGINEERING_CHECKLIST)


# --- schema and seeding -----------------------------------------------------------------------

def test_create_example_schema_creates_both_sets_of_tables_and_is_idempotent(tmp_path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    create_example_schema(engine)
    create_example_schema(engine)

    tables = set(inspect(engine).get_table_names())
    assert {"workflow_executions", "workflow_transitions"} <= tables
    assert set(ExampleBase.metadata.tables) <= tables
    assert all(name.startswith("example_") for name in ExampleBase.metadata.tables)
    engine.dispose()


def test_seed_helpers_are_deterministic_for_a_given_rng(session: Session) -> None:
    first = [(d.title, d.author, d.body) for d in seed_documents(session, 3, random.Random(7))]
    second = [(d.title, d.author, d.body) for d in seed_documents(session, 3, random.Random(7))]
    assert first == second


def test_seed_orders_uses_distinct_products_per_order(session: Session) -> None:
    orders = seed_orders(session, 5, random.Random(3), lines_per_order=(2, 6))
    session.commit()
    for order in orders:
        products = [line.product_id for line in order.lines]
        assert 2 <= len(products) <= 6 and len(set(products)) == len(products)
    assert session.scalar(select(func.count()).select_from(OrderLine)) == sum(len(o.lines) for o in orders)
    assert session.scalar(select(func.count()).select_from(Staff)) == 0       # orders need no staff
