"""Query attribution: count and time every database round trip of every SQLAlchemy engine.

    >>> install_query_listeners()     # done by FlowscopeInstrumentor / configure()
    >>> with flowscope.operation("report"):
    ...     session.execute(select(Order)).all()    # counted in the "report" span

Design decision: a dialect-level ``do_execute`` listener on the ``Engine`` class (all engines,
present and future) that runs the statement through the dialect itself and times it. Measured
here: ~1-2 us per query, where a ``before_cursor_execute`` listener switches on the engine's
whole event path (~5.5 us on a 16 us query) and opentelemetry-instrumentation-sqlalchemy costs
~45 us. Outside any operation the listener returns at once and SQLAlchemy executes as usual.
A ``do_orm_execute`` listener on ``Session`` names the relationship of each ORM lazy load
(``Class.attribute``, from the loader path) so N+1 findings can say which one to eager-load.
It is installed only once some operation has run a SELECT a second time (the moment an N+1
pattern can begin, where the application's call site is already looked up), not with the
other listeners: the mere presence of any ``do_orm_execute`` listener makes SQLAlchemy build an
``ORMExecuteState`` for every ORM execution, ~14 us each (~45 us per action of
bench_end_to_end, whose actions never repeat a statement). Lazy loads before the install are
not named; an N+1 finding needs five repeats, the ones after the second are. Uninstalling
removes it with the others and re-arms the watch. Measured side by side on the
bench_end_to_end workload: ~35 us of CPU per action less than with the permanent listener.
When opentelemetry-instrumentation-sqlalchemy is also on, its cursor events still fire and its
query spans nest under the current operation span; the count is taken here only, once.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .._context import FRAME_KEY, current_context
from .._frames import OperationFrame, repeat_watch, unmeasured
from .._health import health
from ._text import is_read_statement

_installed = False
_lock = threading.Lock()


def _record(frame: OperationFrame, statement: str, seconds: float, parameters: Any,
            relationship: str | None) -> None:
    try:
        frame.record(statement, seconds, parameters, relationship)
    except Exception:  # telemetry never breaks the query it measures
        health.failed("recording a query")


def _record_many(frame: OperationFrame, statement: str, seconds: float, parameters: Any,
                 relationship: str | None) -> None:
    try:
        frame.record(statement, seconds, parameters, relationship).many_rows += len(parameters)
    except Exception:
        health.failed("recording a query")


def _record_unmeasured(statement: str) -> None:
    try:
        unmeasured.record(statement)
    except Exception:
        health.failed("counting a query outside any operation")


# The three listeners below are written out, not built from one helper: each is on the path of
# every query, and a shared helper would cost one more Python call per query.
def _do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        _record_unmeasured(statement)
        return None
    relationship = frame.pending_relationship and frame.take_relationship()
    start = perf_counter()
    try:
        context.dialect.do_execute(cursor, statement, parameters, context)
    finally:
        _record(frame, statement, perf_counter() - start, parameters, relationship)
    return True


def _do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool | None:
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        _record_unmeasured(statement)
        return None
    relationship = frame.pending_relationship and frame.take_relationship()
    start = perf_counter()
    try:
        context.dialect.do_execute_no_params(cursor, statement, context)
    finally:
        _record(frame, statement, perf_counter() - start, None, relationship)
    return True


def _do_executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        _record_unmeasured(statement)
        return None
    relationship = frame.pending_relationship and frame.take_relationship()
    start = perf_counter()
    try:
        context.dialect.do_executemany(cursor, statement, parameters, context)
    finally:
        _record_many(frame, statement, perf_counter() - start, parameters, relationship)
    return True


_LISTENERS = (
    ("do_execute", _do_execute),
    ("do_execute_no_params", _do_execute_no_params),
    ("do_executemany", _do_executemany),
)


def _name_lazy_load(state: Any) -> None:
    """Name the relationship of an ORM lazy load, for the statement that runs next."""
    frame = current_context().get(FRAME_KEY)
    if frame is None:
        return
    try:
        if not state.is_select or state.lazy_loaded_from is None:
            return
        prop = getattr(state.loader_strategy_path, "prop", None)
        if prop is not None:
            frame.name_relationship(f"{prop.parent.class_.__name__}.{prop.key}")
    except Exception:
        health.failed("naming a lazy-loaded relationship")


_naming = False   # whether _name_lazy_load is registered


def _on_repeated_statement(statement: str) -> None:
    """A statement ran a second time inside one operation: from now on name lazy loads."""
    global _naming
    if not is_read_statement(statement):
        return
    try:
        with _lock:
            if _installed and not _naming:
                event.listen(Session, "do_orm_execute", _name_lazy_load)
                _naming = repeat_watch.naming = True
            repeat_watch.hook = None
    except Exception:   # never into the query that triggered it
        health.failed("installing the lazy-load listener")


def install_query_listeners() -> None:
    """Count queries of every SQLAlchemy engine inside flowscope operations (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        for name, fn in _LISTENERS:
            event.listen(Engine, name, fn)
        repeat_watch.hook = _on_repeated_statement   # _name_lazy_load comes with the first repeat
        _installed = True


def uninstall_query_listeners() -> None:
    global _installed, _naming
    with _lock:
        if not _installed:
            return
        repeat_watch.hook = None
        for name, fn in _LISTENERS:
            event.remove(Engine, name, fn)
        if _naming:
            event.remove(Session, "do_orm_execute", _name_lazy_load)
            _naming = repeat_watch.naming = False
        _installed = False


def lazy_load_naming_installed() -> bool:
    """Whether the ``do_orm_execute`` listener is registered (after the first repeated SELECT)."""
    return _naming


def query_listeners_installed() -> bool:
    return _installed
