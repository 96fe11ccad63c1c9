"""``Monitor``: one execution's operations as spans, measured exactly, on real databases.

Every monitored block is a ``flowscope.operation`` span tagged with the execution's id; the
context-manager, callable and start/end forms all measure the same things (time, memory,
queries), and misuse gets a typed error.
"""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from opentelemetry import trace
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from flowscope.performance import Monitor, OperationMetrics, UnknownOperationError
from flowscope.telemetry import Telemetry
from flowscope.telemetry._frames import innermost_frame
from flowscope.workflows import Workflow, WorkflowExecution, on, start_workflow, step


class Checkout(Workflow):
    cart = step(pay="paid")
    paid = step(ship="shipped")
    shipped = step()

    @on("pay")
    def note_payer(self, execution, user, context):
        execution.context_data["paid_by"] = user


def run_queries(session: Session, n: int) -> None:
    """Exactly ``n`` database round trips (one SELECT each)."""
    for i in range(n):
        session.execute(select(WorkflowExecution.id).where(WorkflowExecution.id == i)).all()


def spans_named(telemetry: Telemetry, name: str) -> list:
    return telemetry.span_store.by_operation(name)


# --- the context-manager form ----------------------------------------------------------------

def test_monitor_operation_as_a_context_manager_makes_one_span_with_the_block_s_queries(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    with monitor.monitor_operation("browse"):
        run_queries(session, 3)

    [span] = spans_named(telemetry, "browse")
    assert span.attributes["workflow.db.query_count"] == 3


def test_monitor_operation_as_a_context_manager_yields_the_recording_span(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    with monitor.monitor_operation("browse") as span:
        assert span.is_recording()
        assert trace.get_current_span() is span


def test_monitor_operation_spans_carry_the_execution_id_and_class(session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Checkout)
    monitor = Monitor(execution)

    with monitor.monitor_operation("tagged"):
        pass

    [span] = spans_named(telemetry, "tagged")
    assert span.attributes["workflow.execution.id"] == execution.id
    assert span.attributes["workflow.class"] == Checkout.import_path()


def test_monitor_operation_records_an_exception_and_reraises_it_unchanged(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))
    boom = RuntimeError("boom")

    with pytest.raises(RuntimeError) as raised, monitor.monitor_operation("failing"):
        raise boom

    assert raised.value is boom
    [span] = spans_named(telemetry, "failing")
    assert span.status.description == "RuntimeError: boom"


# --- the callable form -----------------------------------------------------------------------

def test_monitor_operation_with_a_function_returns_its_result(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    assert monitor.monitor_operation("answer", lambda: 42) == 42


def test_monitor_operation_with_a_function_passes_positional_and_keyword_arguments(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    def price(quantity: int, unit: int, *, discount: int = 0) -> int:
        return quantity * unit - discount

    assert monitor.monitor_operation("price", price, 3, 7, discount=1) == 20


def test_monitor_operation_with_a_function_runs_it_inside_the_span(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    monitor.monitor_operation("lookup", run_queries, session, 4)

    [span] = spans_named(telemetry, "lookup")
    assert span.attributes["workflow.db.query_count"] == 4
    assert span.attributes["workflow.execution.id"] == monitor.execution_id


def test_a_workflow_action_inside_a_monitored_operation_is_its_child_span(
        session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Checkout)
    monitor = Monitor(execution)

    with monitor.monitor_operation("checkout"):
        execution.perform_action("pay", user="alice")

    [outer] = spans_named(telemetry, "checkout")
    [action] = spans_named(telemetry, "Checkout.pay")
    assert action.parent is not None and action.parent.span_id == outer.context.span_id
    assert outer.attributes["workflow.db.query_count"] >= action.attributes["workflow.db.query_count"] > 0


# --- start_operation / end_operation ---------------------------------------------------------

def test_end_operation_counts_exactly_the_queries_of_the_block(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    op_id = monitor.start_operation("seven")
    run_queries(session, 7)
    metrics = monitor.end_operation(op_id)

    assert isinstance(metrics, OperationMetrics)
    assert metrics.name == "seven"
    assert metrics.query_count == 7
    assert metrics.query_ms > 0
    assert metrics.error is None


def test_end_operation_measures_the_time_between_start_and_end(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    op_id = monitor.start_operation("nap")
    time.sleep(0.02)
    metrics = monitor.end_operation(op_id)

    assert 20.0 <= metrics.duration_ms < 1000.0


def test_end_operation_metrics_match_the_span_it_ended(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    op_id = monitor.start_operation("matched")
    run_queries(session, 2)
    metrics = monitor.end_operation(op_id)

    [span] = spans_named(telemetry, "matched")
    assert metrics.duration_ms == pytest.approx((span.end_time - span.start_time) / 1e6)
    assert metrics.rss_delta_bytes == span.attributes["workflow.memory.rss_delta_bytes"]
    assert metrics.query_count == span.attributes["workflow.db.query_count"] == 2


def test_nested_start_and_end_operations_count_inclusively(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    outer = monitor.start_operation("outer")
    run_queries(session, 2)
    inner = monitor.start_operation("inner")
    run_queries(session, 3)
    inner_metrics = monitor.end_operation(inner)
    outer_metrics = monitor.end_operation(outer)

    assert (inner_metrics.query_count, outer_metrics.query_count) == (3, 5)


def test_end_operation_records_the_given_error(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    op_id = monitor.start_operation("charge")
    metrics = monitor.end_operation(op_id, error=RuntimeError("card declined"))

    assert metrics.error == "RuntimeError: card declined"
    [span] = spans_named(telemetry, "charge")
    assert span.status.status_code is trace.StatusCode.ERROR


def test_end_operation_with_an_unknown_id_raises_unknown_operation_error(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    with pytest.raises(UnknownOperationError, match="no open operation with id 999"):
        monitor.end_operation(999)


def test_end_operation_twice_with_the_same_id_raises_unknown_operation_error(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))
    op_id = monitor.start_operation("once")
    monitor.end_operation(op_id)

    with pytest.raises(UnknownOperationError):
        monitor.end_operation(op_id)


def test_unknown_operation_error_is_a_key_error() -> None:
    assert issubclass(UnknownOperationError, KeyError)


def test_start_operation_returns_a_distinct_id_per_operation(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    ids = [monitor.start_operation(f"op{i}") for i in range(3)]
    for op_id in reversed(ids):
        monitor.end_operation(op_id)

    assert len(set(ids)) == 3


def test_after_end_operation_queries_are_no_longer_attributed_to_it(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    op_id = monitor.start_operation("bounded")
    run_queries(session, 1)
    monitor.end_operation(op_id)
    run_queries(session, 5)

    assert innermost_frame() is None
    [span] = spans_named(telemetry, "bounded")
    assert span.attributes["workflow.db.query_count"] == 1


def test_operations_ended_out_of_start_order_leave_no_operation_current(
        session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    def overlapping() -> tuple[object, object]:
        a = monitor.start_operation("a")
        b = monitor.start_operation("b")
        monitor.end_operation(a)
        monitor.end_operation(b)
        return innermost_frame(), trace.get_current_span()

    # In a copy of the context, so a leak cannot spill into other tests.
    frame, span = contextvars.copy_context().run(overlapping)

    assert frame is None
    assert span is trace.INVALID_SPAN


def test_end_operation_on_another_thread_ends_the_span(session: Session, telemetry: Telemetry) -> None:
    monitor = Monitor(start_workflow(session, Checkout))

    def start_here_end_there() -> list[OperationMetrics]:
        op_id = monitor.start_operation("handed_over")
        out: list[OperationMetrics] = []
        worker = threading.Thread(target=lambda: out.append(monitor.end_operation(op_id)))
        worker.start()
        worker.join()
        return out

    # In a copy of the context: the starting context keeps the operation current (it cannot be
    # restored from another thread), and that must not spill into other tests.
    [metrics] = contextvars.copy_context().run(start_here_end_there)

    assert len(spans_named(telemetry, "handed_over")) == 1
    assert metrics.duration_ms > 0


# --- what Monitor accepts --------------------------------------------------------------------

@pytest.mark.parametrize("not_an_execution", [object(), "42", 42, Checkout], ids=["object", "str", "int", "workflow-class"])
def test_monitor_of_something_other_than_an_execution_raises_type_error(
        not_an_execution: object, telemetry: Telemetry) -> None:
    with pytest.raises(TypeError, match="Monitor needs a WorkflowExecution"):
        Monitor(not_an_execution)  # type: ignore[arg-type]


def test_monitor_of_an_unsaved_execution_raises_value_error(telemetry: Telemetry) -> None:
    unsaved = WorkflowExecution(workflow_class=Checkout.import_path(), current_step="cart")

    with pytest.raises(ValueError, match="persisted execution"):
        Monitor(unsaved)


def test_monitor_of_an_execution_added_but_not_flushed_raises_value_error(
        session: Session, telemetry: Telemetry) -> None:
    pending = WorkflowExecution(workflow_class=Checkout.import_path(), current_step="cart")
    session.add(pending)

    with pytest.raises(ValueError, match="persisted execution"):
        Monitor(pending)


def test_monitor_knows_the_execution_id_of_a_persisted_execution(session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Checkout)

    assert Monitor(execution).execution_id == execution.id


def test_monitor_spans_are_this_execution_s_operation_spans_oldest_first(
        session: Session, telemetry: Telemetry) -> None:
    execution = start_workflow(session, Checkout)
    other = Monitor(start_workflow(session, Checkout))
    monitor = Monitor(execution)

    with monitor.monitor_operation("first"):
        pass
    with other.monitor_operation("someone_else"):
        pass
    execution.perform_action("pay", user="alice")
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span(
            "not-an-operation", attributes={"workflow.execution.id": execution.id}):
        pass

    assert [s.name for s in monitor.spans()] == ["Checkout.start", "first", "Checkout.pay"]


def test_run_queries_helper_issues_exactly_one_round_trip_per_query(session: Session, telemetry: Telemetry) -> None:
    """Guard for the exact counts above: the helper itself runs nothing extra."""
    statements: list[str] = []
    bind = session.get_bind()

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    event.listen(bind, "before_cursor_execute", record)
    try:
        run_queries(session, 7)
    finally:
        event.remove(bind, "before_cursor_execute", record)
    assert len(statements) == 7
    assert all(s.lstrip().upper().startswith("SELECT") for s in statements)
