"""Specification of ``FlowscopeInstrumentor``: workflow starts and actions become operation spans.

The workflow below is real and persisted (SQLite file and PostgreSQL). Its handler runs as many
queries as the action's context asks for, so the query count of an action span can be checked
twice: against an independent count of the statements the engine sent (an
``after_cursor_execute`` listener of the test's own), and as a difference (the same action with
5 handler queries counts exactly 5 more than with none).

Tests that uninstrument put the instrumentation back in ``finally``, so the rest of the suite
keeps working whatever happens.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, object_session

import flowscope
from flowscope.telemetry import FlowscopeInstrumentor
from flowscope.telemetry import _attributes as attr
from flowscope.telemetry.sql import _listeners as _queries
from flowscope.workflows import Workflow, _runtime, on, start_workflow, step


class Approval(Workflow):
    draft = step(submit="review")
    review = step(approve="approved", reject="draft")
    approved = step()

    @on("submit")
    def look_things_up(self, execution, user, context):
        session = object_session(execution)
        for i in range(context.get("queries", 0)):
            session.execute(text("SELECT :i"), {"i": i}).all()

    @on("reject")
    def refuse(self, execution, user, context):
        raise PermissionError("rejections are closed today")


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends meanwhile (an oracle independent of flowscope)."""
    sent: list[str] = []

    def count(conn, cursor, statement, *rest):
        sent.append(statement)

    event.listen(engine, "after_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "after_cursor_execute", count)


def only_span(telemetry, name: str):
    spans = telemetry.span_store.by_operation(name)
    assert len(spans) == 1, f"expected one {name!r} span, got {[s.name for s in telemetry.span_store.spans()]}"
    return spans[0]


# --- spans --------------------------------------------------------------------------------------


def test_start_workflow_makes_a_start_span_with_the_workflow_attributes(telemetry, session: Session):
    execution = start_workflow(session, Approval)

    span = only_span(telemetry, "Approval.start")
    assert span.name == "Approval.start"
    assert span.attributes[attr.WORKFLOW_CLASS] == Approval.import_path()
    assert span.attributes[attr.EXECUTION_ID] == execution.id
    assert span.attributes[attr.ACTION] == "start"
    assert span.attributes[attr.STEP_TO] == "draft"


def test_start_span_counts_the_statements_of_the_start(telemetry, engine: Engine, session: Session):
    with statements_sent(engine) as sent:
        start_workflow(session, Approval)

    assert only_span(telemetry, "Approval.start").attributes[attr.QUERY_COUNT] == len(sent) > 0


def test_perform_action_makes_an_action_span_with_the_workflow_attributes(telemetry, session: Session):
    execution = start_workflow(session, Approval)
    execution.perform_action("submit", user="alice")

    span = only_span(telemetry, "Approval.submit")
    assert span.name == "Approval.submit"
    assert span.attributes[attr.OPERATION] == "Approval.submit"
    assert span.attributes[attr.WORKFLOW_CLASS] == Approval.import_path()
    assert span.attributes[attr.EXECUTION_ID] == execution.id
    assert span.attributes[attr.STEP] == "draft"
    assert span.attributes[attr.ACTION] == "submit"
    assert span.attributes[attr.STEP_TO] == "review"


def test_action_span_counts_exactly_the_statements_the_action_sent(telemetry, engine: Engine, session: Session):
    execution = start_workflow(session, Approval)
    with statements_sent(engine) as sent:
        execution.perform_action("submit", user="alice", additional_context={"queries": 4})

    span = only_span(telemetry, "Approval.submit")
    assert span.attributes[attr.QUERY_COUNT] == len(sent)
    assert span.attributes[attr.QUERY_DURATION_MS] > 0


def test_action_span_counts_the_handlers_queries(telemetry, session: Session):
    without = start_workflow(session, Approval)
    without.perform_action("submit", additional_context={"queries": 0})
    with_five = start_workflow(session, Approval)
    with_five.perform_action("submit", additional_context={"queries": 5})

    counts = {s.attributes[attr.EXECUTION_ID]: s.attributes[attr.QUERY_COUNT]
              for s in telemetry.span_store.by_operation("Approval.submit")}
    assert counts[with_five.id] - counts[without.id] == 5


def test_spans_of_one_execution_are_found_by_its_id(telemetry, session: Session):
    execution = start_workflow(session, Approval)
    execution.perform_action("submit")
    execution.perform_action("approve")
    start_workflow(session, Approval)                      # another execution

    names = [s.name for s in telemetry.span_store.by_execution(execution.id)]
    assert names == ["Approval.start", "Approval.submit", "Approval.approve"]


def test_a_failing_action_is_an_error_span_and_the_error_reaches_the_caller(telemetry, session: Session):
    execution = start_workflow(session, Approval)
    execution.perform_action("submit")
    with pytest.raises(PermissionError, match="rejections are closed today"):
        execution.perform_action("reject")

    span = only_span(telemetry, "Approval.reject")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert execution.current_step == "review"             # the engine rolled it back, as ever


def test_actions_are_aggregated_per_workflow_and_action(telemetry, session: Session):
    for _ in range(3):
        start_workflow(session, Approval).perform_action("submit", additional_context={"queries": 1})

    assert telemetry.aggregator.operation("Approval.submit").count == 3
    assert telemetry.aggregator.operation("Approval.start").count == 3


# --- uninstrument -------------------------------------------------------------------------------


@contextmanager
def uninstrumented() -> Iterator[None]:
    FlowscopeInstrumentor().uninstrument()
    try:
        yield
    finally:
        FlowscopeInstrumentor().instrument()


def listeners_present() -> list[bool]:
    """For each of flowscope's engine-level SQLAlchemy listeners, whether it is registered."""
    return [event.contains(Engine, name, fn) for name, fn in _queries._LISTENERS]


def test_lazy_load_naming_is_installed_by_the_first_repeated_select_and_removed_by_uninstrument(
        telemetry, engine: Engine):
    with uninstrumented():
        assert not _queries.lazy_load_naming_installed()
        assert not event.contains(Session, "do_orm_execute", _queries._name_lazy_load)
    # Re-instrumented: nothing has repeated yet, so the ORM listener is not paid for.
    assert not _queries.lazy_load_naming_installed()
    with engine.connect() as conn, flowscope.operation("repeats"):
        conn.execute(text("SELECT 1 WHERE 1 = :x"), {"x": 1})
        conn.execute(text("SELECT 1 WHERE 1 = :x"), {"x": 2})
    assert _queries.lazy_load_naming_installed()
    assert event.contains(Session, "do_orm_execute", _queries._name_lazy_load)
    with uninstrumented():
        assert not event.contains(Session, "do_orm_execute", _queries._name_lazy_load)


def test_uninstrument_removes_the_engine_wrappers(telemetry):
    with uninstrumented():
        assert _runtime.start_wrapper is None
        assert _runtime.action_wrapper is None


def test_uninstrument_removes_the_query_listeners(telemetry):
    assert all(listeners_present())
    with uninstrumented():
        assert not any(listeners_present())
        assert not _queries.query_listeners_installed()


def test_after_uninstrument_workflows_make_no_spans(telemetry, session: Session):
    with uninstrumented():
        execution = start_workflow(session, Approval)
        execution.perform_action("submit", additional_context={"queries": 2})
        assert execution.current_step == "review"          # the engine itself works as before

    assert telemetry.span_store.spans() == []


def test_after_uninstrument_queries_are_not_counted(telemetry, engine: Engine):
    with uninstrumented(), engine.connect() as conn:
        with flowscope.operation("uncounted"):
            conn.execute(text("SELECT 1")).all()

    assert only_span(telemetry, "uncounted").attributes[attr.QUERY_COUNT] == 0


def test_instrument_after_uninstrument_restores_everything(telemetry, session: Session):
    with uninstrumented():
        pass

    assert _runtime.start_wrapper is not None and _runtime.action_wrapper is not None
    assert all(listeners_present())
    start_workflow(session, Approval).perform_action("submit", additional_context={"queries": 1})
    assert [s.name for s in telemetry.span_store.spans()] == ["Approval.start", "Approval.submit"]


# --- discovery ----------------------------------------------------------------------------------


def test_the_flowscope_entry_point_resolves_to_the_instrumentor():
    entry_points = importlib.metadata.entry_points(group="opentelemetry_instrumentor", name="flowscope")
    assert len(entry_points) == 1
    assert next(iter(entry_points)).load() is FlowscopeInstrumentor


def test_the_installed_sqlalchemy_satisfies_the_instrumentors_dependencies():
    dependencies = FlowscopeInstrumentor().instrumentation_dependencies()
    assert any(d.startswith("sqlalchemy") for d in dependencies)
    assert get_dependency_conflicts(dependencies) is None


def test_opentelemetry_instrument_instruments_the_engine_with_no_code_change(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        "from flowscope.workflows import _runtime\n"
        "from flowscope.telemetry.sql._listeners import query_listeners_installed\n"
        "print(_runtime.start_wrapper.__name__, _runtime.action_wrapper.__name__, query_listeners_installed())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWSCOPE_"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    instrument = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    done = subprocess.run([instrument, sys.executable, str(app)], env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["_traced_start", "_traced_action", "True"]
