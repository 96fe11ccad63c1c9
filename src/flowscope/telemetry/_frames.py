"""Per-operation query tallies, carried in the OpenTelemetry context.

Design decision: every open :func:`flowscope.operation` makes an ``OperationFrame`` current in
the OpenTelemetry context, beside its span (see _context); each frame points to its parent.
The query listener adds to the innermost frame only; a frame adds its totals into its parent
when it closes, so counts are inclusive of nested operations at a cost paid once per
operation, not once per query per level. The context (a context variable underneath) gives the
right attribution for threads (each starts empty) and asyncio tasks (each gets a copy of its
creator's context) with no locking on the query path. A thread given the operation's context
(``contextvars.copy_context().run``, or OpenTelemetry context propagation into threads) counts
its queries in that operation too; frames take no lock, so queries recorded by two threads into
one frame at the same instant can, rarely, lose an increment.

Per statement the frame keeps a count, the time, and a bounded table of parameter-set hashes
(parameters are hashed, never stored): it is what tells an N+1 pattern (same statement,
different parameters) from a repeated query (same statement, same parameters).
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

import sqlalchemy

from ._context import FRAME_KEY, current_context

try:   # what runs ORM code: a greenlet (AsyncSession; every thread has a main greenlet), else a thread
    from greenlet import getcurrent as _runner
except ImportError:   # SQLAlchemy 2.1 without greenlet: sync code only, one thread each
    from threading import get_ident as _runner

MAX_STATEMENTS_PER_FRAME = 256
MAX_PARAMETER_SETS_PER_STATEMENT = 64
OTHER_STATEMENT = "<other statements>"
MAX_ENCLOSING_NAMES = 16
# Statements are kept (and fingerprinted) up to this many characters: a 10 MB statement must not
# stay in every frame, report and span store entry that names it.
MAX_STATEMENT_LENGTH = 16384
# Past this many distinct raw statements in one frame, each new one has its call site looked up at
# its first execution: statements with inlined literals never repeat as raw text.
MANY_DISTINCT_STATEMENTS = 8


class StatementTally:
    """One statement's executions inside one operation."""

    __slots__ = ("count", "seconds", "parameter_sets", "relationship", "call_site", "other_count",
                 "many_rows", "from_flush")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.parameter_sets: dict[int, int] = {}
        self.relationship: str | None = None   # "Class.attribute" when an ORM lazy load ran it
        self.call_site: str | None = None      # application code that ran it a second time
        # executions known not to be a lazy load (run while lazy loads are being named, with none
        # pending): the relationship's loader ran count - other_count of them
        self.other_count = 0
        self.many_rows = 0                     # rows sent by executemany calls (0: none)
        self.from_flush = False                # run by the ORM's unit of work (Session.flush)

    @property
    def loader_count(self) -> int:
        """Executions run by the lazy loader of ``relationship`` (0 when none named)."""
        return self.count - self.other_count if self.relationship is not None else 0

    @property
    def distinct_parameter_sets(self) -> int:
        return len(self.parameter_sets)

    @property
    def most_identical(self) -> int:
        """The most executions with one identical parameter set."""
        return max(self.parameter_sets.values(), default=0)

    def add(self, other: StatementTally) -> None:
        self.count += other.count
        self.seconds += other.seconds
        self.other_count += other.other_count
        self.many_rows += other.many_rows
        self.from_flush = self.from_flush or other.from_flush
        if self.relationship is None:
            self.relationship = other.relationship
        if self.call_site is None:
            self.call_site = other.call_site
        mine = self.parameter_sets
        for key, n in other.parameter_sets.items():
            if key in mine:
                mine[key] += n
            elif len(mine) < MAX_PARAMETER_SETS_PER_STATEMENT:
                mine[key] = n


