"""Specification of the workflow engine's happy paths, on real databases.

Every test runs on a SQLite file and on PostgreSQL (conftest's ``database_url``). What the
engine stored is always checked by reading it back through a FRESH session or raw SQL, never
from the in-memory objects the engine returned.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import flowscope.workflows as wf
from flowscope.workflows import Workflow, WorkflowExecution, WorkflowTransition, guard, on, start_workflow, step


# --- a workflowable record, with its own declarative base -------------------------------------------


class DocumentBase(DeclarativeBase):
    pass


class Document(DocumentBase):
    __tablename__ = "engine_spec_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="draft")


# --- workflows under test --------------------------------------------------------------------------


class DocumentApproval(Workflow):
    draft = step(submit="pending_review")
    pending_review = step(approve="approved", reject="draft")
    approved = step()

    @on("submit")
    def count_submissions(self, execution, user, context):
        execution.context_data["submissions"] = execution.context_data.get("submissions", 0) + 1

    @on("approve")
    def stamp(self, execution, user, context):
        execution.context_data["approved_by"] = user
        execution.context_data["note"] = context.get("note")
        document = execution.workflowable
        if document is not None:
            document.state = "approved"

    @guard("approve")
    def not_the_author(self, execution, user):
        return user != execution.assigned_to


class AlreadyDone(Workflow):
    done = step()


class Recorder(Workflow):
    """Handlers that report what they were given, and that run in declaration order."""

    start = step(go="middle")
    middle = step(go_on="end", log="middle")
    end = step()

    @on("go")
    def first(self, execution, user, context):
        execution.context_data["calls"] = [*execution.context_data.get("calls", []), "first"]
        execution.context_data["seen_user"] = user
        execution.context_data["seen_context"] = context

    @on("go")
    def second(self, execution, user, context):
        execution.context_data["calls"] = [*execution.context_data["calls"], "second"]

    @on("log")
    def append_in_place(self, execution, user, context):
        execution.context_data["log"].append(context["entry"])  # a nested, in-place mutation


class Merger(Workflow):
    """Its handler merges the action's additional context into context_data."""

    open = step(merge="merged")
    merged = step()

    @on("merge")
    def merge(self, execution, user, context):
        execution.context_data.update(context)


# --- helpers: read what is stored, bypassing the objects under test ------------------------------


@pytest.fixture
def documents(engine: Engine) -> Engine:
    """``engine`` with the documents table (fresh) next to flowscope's tables."""
    DocumentBase.metadata.drop_all(engine)
    DocumentBase.metadata.create_all(engine)
    return engine


def stored_execution(engine: Engine, execution_id: int) -> dict[str, Any]:
    """The execution row as raw SQL returns it (JSON decoded)."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM workflow_executions WHERE id = :id"), {"id": execution_id}).mappings().one()
    row = dict(row)
    if isinstance(row["context_data"], str):  # SQLite hands JSON back as text, psycopg decodes it
        row["context_data"] = json.loads(row["context_data"])
    return row


def stored_transitions(engine: Engine, execution_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM workflow_transitions WHERE execution_id = :id ORDER BY id"),
                            {"id": execution_id}).mappings().all()
    out = []
    for row in rows:
        row = dict(row)
        if isinstance(row["additional_context"], str):
            row["additional_context"] = json.loads(row["additional_context"])
        out.append(row)
    return out


def utc(value: datetime) -> datetime:
    """SQLite drops the offset of DateTime(timezone=True) (values are stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def start(engine: Engine, workflow: type[Workflow] = DocumentApproval, **kwargs: Any) -> int:
    with Session(engine) as session:
        return start_workflow(session, workflow, **kwargs).id


# --- start_workflow --------------------------------------------------------------------------------


def test_start_workflow_persists_import_path_initial_step_and_active_status(engine):
    execution_id = start(engine)

    row = stored_execution(engine, execution_id)
    assert row["workflow_class"] == f"{__name__}:DocumentApproval"
    assert row["current_step"] == "draft"
    assert row["status"] == "active"


def test_start_workflow_persists_context_data(engine):
    context = {"priority": "high", "pages": 12, "tags": ["a", "b"], "meta": {"draft": True, "score": 0.5}}

    execution_id = start(engine, context=context)

    assert stored_execution(engine, execution_id)["context_data"] == context


def test_start_workflow_without_context_stores_an_empty_object(engine):
    execution_id = start(engine)

    assert stored_execution(engine, execution_id)["context_data"] == {}


def test_start_workflow_persists_assigned_to(engine):
    execution_id = start(engine, assigned_to="alice")

    assert stored_execution(engine, execution_id)["assigned_to"] == "alice"


def test_start_workflow_without_workflowable_stores_no_reference(engine):
    execution_id = start(engine)

    row = stored_execution(engine, execution_id)
    assert row["workflowable_type"] is None and row["workflowable_id"] is None
    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).workflowable is None


