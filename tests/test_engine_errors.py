"""Specification of the workflow engine's failures, on real databases.

The rule every test here checks: a failure leaves the database exactly as it was. Each test
takes a raw-SQL snapshot of every table involved (flowscope's and the handler's own), makes
the engine fail, and compares a new snapshot with the first one.
"""

from __future__ import annotations

import decimal
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, String, func, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, object_session

from flowscope.workflows import (
    ActionFailure,
    ContextSerializationError,
    DetachedExecutionError,
    InvalidActionError,
    NotAWorkflowError,
    StaleExecutionError,
    Workflow,
    WorkflowClassNotFoundError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowExecution,
    WorkflowInputError,
    WorkflowStorageError,
    guard,
    on,
    start_workflow,
    step,
)

# --- the handler's own tables, with their own declarative base ----------------------------------------


class ShopBase(DeclarativeBase):
    pass


class Parcel(ShopBase):
    __tablename__ = "errors_spec_parcels"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="waiting")


class AuditEntry(ShopBase):
    __tablename__ = "errors_spec_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(200))


class CarrierDown(RuntimeError):
    """A handler's own exception type; the engine must re-raise it unchanged."""


BAD_VALUES: dict[str, Any] = {
    "datetime": datetime(2024, 1, 2, tzinfo=timezone.utc),
    "set": {1, 2},
    "tuple": (1, 2),
    "int key": {1: "one"},
    "nan": float("nan"),
    "object": object(),
}


class Shipping(Workflow):
    ordered = step(pack="packed", cancel="cancelled")
    packed = step(ship="shipped")
    shipped = step()
    cancelled = step()

    @on("pack")
    def note_packer(self, execution, user, context):
        execution.context_data["packed_by"] = user

    @on("ship")
    def hand_to_carrier(self, execution, user, context):
        session = object_session(execution)
        session.add(AuditEntry(message=f"shipping execution {execution.id}"))
        execution.context_data["shipped_by"] = user
        execution.workflowable.state = "shipped"
        session.flush()  # the handler's writes really reach the database before it fails
        if context.get("fail"):
            raise CarrierDown("carrier API unreachable")

    @guard("cancel")
    def managers_only(self, execution, user):
        return user == "manager"


class Sloppy(Workflow):
    """Its handler puts whatever BAD_VALUES entry the action names into context_data."""

    start = step(put="end")
    end = step()

    @on("put")
    def put(self, execution, user, context):
        execution.context_data["value"] = BAD_VALUES[context["kind"]]


class NotAWorkflow:
    """A class that a stored workflow_class could end up pointing at."""


# --- helpers ----------------------------------------------------------------------------------------------

TABLES = ("workflow_executions", "workflow_transitions", "errors_spec_parcels", "errors_spec_audit")


