"""``MemoryOptimizer``: large context values move to a side table (handlers still see them),
temporary keys go only when configured, old history moves to an archive; one transaction,
lossless for any JSON (property test), reversible, and a failure in the middle leaves the
stored execution exactly as it was. Its findings come from measurements and name no values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from flowscope.performance import Monitor, Thresholds
from flowscope.performance.optimizations import MemoryOptimizer, MemoryPolicy, MovedValue
from flowscope.telemetry import Telemetry
from flowscope.workflows import (
    StaleExecutionError,
    Workflow,
    WorkflowExecution,
    WorkflowTransition,
    on,
    start_workflow,
    step,
)
from flowscope.workflows._context_refs import is_reference
from flowscope.workflows._side_tables import WorkflowContextBlob, WorkflowTransitionArchive

MiB = 1024 * 1024
# Above glibc's largest mmap threshold (32 MiB): always its own mapping, resident when written and
# returned to the system when freed, so RSS follows it exactly whatever earlier tests left in the heap.
BATCH = 34 * MiB
ROWS = [f"row {i}: " + "x" * 60 for i in range(1500)]          # ~100 KiB as JSON
SECRETS = ("sk_live_51HcSECRETvalue", "hunter2-password-value", "tok_9f8e7d6c5b4a")


class Report(Workflow):
    draft = step(note="draft", summarize="draft", revise="draft", touch="draft", fail="draft", publish="published")
    published = step()

    @on("summarize")
    def summarize(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        execution.context_data["rows_seen"] = len(execution.context_data["report"]["rows"])

    @on("revise")
    def revise(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        execution.context_data["report"] = {"rows": ["a short report"]}

    @on("touch")
    def touch(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        execution.context_data["report"]["rows"].append("one more row")     # in place

    @on("fail")
    def fail(self, execution: WorkflowExecution, user: str | None, context: dict[str, Any]) -> None:
        execution.context_data["rows_seen"] = len(execution.context_data["report"]["rows"])
        raise RuntimeError("the printer is on fire")


def json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def report_context(**extra: Any) -> dict[str, Any]:
    return {"report": {"title": "Q3", "rows": ROWS}, "owner": "ann", "step_count": 3, **extra}


def stored(engine: Engine, execution_id: int) -> tuple[dict[str, Any], list[tuple], int, int]:
    """What the database holds: context_data, transitions, blob rows, archived rows."""
    with Session(engine) as s:
        context = dict(s.get(WorkflowExecution, execution_id).context_data)
        transitions = [(t.id, t.action, t.from_step, t.to_step, t.user, t.additional_context) for t in
                       s.scalars(select(WorkflowTransition).where(WorkflowTransition.execution_id == execution_id)
                                 .order_by(WorkflowTransition.id))]
        blobs = s.scalar(select(func.count()).select_from(WorkflowContextBlob)
                         .where(WorkflowContextBlob.execution_id == execution_id))
        archived = s.scalar(select(func.count()).select_from(WorkflowTransitionArchive)
                            .where(WorkflowTransitionArchive.execution_id == execution_id))
    return context, transitions, blobs, archived


def report_execution(session: Session, context: dict[str, Any] | None = None, actions: int = 0) -> WorkflowExecution:
    execution = start_workflow(session, Report, context=context if context is not None else report_context())
    for i in range(actions):
        execution.perform_action("note", user=f"user{i}", additional_context={"n": i})
    return execution


# --- moving values out, and reading them back ---------------------------------------------

def test_large_values_move_to_the_side_table_and_read_back_resolved(engine: Engine, session: Session) -> None:
    execution = report_execution(session)

    result = MemoryOptimizer(execution).optimize_memory_usage()

    [moved] = result.moved
    assert moved.key == "report" and moved.bytes > 16 * 1024
    assert result.bytes_after < result.bytes_before / 10
    assert result.before.context_bytes == result.bytes_before       # no history yet
    context, _, blobs, _ = stored(engine, execution.id)
    assert is_reference(context["report"]) and blobs == 1
    assert {k: v for k, v in context.items() if k != "report"} == {"owner": "ann", "step_count": 3}
    assert execution.resolved_context() == report_context()


def test_handlers_see_moved_values_and_values_they_leave_alone_stay_moved(engine: Engine, session: Session) -> None:
    execution = report_execution(session)
    MemoryOptimizer(execution).optimize_memory_usage()

    execution.perform_action("summarize", user="ann")

    context, _, blobs, _ = stored(engine, execution.id)
    assert context["rows_seen"] == len(ROWS)                          # the handler read the real rows
    assert is_reference(context["report"]) and blobs == 1


@pytest.mark.parametrize("action", ["revise", "touch"])
def test_a_handler_that_changes_a_moved_value_stores_it_inline_and_drops_the_blob(
        action: str, engine: Engine, session: Session) -> None:
    execution = report_execution(session)
    MemoryOptimizer(execution).optimize_memory_usage()

    execution.perform_action(action, user="ann")

    context, _, blobs, _ = stored(engine, execution.id)
    expected = ["a short report"] if action == "revise" else ROWS + ["one more row"]
    assert context["report"]["rows"] == expected and blobs == 0


def test_a_failed_action_leaves_the_moved_value_moved(engine: Engine, session: Session) -> None:
    execution = report_execution(session)
    MemoryOptimizer(execution).optimize_memory_usage()
    before = stored(engine, execution.id)

    with pytest.raises(RuntimeError, match="on fire"):
        execution.perform_action("fail", user="ann")

    assert stored(engine, execution.id) == before
    assert is_reference(execution.context_data["report"])


def test_an_execution_with_nothing_large_is_left_alone(engine: Engine, session: Session) -> None:
    execution = report_execution(session, {"owner": "ann"})
    before = stored(engine, execution.id)

    result = MemoryOptimizer(execution).optimize_memory_usage()

    assert not result.changed and result.bytes_before == result.bytes_after
    assert stored(engine, execution.id) == before


# --- temporary keys and history -----------------------------------------------------------

def test_temporary_keys_are_removed_only_when_a_prefix_is_configured(engine: Engine, session: Session) -> None:
    execution = report_execution(session, {"owner": "ann", "tmp_upload": "chunk", "tmp_token_cache": [1, 2]})

    assert MemoryOptimizer(execution).optimize_memory_usage().removed == ()
    result = MemoryOptimizer(execution, MemoryPolicy(temporary_prefix="tmp_")).optimize_memory_usage()

    assert {m.key for m in result.removed} == {"tmp_upload", "[redacted]"}     # tmp_token_cache looks secret
    assert stored(engine, execution.id)[0] == {"owner": "ann"}


def test_history_beyond_the_limit_moves_to_the_archive(engine: Engine, session: Session) -> None:
    execution = report_execution(session, {"owner": "ann"}, actions=12)
    _, transitions, _, _ = stored(engine, execution.id)

    result = MemoryOptimizer(execution, MemoryPolicy(history_limit=5)).optimize_memory_usage()

    assert result.archived_transitions == 7
    assert (result.before.transitions, result.after.transitions) == (12, 5)
    assert result.bytes_after < result.bytes_before
    assert [t.id for t in execution.transitions] == [t[0] for t in transitions[-5:]]
    assert stored(engine, execution.id)[3] == 7


def test_restore_puts_everything_back_exactly(engine: Engine, session: Session) -> None:
    execution = report_execution(session, report_context(tmp_scratch={"a": 1}), actions=6)
    original_context, original_transitions, _, _ = stored(engine, execution.id)
    optimizer = MemoryOptimizer(execution, MemoryPolicy(temporary_prefix="tmp_", history_limit=2))
    optimizer.optimize_memory_usage()

    restored = optimizer.restore()

    assert (restored.values, restored.keys, restored.transitions) == (1, 1, 4)
    assert stored(engine, execution.id) == (original_context, original_transitions, 0, 0)
    assert len(execution.transitions) == 6


# --- one transaction: a failure in the middle changes nothing ------------------------------

def test_a_concurrent_change_in_the_middle_leaves_the_stored_execution_unchanged(
        engine: Engine, session: Session) -> None:
    execution = report_execution(session, report_context(), actions=6)
    assert execution.current_step == "draft"        # loaded now; another session acts next
    with Session(engine) as other:
        other.get(WorkflowExecution, execution.id).perform_action("note", user="bob")
    before = stored(engine, execution.id)

    with pytest.raises(StaleExecutionError):
        MemoryOptimizer(execution, MemoryPolicy(history_limit=2)).optimize_memory_usage()

    assert stored(engine, execution.id) == before                   # no blob, no archive, nothing moved
    assert before[2:] == (0, 0)


def test_a_database_error_in_the_middle_leaves_the_stored_execution_unchanged(
        engine: Engine, session: Session) -> None:
    execution = report_execution(session, report_context(), actions=6)
    before = stored(engine, execution.id)
    session.commit()             # no open transaction may hold a lock that DROP TABLE waits for
    WorkflowTransitionArchive.__table__.drop(engine)                 # the archive step will fail
    try:
        with pytest.raises(Exception, match="workflow_transition_archive"):
            MemoryOptimizer(execution, MemoryPolicy(history_limit=2)).optimize_memory_usage()
    finally:
        WorkflowTransitionArchive.__table__.create(engine)

    assert stored(engine, execution.id) == before
    assert execution.context_data["report"]["rows"] == ROWS        # the in-memory execution too


# --- lossless for any JSON ------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(_text, children, max_size=6),
    max_leaves=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(context=st.dictionaries(_text, _json, max_size=8), value_bytes=st.integers(1, 64),
       prefix=st.sampled_from([None, "t", "tmp_"]))
def test_compaction_round_trip_is_lossless_for_any_json(
        engine: Engine, context: dict[str, Any], value_bytes: int, prefix: str | None) -> None:
    with Session(engine) as session:
        execution = start_workflow(session, Report, context=context)
        optimizer = MemoryOptimizer(execution, MemoryPolicy(value_bytes=value_bytes, temporary_prefix=prefix))

        result = optimizer.optimize_memory_usage()
        kept = {k: v for k, v in context.items() if prefix is None or not k.startswith(prefix)}
        assert execution.resolved_context() == kept
        assert len(result.moved) + len(result.removed) == sum(
            1 for k, v in context.items()
            if (prefix is not None and k.startswith(prefix)) or json_bytes(v) >= value_bytes)

        optimizer.restore()
        execution_id = execution.id
    assert stored(engine, execution_id)[0] == context


# --- findings ---------------------------------------------------------------------------------

def memory_findings(execution: WorkflowExecution, thresholds: Thresholds | None = None, kind: str | None = None):
    recs = MemoryOptimizer(execution, thresholds=thresholds).generate_memory_recommendations()
    return [r for r in recs if kind is None or r.kind == kind]


def test_a_large_context_is_found_naming_its_largest_keys_and_sizes(session: Session, telemetry: Telemetry) -> None:
    execution = report_execution(session)

    [finding] = memory_findings(execution, kind="large_context")

    assert finding.operation == f"Report execution {execution.id}"
    assert finding.evidence.unit == "bytes" and finding.evidence.value > 64 * 1024
    assert "report (" in finding.message and "optimize_memory_usage()" in finding.suggestion


def test_the_same_data_after_compaction_is_not_a_large_context(session: Session, telemetry: Telemetry) -> None:
    execution = report_execution(session)
    MemoryOptimizer(execution).optimize_memory_usage()

    assert memory_findings(execution, kind="large_context") == []


def test_a_long_history_is_history_growth_and_a_short_one_is_not(session: Session, telemetry: Telemetry) -> None:
    long = report_execution(session, {"owner": "ann"}, actions=10)
    short = report_execution(session, {"owner": "ann"}, actions=9)
    thresholds = Thresholds(history_length=10)

    [finding] = memory_findings(long, thresholds, "history_growth")

    assert (finding.evidence.value, finding.evidence.unit) == (10, "transitions")
    assert "history_limit=10" in finding.suggestion
    assert memory_findings(short, thresholds, "history_growth") == []


def test_memory_kept_from_one_operation_to_the_next_is_a_memory_growth_trend(
        session: Session, telemetry: Telemetry) -> None:
    execution = report_execution(session, {"owner": "ann"})
    monitor, kept = Monitor(execution), []
    for _ in range(3):
        with monitor.monitor_operation("load_batch"):
            kept.append(b"\x01" * BATCH)

    [finding] = memory_findings(execution, Thresholds(memory_growth_bytes=2 * BATCH), "memory_growth")

    assert finding.evidence.value >= 3 * BATCH - MiB and finding.evidence.spans == 4     # start + 3 batches
    assert finding.operation == f"Report execution {execution.id}"
    del kept


def test_memory_freed_after_each_operation_is_not_a_trend(session: Session, telemetry: Telemetry) -> None:
    execution = report_execution(session, {"owner": "ann"})
    monitor = Monitor(execution)
    for _ in range(3):
        with monitor.monitor_operation("load_batch"):
            batch = b"\x01" * BATCH
            del batch

    assert memory_findings(execution, Thresholds(memory_growth_bytes=2 * BATCH), "memory_growth") == []


def test_memory_findings_and_results_never_show_secret_values_or_secret_key_names(
        session: Session, telemetry: Telemetry) -> None:
    context = report_context(api_key=SECRETS[0], password=SECRETS[1],
                             session_token={"value": SECRETS[2], "padding": "p" * 40_000})
    execution = report_execution(session, context)

    findings = memory_findings(execution)
    result = MemoryOptimizer(execution).optimize_memory_usage()

    shown = json.dumps([r.to_dict() for r in findings], default=str) + repr(result)
    assert [r.kind for r in findings] == ["large_context"]
    assert not any(secret in shown for secret in SECRETS)
    assert "session_token" not in shown and "[redacted]" in shown
    assert MovedValue("[redacted]", result.moved[1].bytes) in result.moved
