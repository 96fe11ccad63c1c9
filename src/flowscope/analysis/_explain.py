"""Ask the database how it runs a statement, and find the full scans in its answer.

    >>> with engine.connect() as connection:
    ...     scans = full_scans(connection, "SELECT id FROM example_big WHERE example_big.code = ?")
    >>> scans
    [FullScan(table='example_big', filter='...')]

Only the plan is asked for: SQLite's ``EXPLAIN QUERY PLAN`` and PostgreSQL's ``EXPLAIN`` never
run the statement (not even an UPDATE), and the connection is rolled back afterwards.

Design decisions:
- The statement is the raw SQL the driver received (kept per fingerprint by the query tally),
  run through the raw DB-API cursor, so flowscope's own query listeners do not count it.
- Parameters are never known (flowscope does not keep them). SQLite plans do not depend on
  values, so every placeholder is bound to NULL. PostgreSQL folds ``col = NULL`` to "false"
  and would show no scan at all, so the statement is PREPAREd with untyped ``$n`` parameters
  and explained as a *generic* plan (``plan_cache_mode = force_generic_plan``, PostgreSQL 12+):
  the plan PostgreSQL uses for any value, with estimated selectivities. (``EXPLAIN
  (GENERIC_PLAN)`` would do the same but needs PostgreSQL 16.)
- A full scan is SQLite's ``SCAN <table>`` without ``USING ... INDEX``, or PostgreSQL's
  ``Seq Scan on <table>`` together with its ``Filter:`` line (a scan without a filter reads
  the whole table on purpose and no index would help).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_names = itertools.count(1)
_SQLITE_SCAN = re.compile(r"^SCAN (?:TABLE )?\"?(\w+)\"?(?: AS \"?\w+\"?)?$")
_PG_SEQ_SCAN = re.compile(r"Seq Scan on \"?(\w+)\"?")
_PG_FILTER = re.compile(r"^\s*Filter: (.*)$")
_STRING = re.compile(r"'(?:[^']|'')*'")
_PYFORMAT = re.compile(r"%\((\w+)\)s|%s|%%")


@dataclass(frozen=True)
class FullScan:
    """One table read from end to end by the plan; ``filter`` is PostgreSQL's filter text."""

    table: str
    filter: str | None = None


class ExplainNotSupportedError(RuntimeError):
    """The database has no plan command flowscope understands."""


def plan_lines(connection: Connection, statement: str) -> list[str]:
    """The plan of ``statement``, one line per step (the statement is not run)."""
    dialect = connection.dialect.name
    cursor = connection.connection.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", (None,) * _qmark_count(statement))
            return [str(row[-1]) for row in cursor.fetchall()]
        if dialect == "postgresql":
            return _postgresql_generic_plan(cursor, statement)
        raise ExplainNotSupportedError(f"no plan command for {dialect!r}; supported: {', '.join(SUPPORTED_DIALECTS)}")
    finally:
        cursor.close()


def full_scans(connection: Connection, statement: str) -> list[FullScan]:
    """Tables the plan of ``statement`` reads in full, with a filter applied (PostgreSQL)."""
    lines = plan_lines(connection, statement)
    if connection.dialect.name == "sqlite":
        return [FullScan(m.group(1)) for m in (_SQLITE_SCAN.match(line.strip()) for line in lines) if m]
    scans = []
    for i, line in enumerate(lines):
        match = _PG_SEQ_SCAN.search(line)
        if match is None:
            continue
        filter_text = None
        for following in lines[i + 1:]:
            if "->" in following or _PG_SEQ_SCAN.search(following):
                break
            found = _PG_FILTER.match(following)
            if found:
                filter_text = found.group(1)
                break
        if filter_text is not None:
            scans.append(FullScan(match.group(1), filter_text))
    return scans


def _postgresql_generic_plan(cursor: Any, statement: str) -> list[str]:
    numbered, count = _dollar_parameters(statement)
    name = f"flowscope_explain_{next(_names)}"
    cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    cursor.execute(f"PREPARE {name} AS {numbered}")
    try:
        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
        cursor.execute(f"EXPLAIN EXECUTE {name}{arguments}")
        return [str(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.execute(f"DEALLOCATE {name}")


def _dollar_parameters(statement: str) -> tuple[str, int]:
    """``%(name)s`` / ``%s`` placeholders (psycopg) as ``$1, $2, ...``; ``%%`` as ``%``."""
    numbers: dict[str, int] = {}
    positional = itertools.count(1)

    def number(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "%%":
            return "%"
        if text == "%s":
            n = next(positional)
            numbers[f"#{n}"] = n
            return f"${n}"
        key = match.group(1)
        if key not in numbers:
            numbers[key] = len(numbers) + 1
        return f"${numbers[key]}"

    numbered = _PYFORMAT.sub(number, statement)
    if "$" in statement and not numbers:       # already numbered (asyncpg-style)
        found = [int(n) for n in re.findall(r"\$(\d+)", _STRING.sub("", statement))]
        return statement, max(found, default=0)
    return numbered, len(numbers)


def _qmark_count(statement: str) -> int:
    return _STRING.sub("", statement).count("?")