@pytest.fixture
def shop(engine: Engine) -> Engine:
    """``engine`` with the handler's tables (fresh) next to flowscope's."""
    ShopBase.metadata.drop_all(engine)
    ShopBase.metadata.create_all(engine)
    return engine


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table involved, read with raw SQL on a new connection."""
    with engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
                for table in TABLES}


def stored_execution(engine: Engine, execution_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = dict(conn.execute(text("SELECT * FROM workflow_executions WHERE id = :id"),
                                {"id": execution_id}).mappings().one())
    if isinstance(row["context_data"], str):
        row["context_data"] = json.loads(row["context_data"])
    return row


def execution_count(engine: Engine) -> int:
    with Session(engine) as fresh:
        return fresh.scalar(select(func.count()).select_from(WorkflowExecution))


def packed_parcel(engine: Engine) -> int:
    """A Shipping execution at step ``packed`` about a waiting parcel; returns its id."""
    with Session(engine) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-1"), context={"n": 1})
        execution.perform_action("pack", user="paula")
        return execution.id


def set_stored(engine: Engine, execution_id: int, column: str, value: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE workflow_executions SET {column} = :value WHERE id = :id"),
                     {"value": value, "id": execution_id})


# --- invalid actions ------------------------------------------------------------------------------------


def test_unknown_action_raises_invalid_action_error_listing_available_actions(shop):
    execution_id = packed_parcel(shop)
    before = snapshot(shop)

    with Session(shop) as session:
        execution = session.get(WorkflowExecution, execution_id)
        with pytest.raises(InvalidActionError) as info:
            execution.perform_action("teleport", user="paula")

    err = info.value
    assert (err.workflow, err.execution_id, err.action, err.current_step) == ("Shipping", execution_id, "teleport", "packed")
    assert err.available_actions == ["ship"]
    assert "has no action 'teleport'" in str(err) and "Available actions: ship." in str(err)
    assert snapshot(shop) == before


def test_action_not_offered_at_the_current_step_raises_invalid_action_error(shop):
    execution_id = packed_parcel(shop)
    before = snapshot(shop)

    with Session(shop) as session:
        with pytest.raises(InvalidActionError, match="step 'packed' does not offer it") as info:
            session.get(WorkflowExecution, execution_id).perform_action("pack")

    assert info.value.available_actions == ["ship"]
    assert snapshot(shop) == before


def test_action_refused_by_a_guard_raises_invalid_action_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-2"))
        before = snapshot(shop)

        with pytest.raises(InvalidActionError, match="a guard refused it") as info:
            execution.perform_action("cancel", user="clerk")

        assert info.value.available_actions == ["pack"]
        assert execution.perform_action("cancel", user="manager").to_step == "cancelled"
    assert before["workflow_transitions"] == []


def test_action_on_a_completed_execution_raises_invalid_action_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-3"))
        execution.perform_action("cancel", user="manager")
        before = snapshot(shop)

        with pytest.raises(InvalidActionError, match="the execution is completed") as info:
            execution.perform_action("pack")

    assert info.value.available_actions == []
    assert snapshot(shop) == before


def test_action_on_a_paused_execution_raises_invalid_action_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-4"))
        execution.pause()
        before = snapshot(shop)

        with pytest.raises(InvalidActionError, match="the execution is paused"):
            execution.perform_action("pack")

    assert snapshot(shop) == before


def test_pausing_a_paused_execution_raises_invalid_action_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-5"))
        execution.pause()
        before = snapshot(shop)

        with pytest.raises(InvalidActionError, match="is paused, not active"):
            execution.pause()

    assert snapshot(shop) == before


def test_resuming_an_active_execution_raises_invalid_action_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-6"))
        before = snapshot(shop)

        with pytest.raises(InvalidActionError, match="is active, not paused"):
            execution.resume()

    assert snapshot(shop) == before


# --- a handler that raises ---------------------------------------------------------------------------------


def test_failing_handler_rolls_back_the_execution_transitions_and_its_own_writes(shop):
    execution_id = packed_parcel(shop)
    before = snapshot(shop)

    with Session(shop) as session:
        with pytest.raises(CarrierDown):
            session.get(WorkflowExecution, execution_id).perform_action(
                "ship", user="sam", additional_context={"fail": True})

    assert snapshot(shop) == before
    assert before["errors_spec_audit"] == []
    assert len(before["workflow_transitions"]) == 1


def test_failing_handler_exception_is_reraised_with_what_was_being_done(shop):
    execution_id = packed_parcel(shop)

    with Session(shop) as session:
        with pytest.raises(CarrierDown, match="carrier API unreachable") as info:
            session.get(WorkflowExecution, execution_id).perform_action(
                "ship", user="sam", additional_context={"fail": True})

    err = info.value
    assert type(err) is CarrierDown
    assert err.workflow_action == ActionFailure(workflow="Shipping", execution_id=execution_id, action="ship", step="packed")
    assert any("'ship'" in note and "rolled back" in note for note in err.__notes__)


def test_after_a_failed_action_the_execution_reads_back_what_is_stored(shop):
    execution_id = packed_parcel(shop)

    with Session(shop) as session:
        execution = session.get(WorkflowExecution, execution_id)
        with pytest.raises(CarrierDown):
            execution.perform_action("ship", user="sam", additional_context={"fail": True})

        assert execution.current_step == "packed"
        assert execution.status == "active"
        assert execution.version == 2
        assert execution.context_data == {"n": 1, "packed_by": "paula"}
        assert execution.workflowable.state == "waiting"
        assert len(execution.transitions) == 1


def test_after_a_failed_action_the_execution_can_still_act(shop):
    execution_id = packed_parcel(shop)

    with Session(shop) as session:
        execution = session.get(WorkflowExecution, execution_id)
        with pytest.raises(CarrierDown):
            execution.perform_action("ship", user="sam", additional_context={"fail": True})
        execution.perform_action("ship", user="sam")

    row = stored_execution(shop, execution_id)
    assert (row["current_step"], row["status"]) == ("shipped", "completed")
    assert row["version"] > 2  # bumped once per UPDATE: this handler flushes, so the action wrote twice
    audit = snapshot(shop)["errors_spec_audit"]  # ids: PostgreSQL does not roll sequences back
    assert [message for _, message in audit] == [f"shipping execution {execution_id}"]


def test_failed_action_also_discards_the_callers_pending_changes_in_the_session(shop):
    execution_id = packed_parcel(shop)

    with Session(shop) as session:
        session.add(AuditEntry(message="caller's own pending write"))
        with pytest.raises(CarrierDown):
            session.get(WorkflowExecution, execution_id).perform_action("ship", additional_context={"fail": True})
        session.commit()

    assert snapshot(shop)["errors_spec_audit"] == []


# --- context that is not JSON --------------------------------------------------------------------------------
# Each test below tries every case of one behaviour in turn on the same database, checking
# after each that nothing was written (one database reset per behaviour keeps the suite fast).

UNSERIALIZABLE = {
    "datetime": datetime(2024, 1, 2, tzinfo=timezone.utc),
    "set": {1, 2},
    "object": object(),
    "bytes": b"raw",
    "decimal": decimal.Decimal("1.5"),
}
NOT_ROUND_TRIPPING = {
    "int key": {1: "int key"},
    "nested int key": {"nested": {2: "int key"}},
    "tuple": {"pair": (1, 2)},
    "nested tuple": {"deep": [{"pair": ("a", "b")}]},
    "nan": {"nan": float("nan")},
    "infinity": {"inf": float("inf")},
}


def test_start_workflow_with_unserializable_context_raises_before_writing(engine):
    for kind, value in UNSERIALIZABLE.items():
        with Session(engine) as session:
            with pytest.raises(ContextSerializationError) as info:
                start_workflow(session, Shipping, context={"ok": 1, "bad": value})
            assert not session.new, kind

        assert info.value.where == "context"
        assert isinstance(info.value, TypeError)
        assert execution_count(engine) == 0, kind


def test_start_workflow_with_context_that_would_not_read_back_unchanged_raises(engine):
    for kind, context in NOT_ROUND_TRIPPING.items():
        with Session(engine) as session:
            with pytest.raises(ContextSerializationError):
                start_workflow(session, Shipping, context=context)

        assert execution_count(engine) == 0, kind


def test_start_workflow_context_must_be_a_json_object(engine):
    for context in (["a", "list"], "a string", 42):
        with Session(engine) as session:
            with pytest.raises(ContextSerializationError, match="expected a dict"):
                start_workflow(session, Shipping, context=context)

        assert execution_count(engine) == 0, context


def test_unserializable_additional_context_raises_before_writing(shop):
    execution_id = packed_parcel(shop)
    before = snapshot(shop)

    for kind, additional_context in {**UNSERIALIZABLE, **NOT_ROUND_TRIPPING}.items():
        with Session(shop) as session:
            with pytest.raises(ContextSerializationError) as info:
                session.get(WorkflowExecution, execution_id).perform_action("ship", additional_context=additional_context)

        assert info.value.where == "additional_context", kind
        assert snapshot(shop) == before, kind


def test_handler_putting_unserializable_values_into_context_data_rolls_back(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Sloppy, context={"kept": True})
        execution_id = execution.id
        before = snapshot(shop)

        for kind in BAD_VALUES:
            with pytest.raises(ContextSerializationError) as info:
                execution.perform_action("put", additional_context={"kind": kind})

            assert "context_data" in info.value.where, kind
            assert info.value.workflow_action.action == "put", kind
            assert execution.context_data == {"kept": True}, kind
            assert snapshot(shop) == before, kind

    assert stored_execution(shop, execution_id)["current_step"] == "start"


# --- things that are not what they should be ----------------------------------------------------------------


def test_start_workflow_with_something_that_is_not_a_workflow_raises(engine):
    for not_a_workflow in (Workflow, NotAWorkflow, Shipping(), f"{__name__}:Shipping", None):
        with Session(engine) as session:
            with pytest.raises(NotAWorkflowError) as info:
                start_workflow(session, not_a_workflow)

        assert info.value.value is not_a_workflow
        assert isinstance(info.value, TypeError)
        assert execution_count(engine) == 0, not_a_workflow


def test_start_workflow_with_an_unmapped_workflowable_raises_type_error(engine):
    with Session(engine) as session:
        with pytest.raises(TypeError, match="mapped SQLAlchemy instance"):
            start_workflow(session, Shipping, workflowable=NotAWorkflow())

    assert execution_count(engine) == 0


def test_stored_workflow_class_that_cannot_be_imported_raises_class_not_found(shop):
    execution_id = packed_parcel(shop)

    for bogus_path in (
        "flowscope_no_such_module:Gone",  # the module is gone
        f"{__name__}:Gone",  # the class is gone
        f"{__name__}:Shipping.Gone",  # a nested name is gone
        f"{__name__}:NotAWorkflow",  # the name is there but no longer a Workflow
        "no-colon-at-all",  # not an import path at all
    ):
        set_stored(shop, execution_id, "workflow_class", bogus_path)
        before = snapshot(shop)

        with Session(shop) as session:
            execution = session.get(WorkflowExecution, execution_id)
            for attempt in (lambda: execution.workflow_definition,
                            lambda: execution.available_actions(),
                            lambda: execution.perform_action("ship")):
                with pytest.raises(WorkflowClassNotFoundError) as info:
                    attempt()
                assert info.value.path == bogus_path
                assert info.value.execution_id == execution_id
                assert repr(bogus_path) in str(info.value)

        assert snapshot(shop) == before, bogus_path


def test_stored_workflowable_type_that_cannot_be_imported_raises_class_not_found(shop):
    execution_id = packed_parcel(shop)
    set_stored(shop, execution_id, "workflowable_type", f"{__name__}:RenamedParcel")

    with Session(shop) as session:
        with pytest.raises(WorkflowClassNotFoundError) as info:
            session.get(WorkflowExecution, execution_id).workflowable

    assert info.value.path == f"{__name__}:RenamedParcel"
    assert "RenamedParcel" in str(info.value)


# --- detached executions ------------------------------------------------------------------------------------


def test_acting_on_an_execution_whose_session_is_closed_raises_detached_execution_error(shop):
    execution_id = packed_parcel(shop)
    with Session(shop) as session:
        execution = session.get(WorkflowExecution, execution_id)
    before = snapshot(shop)

    with pytest.raises(DetachedExecutionError, match=f"execution {execution_id} is not attached"):
        execution.perform_action("ship")
    with pytest.raises(DetachedExecutionError):
        execution.pause()
    with pytest.raises(DetachedExecutionError):
        execution.workflowable

    assert snapshot(shop) == before


def test_using_a_detached_expired_execution_raises_detached_execution_error(shop):
    with Session(shop) as session:
        execution = start_workflow(session, Shipping, workflowable=Parcel(label="P-7"))
        session.expire(execution)  # as a commit leaves it (unless something reads it afterwards)
    (execution_id,) = inspect(execution).identity  # reading execution.id would try to reload it
    before = snapshot(shop)

    with pytest.raises(DetachedExecutionError, match=f"execution {execution_id} is not attached"):
        execution.perform_action("pack")
    with pytest.raises(DetachedExecutionError):
        execution.resume()
    with pytest.raises(DetachedExecutionError):
        execution.workflowable

    assert snapshot(shop) == before


def test_acting_on_an_expunged_execution_raises_detached_execution_error(shop):
    execution_id = packed_parcel(shop)

    with Session(shop) as session:
        execution = session.get(WorkflowExecution, execution_id)
        session.expunge(execution)
        with pytest.raises(DetachedExecutionError):
            execution.perform_action("ship")

    assert stored_execution(shop, execution_id)["current_step"] == "packed"


def test_acting_on_an_execution_never_added_to_a_session_raises_detached_execution_error():
    execution = WorkflowExecution(workflow_class=Shipping.import_path(), current_step="ordered", status="active")

    with pytest.raises(DetachedExecutionError, match="execution None"):
        execution.perform_action("pack")


# --- the error hierarchy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    ContextSerializationError, DetachedExecutionError, InvalidActionError, NotAWorkflowError,
    StaleExecutionError, WorkflowClassNotFoundError, WorkflowDefinitionError, WorkflowInputError,
    WorkflowStorageError,
])
def test_every_engine_error_is_a_workflow_error(error):
    assert issubclass(error, WorkflowError)