class OperationFrame:
    """The query tally of one open operation."""

    __slots__ = ("parent", "name", "query_count", "query_seconds", "statements", "pending_relationship",
                 "tracemalloc_baseline", "tracemalloc_peak", "closed", "context_token", "measured",
                 "eager_audit", "nested_query_count")

    def __init__(self, parent: OperationFrame | None, name: str = "") -> None:
        self.parent = parent
        self.name = name   # the operation's name (final once it ends); what nesting is told by
        self.query_count = 0   # inclusive: its nested operations' queries too
        self.nested_query_count = 0   # ... of which its nested operations ran
        self.query_seconds = 0.0
        self.statements: dict[str, StatementTally] = {}
        # set by the ORM listener just before a lazy load's statement runs, per greenlet or
        # thread (see take_relationship); None until the first
        self.pending_relationship: dict[Any, str] | None = None
        self.closed = False
        self.context_token: Any = None   # the OpenTelemetry context token of its span
        # set when its span ends: (name, rss delta, peak increase, query count, query ms), the
        # values recorded on the span, read by the aggregator instead of the span's attributes
        self.measured: tuple[str, int, int, int, float] | None = None
        # only with FLOWSCOPE_MEMORY_PROFILE=tracemalloc: traced bytes at the start, and the
        # highest global peak seen before a nested operation reset it
        self.tracemalloc_baseline = 0
        self.tracemalloc_peak = 0
        self.eager_audit: Any = None   # sql/_eager_audit.EagerAudit, only while that audit is on

    def name_relationship(self, relationship: str) -> None:
        """Name the relationship whose lazy load runs next on this greenlet (or thread)."""
        pending = self.pending_relationship
        if pending is None:
            pending = self.pending_relationship = {}
        pending[_runner()] = relationship

    def take_relationship(self) -> str | None:
        """The lazy-loaded relationship named for the statement about to run here (cleared).

        Design decision: kept per greenlet (AsyncSession runs each task's ORM code in a greenlet
        of its own) or per thread, not per frame: asyncio tasks and threads share their
        operation's frame, and one task's statement must never take (or lose) another's name.
        Kept per frame, a fresh-clone suite run once saw most lazy loads of four concurrent
        tasks recorded unnamed, and their N+1 lost its relationship."""
        pending = self.pending_relationship
        return pending.pop(_runner(), None) if pending else None

    def record(self, statement: str, seconds: float, parameters: Any,
               relationship: str | None = None) -> StatementTally:
        self.query_count += 1
        self.query_seconds += seconds
        if statement[-2:] == "*/":     # a trailing comment (sqlcommenter's traceparent=...): not the statement
            statement = strip_trailing_comment(statement)
        if len(statement) > MAX_STATEMENT_LENGTH:
            statement = statement[:MAX_STATEMENT_LENGTH]
        tally = self.statements.get(statement)
        if tally is None:
            if len(self.statements) >= MAX_STATEMENTS_PER_FRAME:
                statement = OTHER_STATEMENT
                tally = self.statements.get(statement)
            if tally is None:
                tally = self.statements[statement] = StatementTally()
                if len(self.statements) > MANY_DISTINCT_STATEMENTS:
                    # many statements that each run once: literals inlined in a loop, most likely
                    tally.call_site, tally.from_flush = application_call_site_and_flush()
        tally.count += 1
        tally.seconds += seconds
        if relationship is not None:
            tally.relationship = relationship
        elif repeat_watch.naming:
            tally.other_count += 1
        if tally.count == 2 and tally.call_site is None:
            # only statements that repeat pay this
            tally.call_site, tally.from_flush = application_call_site_and_flush()
            if repeat_watch.hook is not None:
                repeat_watch.hook(statement)
        key = _parameter_key(parameters)
        sets = tally.parameter_sets
        if key in sets:
            sets[key] += 1
        elif len(sets) < MAX_PARAMETER_SETS_PER_STATEMENT:
            sets[key] = 1
        return tally

    def enclosing_names(self) -> tuple[str, ...]:
        """The names of the operations this one runs inside, innermost first."""
        names = []
        parent = self.parent
        while parent is not None and len(names) < MAX_ENCLOSING_NAMES:
            names.append(parent.name)
            parent = parent.parent
        return tuple(names)

    def close_into_parent(self) -> None:
        """Add this frame's totals into its parent (inclusive counts for nested operations);
        called when its operation ends, also for an outermost one (the eager-load audit judges then)."""
        if self.eager_audit is not None:
            self.eager_audit.close(self)
        parent = self.parent
        if parent is None:
            return
        parent.query_count += self.query_count
        parent.nested_query_count += self.query_count
        parent.query_seconds += self.query_seconds
        theirs = parent.statements
        for statement, tally in self.statements.items():
            existing = theirs.get(statement)
            if existing is None:
                existing = theirs[statement] = StatementTally()
            existing.add(tally)