def test_start_workflow_stores_a_polymorphic_reference_to_the_workflowable(documents):
    with Session(documents) as session:
        document = Document(title="Quarterly report")
        session.add(document)
        session.commit()
        document_id = document.id
        execution_id = start_workflow(session, DocumentApproval, workflowable=document).id

    row = stored_execution(documents, execution_id)
    assert row["workflowable_type"] == f"{__name__}:Document"
    assert row["workflowable_id"] == str(document_id)
    with Session(documents) as fresh:
        loaded = fresh.get(WorkflowExecution, execution_id).workflowable
        assert isinstance(loaded, Document)
        assert (loaded.id, loaded.title) == (document_id, "Quarterly report")


def test_start_workflow_saves_an_unsaved_workflowable_in_the_same_commit(documents):
    with Session(documents) as session:
        execution_id = start_workflow(session, DocumentApproval, workflowable=Document(title="New")).id

    with documents.connect() as conn:
        (document_id, title), = conn.execute(text("SELECT id, title FROM engine_spec_documents")).all()
    assert title == "New"
    assert stored_execution(documents, execution_id)["workflowable_id"] == str(document_id)


def test_start_workflow_sets_timestamps_and_version_one(engine):
    before = datetime.now(timezone.utc)
    execution_id = start(engine)
    after = datetime.now(timezone.utc)

    with Session(engine) as fresh:
        execution = fresh.get(WorkflowExecution, execution_id)
        assert before <= utc(execution.created_at) <= after
        assert before <= utc(execution.updated_at) <= after
        assert execution.version == 1


def test_start_workflow_records_no_transition(engine):
    execution_id = start(engine)

    assert stored_transitions(engine, execution_id) == []


def test_workflow_whose_initial_step_is_final_starts_completed(engine):
    execution_id = start(engine, AlreadyDone)

    row = stored_execution(engine, execution_id)
    assert (row["current_step"], row["status"]) == ("done", "completed")
    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).available_actions() == []


def test_start_workflow_returns_the_committed_execution(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        assert execution_id is not None
        assert execution.workflow_definition is DocumentApproval
        assert not session.new and not session.dirty


# --- available actions and guards ------------------------------------------------------------------


def test_available_actions_are_the_actions_of_the_current_step(engine):
    execution_id = start(engine)

    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).available_actions() == ["submit"]


def test_guard_hides_an_action_from_the_user_it_refuses(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval, assigned_to="alice")
        execution.perform_action("submit", user="alice")

        assert execution.available_actions(user="alice") == ["reject"]
        assert execution.available_actions(user="bob") == ["approve", "reject"]


