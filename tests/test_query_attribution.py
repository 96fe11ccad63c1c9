"""Specification of query attribution: every query is counted in the operation that ran it, once.

Concurrent work is real: threads with their own connections released together by a Barrier,
asyncio tasks that interleave on one event loop (their queries alternate, which the tests
check), and tasks that run their queries in worker threads with ``asyncio.to_thread``. Each
operation runs a different, known number of queries, so a query counted in the wrong operation
shows up as a wrong count. All of it on a SQLite file and on PostgreSQL (``database_url``).

With opentelemetry-instrumentation-sqlalchemy also on, its query spans are children of the
operation span, and flowscope's count equals the number of statements (the count is taken in
one place only, so nothing is counted twice).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry import trace
from sqlalchemy import Engine, event, text

import flowscope
from flowscope.telemetry import _attributes as attr

WORKERS = 8


def expected_counts() -> dict[str, int]:
    """A different number of queries for every worker: 3, 5, 7, ..."""
    return {f"worker-{i}": 3 + 2 * i for i in range(WORKERS)}


def query_counts(telemetry, names) -> dict[str, list[int]]:
    return {name: [s.attributes[attr.QUERY_COUNT] for s in telemetry.span_store.by_operation(name)]
            for name in names}


# --- threads ------------------------------------------------------------------------------------


def test_concurrent_threads_each_count_exactly_their_own_queries(telemetry, engine: Engine):
    counts = expected_counts()
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def worker(name: str, n: int) -> None:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1")).all()       # connected before the operation
                barrier.wait(timeout=10)
                with flowscope.operation(name):
                    for i in range(n):
                        conn.execute(text("SELECT :i"), {"i": i}).all()
                        time.sleep(0)                       # let the other threads in
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=item) for item in counts.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert not errors
    assert query_counts(telemetry, counts) == {name: [n] for name, n in counts.items()}


def test_a_thread_started_inside_an_operation_does_not_add_to_it(telemetry, engine: Engine):
    # Threads start with an empty context: the worker's queries are not the caller's.
    def worker():
        with engine.connect() as conn:
            for _ in range(5):
                conn.execute(text("SELECT 1")).all()

    with engine.connect() as conn:
        with flowscope.operation("caller"):
            conn.execute(text("SELECT 1")).all()
            t = threading.Thread(target=worker)
            t.start()
            t.join()

    assert query_counts(telemetry, ["caller"]) == {"caller": [1]}


# --- asyncio ------------------------------------------------------------------------------------


async def gather_on_own_connections(engine: Engine, counts: dict[str, int], task) -> None:
    """Run ``task(name, n, conn)`` for every count at once, each on its own open connection."""
    conns = [engine.connect() for _ in counts]
    try:
        for conn in conns:
            conn.execute(text("SELECT 1")).all()   # connected before the tasks start
        await asyncio.gather(*(task(name, n, conn) for (name, n), conn in zip(counts.items(), conns)))
    finally:
        for conn in conns:
            conn.close()


def test_interleaved_asyncio_tasks_each_count_exactly_their_own_queries(telemetry, engine: Engine):
    counts = expected_counts()
    order: list[str] = []

    async def task(name: str, n: int, conn) -> None:
        async with flowscope.operation(name):
            for i in range(n):
                conn.execute(text("SELECT :i"), {"i": i}).all()
                order.append(name)
                await asyncio.sleep(0)                      # the next task runs its query now

    asyncio.run(gather_on_own_connections(engine, counts, task))

    assert order[:WORKERS] == list(counts)                  # the tasks really did interleave
    assert query_counts(telemetry, counts) == {name: [n] for name, n in counts.items()}


def test_asyncio_tasks_running_queries_in_worker_threads_each_count_exactly_their_own(
        telemetry, engine: Engine):
    counts = expected_counts()

    def run(conn, n: int) -> None:
        for i in range(n):
            conn.execute(text("SELECT :i"), {"i": i}).all()

    async def task(name: str, n: int, conn) -> None:
        async with flowscope.operation(name):
            half = n // 2
            await asyncio.to_thread(run, conn, half)        # the thread gets the task's context
            await asyncio.sleep(0)
            await asyncio.to_thread(run, conn, n - half)

    asyncio.run(gather_on_own_connections(engine, counts, task))

    assert query_counts(telemetry, counts) == {name: [n] for name, n in counts.items()}


def test_nested_operations_in_concurrent_tasks_stay_in_their_own_task(telemetry, engine: Engine):
    async def task(name: str, i: int, conn) -> None:
        async with flowscope.operation(f"outer-{i}"):
            conn.execute(text("SELECT 1")).all()
            await asyncio.sleep(0)
            async with flowscope.operation(f"inner-{i}"):
                for _ in range(i + 1):
                    conn.execute(text("SELECT 1")).all()
                    await asyncio.sleep(0)

    asyncio.run(gather_on_own_connections(engine, {f"task-{i}": i for i in range(4)}, task))

    for i in range(4):
        assert query_counts(telemetry, [f"inner-{i}"]) == {f"inner-{i}": [i + 1]}
        assert query_counts(telemetry, [f"outer-{i}"]) == {f"outer-{i}": [i + 2]}
        inner, = telemetry.span_store.by_operation(f"inner-{i}")
        outer, = telemetry.span_store.by_operation(f"outer-{i}")
        assert inner.parent.span_id == outer.context.span_id


# --- together with opentelemetry-instrumentation-sqlalchemy -------------------------------------


@pytest.fixture
def sqlalchemy_instrumented(engine: Engine):
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(engine=engine, tracer_provider=trace.get_tracer_provider())
    try:
        yield engine
    finally:
        instrumentor.uninstrument()


def statement_spans(telemetry):
    """The query spans opentelemetry-instrumentation-sqlalchemy made (not its connect spans)."""
    return [s for s in telemetry.span_store.spans()
            if s.instrumentation_scope.name == "opentelemetry.instrumentation.sqlalchemy"
            and s.name != "connect"]


@pytest.mark.otel_sqlalchemy
def test_sqlalchemy_instrumentation_query_spans_are_children_of_the_operation(
        telemetry, sqlalchemy_instrumented: Engine):
    with sqlalchemy_instrumented.connect() as conn:
        with flowscope.operation("report") as op:
            for i in range(6):
                conn.execute(text("SELECT :i"), {"i": i}).all()

    queries = statement_spans(telemetry)
    assert len(queries) == 6
    operation_span_id = op.get_span_context().span_id
    assert all(q.parent is not None and q.parent.span_id == operation_span_id for q in queries)


@pytest.mark.otel_sqlalchemy
def test_with_sqlalchemy_instrumentation_each_statement_is_counted_once(
        telemetry, sqlalchemy_instrumented: Engine):
    executed: list[str] = []
    event.listen(sqlalchemy_instrumented, "after_cursor_execute",
                 lambda conn, cursor, statement, *rest: executed.append(statement))
    with sqlalchemy_instrumented.connect() as conn:
        with flowscope.operation("mixed"):
            for i in range(4):
                conn.execute(text("SELECT :i"), {"i": i}).all()
            conn.execute(text("UPDATE workflow_executions SET status = :s WHERE id = :id"),
                         [{"s": "x", "id": 1}, {"s": "y", "id": 2}])   # executemany
            conn.exec_driver_sql("SELECT 2").all()
            conn.rollback()

    span, = telemetry.span_store.by_operation("mixed")
    assert len(executed) == len(statement_spans(telemetry)) == 6
    assert span.attributes[attr.QUERY_COUNT] == 6


def test_a_relationship_named_in_one_greenlet_is_taken_by_that_greenlet_only() -> None:
    # AsyncSession runs each task's ORM code in a greenlet of its own, all sharing the operation's
    # frame: a lazy load named in one must not be taken, or lost, by another's statement.
    import greenlet

    from flowscope.telemetry._frames import OperationFrame

    frame = OperationFrame(None, "shared")
    taken: dict[str, str | None] = {}

    def first_task() -> None:
        frame.name_relationship("Post.author")
        second.switch()                       # the other task names and runs its statement meanwhile
        taken["author"] = frame.take_relationship()

    def second_task() -> None:
        frame.name_relationship("Post.tags")
        taken["tags"] = frame.take_relationship()
        first.switch()

    first, second = greenlet.greenlet(first_task), greenlet.greenlet(second_task)
    first.switch()

    assert taken == {"tags": "Post.tags", "author": "Post.author"}
    assert frame.take_relationship() is None and not frame.pending_relationship