_FLOWSCOPE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EXAMPLES_DIR = os.path.join(_FLOWSCOPE_DIR, "examples") + os.sep


def _library_prefixes() -> tuple[str, ...]:
    """Folders whose code is never the application's: flowscope (but its examples), SQLAlchemy,
    OpenTelemetry, the standard library and every installed distribution."""
    prefixes = {_FLOWSCOPE_DIR + os.sep,
                os.path.dirname(os.path.abspath(sqlalchemy.__file__)) + os.sep,
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(sqlalchemy.__file__))),
                             "opentelemetry") + os.sep,
                os.path.dirname(os.path.abspath(contextlib.__file__)) + os.sep}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            prefixes.add(os.path.abspath(path) + os.sep)
    for path in sys.path:   # site-packages / dist-packages of every environment on the path
        if path.rstrip(os.sep).endswith(("site-packages", "dist-packages")):
            prefixes.add(os.path.abspath(path) + os.sep)
    return tuple(sorted(prefixes))


_LIBRARY_PREFIXES = _library_prefixes()
_INSTALLED_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_kind_cache: dict[tuple[str, str], int] = {}
_LIBRARY, _PROJECT, _ELSEWHERE = 0, 1, 2


def _kind(filename: str, root: str) -> int:
    """Whether code in ``filename`` is a library's, the project's (under ``root``), or other application code."""
    key = (filename, root)
    kind = _kind_cache.get(key)
    if kind is None:
        if filename.startswith(_EXAMPLES_DIR):
            kind = _PROJECT if filename.startswith(root) else _ELSEWHERE
        elif (filename.startswith("<") or filename.startswith(_LIBRARY_PREFIXES)
              or any(marker in filename for marker in _INSTALLED_MARKERS)):
            kind = _LIBRARY
        else:
            kind = _PROJECT if filename.startswith(root) else _ELSEWHERE
        if len(_kind_cache) < 10_000:
            _kind_cache[key] = kind
    return kind


def strip_trailing_comment(statement: str) -> str:
    """The statement without its trailing ``/* ... */`` comment (sqlcommenter, ``enable_commenter=True``).

    >>> strip_trailing_comment("SELECT 1 /*traceparent='00-ab-cd-01'*/")
    'SELECT 1'
    """
    start = statement.rfind("/*")
    return statement[:start].rstrip() if start > 0 else statement


def application_call_site_and_flush() -> tuple[str | None, bool]:
    """:func:`application_call_site`, and whether the statement runs inside ``Session.flush``
    (the ORM's unit of work writing rows, not the application looping over them)."""
    return application_call_site(), _in_flush(sys._getframe(1))


