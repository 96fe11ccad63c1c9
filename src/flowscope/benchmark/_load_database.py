"""The load test's database: a temporary SQLite file by default, or the URL given.

    >>> database = open_load_database(None)          # a temporary SQLite file, schema created
    >>> engine = create_load_engine(database.url, pool_size=10)
    >>> database.remove()                            # only ever removes what it created

SQLite and concurrency (what these settings do, and what they cannot do):
- **WAL** (``PRAGMA journal_mode=WAL``, set by a ``connect`` event on every connection):
  readers never block the writer and the writer never blocks readers. **busy timeout**
  (``PRAGMA busy_timeout``, 30 s): a connection that finds the database locked waits for it
  instead of failing at once. ``synchronous=NORMAL``, SQLite's recommended setting with WAL: a
  commit no longer waits for an fsync (the database stays consistent; the last transactions
  before a power cut can be lost). It is a property of the load test's connections only.
- **BEGIN IMMEDIATE** (a ``begin`` event; pysqlite's own transaction handling is switched
  off): every transaction takes the write lock when it starts. With SQLite's default deferred
  transactions, an action that read the execution and then wrote would fail with "database is
  locked" *without waiting* whenever another connection committed in between (the snapshot
  it read is stale, and waiting cannot fix that); under load that is most actions. Taking the
  lock first makes them queue on the busy timeout instead. The BEGIN is sent on the driver
  connection directly, so it is not counted as one of the action's queries.
- **The limit:** SQLite has ONE write lock per database. Every workflow action writes, so
  actions run one at a time across all threads and processes, handlers included; throughput
  is bounded by 1 / (mean action time) however many executions run concurrently, and latency
  grows with concurrency as actions queue (waiters poll the lock with sleeps of up to 100 ms,
  so the queue is not fair and p99 suffers most). Processes cannot help on SQLite; measure
  concurrency on PostgreSQL, whose row locks let independent executions proceed in parallel.
- An in-memory SQLite database exists per connection and cannot be shared by threads or
  processes; it is refused with a clear error (pass ``database_url=None`` for a temporary file).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from ._errors import LoadTestDatabaseError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_NOTE = ("SQLite (WAL, BEGIN IMMEDIATE, busy timeout 30 s): one write lock per database, so actions "
               "run one at a time across all threads and processes; throughput cannot grow with "
               "concurrency here. Use PostgreSQL to measure concurrent throughput.")


@dataclass(frozen=True)
class LoadDatabase:
    """Where a load test runs: the URL, how to show it, and whether it is temporary."""

    url: str
    shown: str                 # password hidden
    temporary: bool
    directory: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.url).get_backend_name() == "sqlite"

    def remove(self) -> None:
        """Delete the temporary database (its file, WAL and shared-memory files); no-op otherwise."""
        if self.temporary and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def open_load_database(database_url: str | None) -> LoadDatabase:
    """Validate ``database_url`` (or create a temporary SQLite file) and check it connects."""
    if database_url is None:
        directory = tempfile.mkdtemp(prefix="flowscope-load-")
        path = Path(directory) / "load-test.db"
        url = f"sqlite:///{path}"
        return LoadDatabase(url=url, shown=url, temporary=True,
                            directory=directory)
    parsed = _parse(database_url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and _in_memory(parsed):
        raise LoadTestDatabaseError(
            f"{shown}: an in-memory SQLite database belongs to one connection and cannot be shared by "
            "concurrent executions; give a file (sqlite:///load.db) or no URL for a temporary file")
    engine = _engine(parsed, shown, pool_size=1)
    try:
        with engine.connect():
            pass
    except DBAPIError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
        raise LoadTestDatabaseError(f"cannot connect to {shown}: {reason}") from None
    finally:
        engine.dispose()
    return LoadDatabase(url=parsed.render_as_string(hide_password=False), shown=shown, temporary=False)


def create_load_engine(database_url: str, pool_size: int) -> Engine:
    """An engine for ``pool_size`` concurrent sessions; SQLite gets the settings above."""
    url = _parse(database_url)
    return _engine(url, url.render_as_string(hide_password=True), pool_size)


def _engine(url: URL, shown: str, pool_size: int) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, pool_size=pool_size, max_overflow=5, pool_timeout=60)
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin_immediate)
            return engine
        return create_engine(url, pool_size=pool_size, max_overflow=5, pool_timeout=60)
    except NoSuchModuleError:
        raise LoadTestDatabaseError(f"{shown}: unknown database dialect or driver {url.drivername!r}") from None
    except ImportError as err:
        raise LoadTestDatabaseError(f"{shown}: the database driver is not installed ({err})") from None


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None     # pysqlite emits no BEGIN/COMMIT of its own
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.connection.driver_connection.execute("BEGIN IMMEDIATE")


def _parse(database_url: str) -> URL:
    try:
        return make_url(database_url)
    except ArgumentError:
        raise LoadTestDatabaseError(
            f"{database_url!r} is not a database URL; expected e.g. sqlite:///load.db or "
            "postgresql+psycopg://user:password@host/dbname (or no URL for a temporary SQLite file)") from None


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or (url.query.get("mode") == "memory")