def test_available_actions_on_a_completed_execution_is_empty(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution.perform_action("submit")
        execution.perform_action("approve", user="bob")

        assert execution.available_actions() == []


# --- perform_action ---------------------------------------------------------------------------------


def test_perform_action_moves_to_the_target_step_and_commits(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.perform_action("submit", user="alice")

    row = stored_execution(engine, execution_id)
    assert (row["current_step"], row["status"]) == ("pending_review", "active")


def test_perform_action_records_a_transition_row(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        before = datetime.now(timezone.utc)
        execution.perform_action("submit", user="alice", additional_context={"reason": "ready", "n": 1})
        after = datetime.now(timezone.utc)

    (row,) = stored_transitions(engine, execution_id)
    assert (row["from_step"], row["to_step"], row["action"], row["user"]) == ("draft", "pending_review", "submit", "alice")
    assert row["additional_context"] == {"reason": "ready", "n": 1}
    with Session(engine) as fresh:
        (transition,) = fresh.get(WorkflowExecution, execution_id).transitions
        assert before <= utc(transition.at) <= after


def test_perform_action_returns_the_recorded_transition(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        transition = execution.perform_action("submit", user="alice")

        assert isinstance(transition, WorkflowTransition)
        assert (transition.from_step, transition.to_step, transition.action) == ("draft", "pending_review", "submit")
        assert transition.id == stored_transitions(engine, execution_id)[0]["id"]


def test_transition_without_additional_context_stores_an_empty_object(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.perform_action("submit")

    (row,) = stored_transitions(engine, execution_id)
    assert row["additional_context"] == {}
    assert row["user"] is None


def test_transitions_are_reachable_from_the_execution_in_order(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.perform_action("submit", user="alice")
        execution.perform_action("reject", user="bob")
        execution.perform_action("submit", user="alice")
        execution.perform_action("approve", user="bob")

    with Session(engine) as fresh:
        transitions = fresh.get(WorkflowExecution, execution_id).transitions
        assert [(t.from_step, t.action, t.to_step, t.user) for t in transitions] == [
            ("draft", "submit", "pending_review", "alice"),
            ("pending_review", "reject", "draft", "bob"),
            ("draft", "submit", "pending_review", "alice"),
            ("pending_review", "approve", "approved", "bob"),
        ]
        assert [utc(t.at) for t in transitions] == sorted(utc(t.at) for t in transitions)
        assert all(t.execution.id == execution_id for t in transitions)


def test_perform_action_increments_version_and_updated_at(engine):
    execution_id = start(engine)
    with Session(engine) as fresh:
        before = fresh.get(WorkflowExecution, execution_id)
        version_before, updated_before = before.version, utc(before.updated_at)

    with Session(engine) as session:
        session.get(WorkflowExecution, execution_id).perform_action("submit")

    with Session(engine) as fresh:
        after = fresh.get(WorkflowExecution, execution_id)
        assert after.version == version_before + 1
        assert utc(after.updated_at) > updated_before
        assert utc(after.updated_at) == utc(after.transitions[-1].at)


def test_reaching_a_final_step_marks_the_execution_completed(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.perform_action("submit")
        execution.perform_action("approve", user="bob")

    row = stored_execution(engine, execution_id)
    assert (row["current_step"], row["status"]) == ("approved", "completed")


def test_module_level_perform_action_is_the_same_operation(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        wf.perform_action(execution, "submit", user="carol")

    assert stored_execution(engine, execution_id)["current_step"] == "pending_review"
    assert stored_transitions(engine, execution_id)[0]["user"] == "carol"


def test_an_execution_loaded_in_another_session_can_act(engine):
    execution_id = start(engine)

    with Session(engine) as other:
        other.get(WorkflowExecution, execution_id).perform_action("submit")

    assert stored_execution(engine, execution_id)["current_step"] == "pending_review"


# --- handlers -----------------------------------------------------------------------------------------


def test_handler_reads_and_writes_context_data(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval, context={"submissions": 2, "kept": "yes"})
        execution_id = execution.id
        execution.perform_action("submit")

    assert stored_execution(engine, execution_id)["context_data"] == {"submissions": 3, "kept": "yes"}


def test_handler_receives_user_and_additional_context(engine):
    with Session(engine) as session:
        execution = start_workflow(session, Recorder)
        execution_id = execution.id
        execution.perform_action("go", user="dana", additional_context={"why": "because"})

    context = stored_execution(engine, execution_id)["context_data"]
    assert context["seen_user"] == "dana"
    assert context["seen_context"] == {"why": "because"}


def test_handlers_of_one_action_run_in_declaration_order(engine):
    with Session(engine) as session:
        execution = start_workflow(session, Recorder)
        execution_id = execution.id
        execution.perform_action("go")

    assert stored_execution(engine, execution_id)["context_data"]["calls"] == ["first", "second"]


def test_handler_changes_to_nested_context_values_are_persisted(engine):
    with Session(engine) as session:
        execution = start_workflow(session, Recorder, context={"log": []})
        execution_id = execution.id
        execution.perform_action("go")
        execution.perform_action("log", additional_context={"entry": "one"})
        execution.perform_action("log", additional_context={"entry": "two"})

    assert stored_execution(engine, execution_id)["context_data"]["log"] == ["one", "two"]


def test_handler_writes_to_the_workflowable_in_the_same_transaction(documents):
    with Session(documents) as session:
        execution = start_workflow(session, DocumentApproval, workflowable=Document(title="Spec"), assigned_to="alice")
        execution_id = execution.id
        execution.perform_action("submit", user="alice")
        execution.perform_action("approve", user="bob", additional_context={"note": "lgtm"})

    with Session(documents) as fresh:
        stored = fresh.get(WorkflowExecution, execution_id)
        assert stored.workflowable.state == "approved"
        assert stored.context_data == {"submissions": 1, "approved_by": "bob", "note": "lgtm"}
        assert stored.status == "completed"


# --- pause / resume ------------------------------------------------------------------------------------


def test_pause_persists_paused_status_and_offers_no_action(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.pause()

    row = stored_execution(engine, execution_id)
    assert (row["status"], row["current_step"], row["version"]) == ("paused", "draft", 2)
    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).available_actions() == []


def test_resume_makes_a_paused_execution_active_again(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.pause()
    with Session(engine) as other:
        paused = other.get(WorkflowExecution, execution_id)
        paused.resume()
        assert paused.available_actions() == ["submit"]
        paused.perform_action("submit")

    row = stored_execution(engine, execution_id)
    assert (row["status"], row["current_step"], row["version"]) == ("active", "pending_review", 4)


def test_pause_and_resume_record_no_transition(engine):
    with Session(engine) as session:
        execution = start_workflow(session, DocumentApproval)
        execution_id = execution.id
        execution.pause()
        execution.resume()

    assert stored_transitions(engine, execution_id) == []


# --- JSON round trip --------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.text()
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=6)


def same_json(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 != 1.0 != True here; -0.0 != 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


@settings(max_examples=50, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(context=json_objects, extra=json_objects)
def test_context_data_reads_back_exactly_as_written(engine, context, extra):
    with Session(engine) as session:
        execution = start_workflow(session, Merger, context=context)
        execution_id = execution.id
        execution.perform_action("merge", additional_context=extra)

    with Session(engine) as fresh:
        stored = fresh.get(WorkflowExecution, execution_id)
        assert same_json(dict(stored.context_data), {**context, **extra})
        assert same_json(stored.transitions[0].additional_context, extra)
