"""Specification of optimistic locking: of two sessions acting on one execution, exactly one wins.

``WorkflowExecution.version`` is SQLAlchemy's ``version_id_col``: the UPDATE says
``WHERE version = :seen``; a session that loaded the execution before someone else committed
a change matches no row, and gets :class:`StaleExecutionError` with nothing written.

The sessions below are real: separate ``Session`` objects with their own connections (and,
in the threaded test, their own threads), on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from flowscope.workflows import (
    InvalidActionError,
    StaleExecutionError,
    Workflow,
    WorkflowExecution,
    on,
    start_workflow,
    step,
)


class Ticket(Workflow):
    open = step(claim="claimed", close="closed")
    claimed = step(resolve="closed", release="open")
    closed = step()

    @on("claim")
    def remember_owner(self, execution, user, context):
        execution.context_data["owner"] = user


def stored(engine: Engine, execution_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT current_step, status, version FROM workflow_executions WHERE id = :id"),
                                 {"id": execution_id}).mappings().one())


def stored_transitions(engine: Engine, execution_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            text('SELECT from_step, action, to_step, "user" FROM workflow_transitions WHERE execution_id = :id ORDER BY id'),
            {"id": execution_id})]


def open_ticket(engine: Engine) -> int:
    with Session(engine) as session:
        return start_workflow(session, Ticket).id


# --- two sessions, one after the other ----------------------------------------------------------------


def test_second_session_acting_on_a_stale_execution_gets_stale_execution_error(engine):
    execution_id = open_ticket(engine)

    with Session(engine) as first, Session(engine) as second:
        mine = first.get(WorkflowExecution, execution_id)
        theirs = second.get(WorkflowExecution, execution_id)
        assert mine is not theirs and mine.version == theirs.version == 1

        mine.perform_action("claim", user="alice")
        with pytest.raises(StaleExecutionError) as info:
            theirs.perform_action("claim", user="bob")

    err = info.value
    assert (err.workflow, err.execution_id, err.action) == ("Ticket", execution_id, "claim")
    assert "session.refresh" in str(err)
    assert stored(engine, execution_id) == {"current_step": "claimed", "status": "active", "version": 2}
    assert stored_transitions(engine, execution_id) == [("open", "claim", "claimed", "alice")]
    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).context_data == {"owner": "alice"}


def test_stale_action_with_a_different_action_is_refused_too(engine):
    execution_id = open_ticket(engine)

    with Session(engine) as first, Session(engine) as second:
        mine = first.get(WorkflowExecution, execution_id)
        theirs = second.get(WorkflowExecution, execution_id)
        mine.perform_action("claim", user="alice")
        with pytest.raises(StaleExecutionError):
            theirs.perform_action("close", user="bob")

    assert stored(engine, execution_id) == {"current_step": "claimed", "status": "active", "version": 2}
    assert len(stored_transitions(engine, execution_id)) == 1


def test_the_loser_can_refresh_and_then_act(engine):
    execution_id = open_ticket(engine)

    with Session(engine) as first, Session(engine) as second:
        mine = first.get(WorkflowExecution, execution_id)
        theirs = second.get(WorkflowExecution, execution_id)
        mine.perform_action("claim", user="alice")
        with pytest.raises(StaleExecutionError):
            theirs.perform_action("claim", user="bob")

        second.refresh(theirs)
        assert (theirs.current_step, theirs.version) == ("claimed", 2)
        assert theirs.available_actions() == ["resolve", "release"]
        theirs.perform_action("resolve", user="bob")

    assert stored(engine, execution_id) == {"current_step": "closed", "status": "completed", "version": 3}
    assert stored_transitions(engine, execution_id) == [
        ("open", "claim", "claimed", "alice"),
        ("claimed", "resolve", "closed", "bob"),
    ]


def test_after_stale_execution_error_the_loser_reads_what_is_stored(engine):
    execution_id = open_ticket(engine)

    with Session(engine) as first, Session(engine) as second:
        mine = first.get(WorkflowExecution, execution_id)
        theirs = second.get(WorkflowExecution, execution_id)
        mine.perform_action("claim", user="alice")
        with pytest.raises(StaleExecutionError):
            theirs.perform_action("claim", user="bob")

        # the failed action was rolled back and the execution expired: no refresh needed
        assert (theirs.current_step, theirs.version) == ("claimed", 2)
        assert theirs.context_data == {"owner": "alice"}


def test_pausing_a_stale_execution_gets_stale_execution_error(engine):
    execution_id = open_ticket(engine)

    with Session(engine) as first, Session(engine) as second:
        mine = first.get(WorkflowExecution, execution_id)
        theirs = second.get(WorkflowExecution, execution_id)
        mine.perform_action("claim", user="alice")
        with pytest.raises(StaleExecutionError) as info:
            theirs.pause()

    assert info.value.action == "pause"
    assert stored(engine, execution_id) == {"current_step": "claimed", "status": "active", "version": 2}


# --- many threads at once ------------------------------------------------------------------------------

THREADS = 8


@pytest.fixture
def threaded_engine(engine: Engine) -> Iterator[Engine]:
    """A second engine on the same (already reset) database, with room for every thread.

    SQLite gets a 30 s busy timeout so that writers queue instead of failing with
    "database is locked".
    """
    connect_args = {"timeout": 30} if engine.dialect.name == "sqlite" else {}
    eng = create_engine(engine.url, connect_args=connect_args, pool_size=THREADS, max_overflow=0)
    yield eng
    eng.dispose()


def test_of_many_threads_performing_the_same_action_exactly_one_wins(threaded_engine):
    engine = threaded_engine
    execution_id = open_ticket(engine)
    barrier = threading.Barrier(THREADS, timeout=30)
    outcomes: list[Any] = [None] * THREADS

    def contender(index: int) -> None:
        with Session(engine) as session:
            execution = session.get(WorkflowExecution, execution_id)
            assert execution.current_step == "open"  # every thread loads the same, unchanged state
            barrier.wait()
            try:
                execution.perform_action("claim", user=f"user-{index}")
                outcomes[index] = "won"
            except (StaleExecutionError, InvalidActionError) as err:
                outcomes[index] = err
            except BaseException as err:  # noqa: BLE001 - reported below, with its type
                outcomes[index] = err

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    winners = [i for i, outcome in enumerate(outcomes) if outcome == "won"]
    unexpected = [o for o in outcomes if o != "won" and not isinstance(o, (StaleExecutionError, InvalidActionError))]
    assert unexpected == []
    assert len(winners) == 1
    # Every loser loaded version 1 before the barrier, so it is refused for staleness (even on
    # SQLite, where the busy timeout queues the writers one after the other).
    assert all(isinstance(o, StaleExecutionError) for o in outcomes if o != "won")

    winner = f"user-{winners[0]}"
    assert stored(engine, execution_id) == {"current_step": "claimed", "status": "active", "version": 2}
    assert stored_transitions(engine, execution_id) == [("open", "claim", "claimed", winner)]
    with Session(engine) as fresh:
        assert fresh.get(WorkflowExecution, execution_id).context_data == {"owner": winner}