def _in_flush(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(_UNIT_OF_WORK_FILES):
            return True
        frame = frame.f_back
    return False


_UNIT_OF_WORK_FILES = (os.path.join("orm", "persistence.py"), os.path.join("orm", "unitofwork.py"))


def application_call_site() -> str | None:
    """``file:line in function`` of the application code that ran the current statement.

    The first frame outside SQLAlchemy, OpenTelemetry, flowscope (its examples count as
    application code), the standard library and every installed distribution, preferring
    files under the project root (the current directory); shown relative to it. A lazy load
    under ``AsyncSession`` runs in a greenlet whose own stack holds only SQLAlchemy: then the
    stacks of the greenlets it was spawned from are walked too.

    Design decision: walked only when a statement runs for the second time inside one
    operation, so the cost (~2-5 us per walk, the classification of each file cached) is paid
    by loops, never by single queries.
    """
    root = os.getcwd() + os.sep
    elsewhere = None
    for frame in _stacks(sys._getframe(1)):
        filename = frame.f_code.co_filename
        kind = _kind(filename, root)
        if kind == _PROJECT:
            return f"{_short(filename, root)}:{frame.f_lineno} in {frame.f_code.co_name}"
        if kind == _ELSEWHERE and elsewhere is None:
            elsewhere = f"{_short(filename, root)}:{frame.f_lineno} in {frame.f_code.co_name}"
    return elsewhere


def _stacks(frame: Any) -> Any:
    """The frames of this stack, then of each greenlet this one was switched to from."""
    while frame is not None:
        yield frame
        frame = frame.f_back
    greenlet = sys.modules.get("greenlet")
    if greenlet is None:
        return
    try:
        current = greenlet.getcurrent().parent
    except Exception:
        return
    while current is not None:
        frame = getattr(current, "gr_frame", None)
        while frame is not None:
            yield frame
            frame = frame.f_back
        current = current.parent


def _short(filename: str, root: str) -> str:
    if filename.startswith(root):
        return filename[len(root):]
    if filename.startswith(_FLOWSCOPE_DIR):
        return "flowscope" + filename[len(_FLOWSCOPE_DIR):]
    return filename


def _parameter_key(parameters: Any) -> int:
    try:
        return hash(parameters)  # tuples: SQLite and most DB-API drivers
    except TypeError:
        pass
    try:
        if isinstance(parameters, dict):  # psycopg and other pyformat drivers
            return hash(tuple(parameters.values()))
        if isinstance(parameters, list):  # executemany
            return hash(tuple(tuple(p) if isinstance(p, (list, tuple)) else repr(p) for p in parameters))
    except TypeError:
        pass
    return hash(repr(parameters))


class UnmeasuredQueries:
    """Queries that ran outside any operation: how many, per statement, and the first call site.

    A report that measured nothing while the application queried must say so (with the
    statements and where they ran) rather than look clean. Costs one dict update per such
    query; the call site is looked up once per statement. Bounded like a frame.
    """

    def __init__(self) -> None:
        self.count = 0
        self.statements: dict[str, list[Any]] = {}   # raw statement -> [count, call site]

    def record(self, statement: str) -> None:
        self.count += 1
        if statement[-2:] == "*/":
            statement = strip_trailing_comment(statement)
        if len(statement) > MAX_STATEMENT_LENGTH:
            statement = statement[:MAX_STATEMENT_LENGTH]
        entry = self.statements.get(statement)
        if entry is None:
            if len(self.statements) >= MAX_STATEMENTS_PER_FRAME:
                statement = OTHER_STATEMENT
                entry = self.statements.get(statement)
            if entry is None:
                entry = self.statements[statement] = [0, application_call_site()]
        entry[0] += 1

    def clear(self) -> None:
        self.count = 0
        self.statements = {}

    def state(self) -> dict[str, Any]:
        """Plain data, for :meth:`merge` in another process (pytest-xdist workers)."""
        return {"count": self.count, "statements": {k: list(v) for k, v in self.statements.items()}}

    def merge(self, state: dict[str, Any]) -> None:
        self.count += state["count"]
        for statement, (count, call_site) in state["statements"].items():
            entry = self.statements.get(statement)
            if entry is None and len(self.statements) < MAX_STATEMENTS_PER_FRAME:
                entry = self.statements[statement] = [0, call_site]
            if entry is not None:
                entry[0] += count


unmeasured = UnmeasuredQueries()


class _RepeatWatch:
    """``hook(statement)`` runs when a statement repeats inside one operation (see sql/_listeners);
    ``naming`` is true while ORM lazy loads are named (every lazy load then says so)."""

    hook: Callable[[str], None] | None = None
    naming = False


repeat_watch = _RepeatWatch()


def innermost_frame() -> OperationFrame | None:
    """The frame of the innermost operation open in the current context (see _context)."""
    return current_context().get(FRAME_KEY)  # type: ignore[return-value]


# Frames of ended operation spans, waiting for the aggregating processor. The SDK hands
# processors a read-only copy of the span, so the frame cannot ride on the span object itself:
# operation() parks it here by span id when its span ends, and the first aggregator to
# aggregate that span (in batches) pops it and attaches it to that copy. Filled only while a
# processor claims them (``claim_frames``); bounded as a safety net.
pending_frames: dict[int, OperationFrame] = {}
MAX_PENDING_FRAMES = 10_000


class _FrameClaims:
    active = 0


def park_frame(span_id: int, frame: OperationFrame) -> None:
    """Leave an ended operation's frame for the aggregator (only while one claims frames)."""
    if _FrameClaims.active:
        if len(pending_frames) >= MAX_PENDING_FRAMES:
            pending_frames.clear()
        pending_frames[span_id] = frame


def claim_frames() -> None:
    """Called by a processor that will pop ``pending_frames`` when it aggregates a span."""
    _FrameClaims.active += 1

