"""Hostile input, property-based (hypothesis), on SQLite and PostgreSQL: a typed error or a correct result.

For step and action names, users, assignees, contexts and operation names drawn from wide
strategies (NUL, lone surrogates, 10,000-level nesting, tuples, non-str keys, NaN, huge ints,
bytes, over-long strings): either the call succeeds and what is stored reads back exactly, or
it raises flowscope's typed error, and then the stored rows are unchanged (counted and hashed).
Never another exception.
"""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

import flowscope
from flowscope.workflows import (ContextSerializationError, Workflow, WorkflowDefinitionError, WorkflowExecution,
                                 WorkflowInputError, WorkflowTransition, start_workflow, step)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Ticket(Workflow):
    opened = step(close="closed")
    closed = step()


def stored(session: Session) -> tuple[int, int, str]:
    """Row counts and a hash of every stored execution and transition."""
    session.expire_all()
    executions = session.scalars(select(WorkflowExecution).order_by(WorkflowExecution.id)).all()
    transitions = session.scalars(select(WorkflowTransition).order_by(WorkflowTransition.id)).all()
    text = repr([(e.id, e.current_step, e.status, e.context_data, e.assigned_to) for e in executions]
                + [(t.id, t.action, t.user, t.from_step, t.to_step) for t in transitions])
    return len(executions), len(transitions), hashlib.sha256(text.encode()).hexdigest()


names = st.one_of(st.text(max_size=120), st.text(alphabet=st.characters(codec=None), max_size=8),
                  st.sampled_from(["__dict__", "__class__", "steps", "import_path", "a" * 100, "a" * 101, "x\x00y"]))
users = st.one_of(st.none(), st.text(max_size=300), st.integers(min_value=-(2**80), max_value=2**80),
                  st.binary(max_size=8), st.floats(allow_nan=True), st.just("\ud800"), st.just("u" * 256))
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                        st.text(max_size=20))
contexts = st.one_of(
    st.dictionaries(st.text(max_size=10), st.recursive(json_leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner), st.dictionaries(st.text(max_size=5), inner, max_size=3),
        st.dictionaries(st.integers(), inner, max_size=2)), max_leaves=10), max_size=4),
    st.just("deep"), st.integers(), st.lists(st.integers(), max_size=2))


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"k": value}
    return value


@PROPERTY
@given(step_name=names, action_name=names)
def test_a_definition_is_created_and_stores_its_names_or_raises_workflow_definition_error(
        session: Session, step_name: str, action_name: str) -> None:
    try:
        definition = type("Generated", (Workflow,), {"start": step(**{action_name: "start"}) if action_name else step(),
                                                      step_name: step()})
    except WorkflowDefinitionError:
        return
    except TypeError as err:               # step(**{...}) with a name Python refuses as a keyword
        assert "keyword" in str(err)
        return
    definition.__module__ = __name__
    execution = start_workflow(session, definition)
    session.expire_all()
    assert session.get(WorkflowExecution, execution.id).current_step == "start"
    assert set(definition.steps) == {"start", step_name} and all(len(n) <= 100 for n in definition.steps)


@PROPERTY
@given(user=users, assignee=users)
def test_a_user_or_assignee_is_stored_as_given_or_a_workflow_input_error_writes_nothing(
        session: Session, user: object, assignee: object) -> None:
    before = stored(session)
    try:
        execution = start_workflow(session, Ticket, assigned_to=assignee)  # type: ignore[arg-type]
    except WorkflowInputError:
        assert stored(session) == before
        return
    after_start = stored(session)
    try:
        transition = execution.perform_action("close", user=user)  # type: ignore[arg-type]
    except WorkflowInputError:
        assert stored(session) == after_start
        return
    session.expire_all()
    assert (session.get(WorkflowTransition, transition.id).user, execution.assigned_to) == (user, assignee)


@PROPERTY
@given(context=contexts)
def test_a_context_reads_back_exactly_or_a_context_serialization_error_writes_nothing(
        session: Session, context: object) -> None:
    if context == "deep":
        context = deep(10_000)
    before = stored(session)
    try:
        execution = start_workflow(session, Ticket, context=context)  # type: ignore[arg-type]
    except ContextSerializationError:
        assert stored(session) == before
        return
    session.expire_all()
    assert session.get(WorkflowExecution, execution.id).context_data == context
    assert not any(isinstance(v, float) and math.isnan(v) for v in context.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=300), st.integers(), st.none(), st.binary(max_size=4), st.floats(),
                      st.lists(st.text(max_size=3), max_size=2)))
def test_an_operation_name_is_measured_or_a_type_error_at_the_call(telemetry, name: object) -> None:
    try:
        with flowscope.operation(name):  # type: ignore[arg-type]
            pass
    except TypeError as err:
        assert not isinstance(name, str) and "the name must be a str" in str(err)
        return
    assert isinstance(name, str)
    assert name[:256] in telemetry.aggregator.operation_names()


attribute_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                            st.text(max_size=40), st.text(alphabet=st.characters(codec=None), max_size=4),
                            st.just("v" * 20_000), st.binary(max_size=4), st.lists(st.integers(), max_size=3),
                            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attributes=st.dictionaries(st.one_of(st.text(min_size=1, max_size=20), st.just("api_token")),
                                  attribute_values, max_size=4))
def test_operation_attributes_never_raise_and_are_bounded_and_redacted(telemetry, attributes: dict) -> None:
    from flowscope.telemetry._operation import MAX_ATTRIBUTE_LENGTH

    telemetry.span_store.clear()
    with flowscope.operation("attributed", **attributes):
        pass
    [span] = telemetry.span_store.by_operation("attributed")
    recorded = dict(span.attributes)
    for key, value in attributes.items():
        if key == "api_token":
            assert recorded.get(key) in (None, "[REDACTED]")      # never the value
        elif isinstance(value, str) and key in recorded:
            assert recorded[key] == value[:MAX_ATTRIBUTE_LENGTH]
    assert all(len(v) <= MAX_ATTRIBUTE_LENGTH for v in recorded.values() if isinstance(v, str))


def test_a_context_nested_10000_levels_is_a_context_serialization_error(session: Session) -> None:
    with pytest.raises(ContextSerializationError, match="nested too deeply"):
        start_workflow(session, Ticket, context=deep(10_000))
