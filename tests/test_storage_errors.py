"""Storage faults are a typed ``WorkflowStorageError`` that keeps the original, with nothing written.

Real faults on real databases: a read-only transaction (SQLite ``PRAGMA query_only``, PostgreSQL
``default_transaction_read_only``) and, on SQLite, a database another connection has locked.
After each: the row counts and what the execution reads back are unchanged, the message holds
no stored value, and once the fault is gone the same call succeeds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from flowscope.workflows import (
    Workflow,
    WorkflowError,
    WorkflowExecution,
    WorkflowStorageError,
    WorkflowTransition,
    start_workflow,
    step,
)

SECRET = "tok-5f3c2a-do-not-leak"


class Ticket(Workflow):
    opened = step(close="closed")
    closed = step()


def counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(WorkflowExecution)),
                session.scalar(select(func.count()).select_from(WorkflowTransition)))


def read_only(session: Session, on: bool) -> None:
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA query_only = {'ON' if on else 'OFF'}")
    else:
        connection.exec_driver_sql(f"SET default_transaction_read_only = {'on' if on else 'off'}")
        connection.exec_driver_sql(f"SET TRANSACTION READ {'ONLY' if on else 'WRITE'}")


@pytest.fixture
def one_connection(engine: Engine) -> Iterator[Engine]:
    """The engine's database through a single pooled connection: the fault set on it stays on it
    (``engine`` itself reads the counts, on connections of its own)."""
    single = create_engine(engine.url, pool_size=1, max_overflow=0)
    yield single
    single.dispose()


def test_a_start_the_database_refuses_is_a_storage_error_and_writes_nothing(engine: Engine,
                                                                            one_connection: Engine) -> None:
    with Session(one_connection) as session:
        read_only(session, True)
        with pytest.raises(WorkflowStorageError) as caught:
            start_workflow(session, Ticket, context={"api_token_hint": SECRET})
        error = caught.value
        assert isinstance(error, WorkflowError) and isinstance(error.original, DBAPIError)
        assert error.__cause__ is error.original
        assert str(error).startswith("start_workflow(Ticket): the database did not store it (")
        assert "read-only" in str(error) or "readonly" in str(error)
        assert "nothing was written" in str(error) and SECRET not in str(error)
        read_only(session, False)
        assert counts(engine) == (0, 0)
        execution = start_workflow(session, Ticket, context={"api_token_hint": SECRET})   # the fault gone
        assert execution.id is not None
    assert counts(engine) == (1, 0)


def test_an_action_the_database_refuses_is_a_storage_error_and_the_execution_is_unchanged(
        engine: Engine, one_connection: Engine) -> None:
    with Session(one_connection) as session:
        execution = start_workflow(session, Ticket, context={"n": 1})
        read_only(session, True)
        with pytest.raises(WorkflowStorageError, match=r"Ticket execution \d+: 'close': the database did not"):
            execution.perform_action("close", user="ana")
        read_only(session, False)
        session.refresh(execution)
        assert (execution.current_step, execution.status) == ("opened", "active")
        assert counts(engine) == (1, 0)
        execution.perform_action("close", user="ana")
    assert counts(engine) == (1, 1)


def test_a_locked_sqlite_database_is_a_storage_error(tmp_path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    from flowscope.workflows import create_schema

    create_schema(engine)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Session(engine) as session:
            with pytest.raises(WorkflowStorageError, match="database is locked") as caught:
                start_workflow(session, Ticket)
            assert "OperationalError" in str(caught.value)
    finally:
        holder.rollback()
        holder.close()
    assert counts(engine) == (0, 0)
    engine.dispose()
