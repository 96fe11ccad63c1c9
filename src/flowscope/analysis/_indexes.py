"""The ``missing_index`` rule: a full scan of a large table, filtered on a column with no index.

    >>> analysis = find_missing_indexes(engine, data, Thresholds())
    >>> analysis.suggestions[0].create_statement
    'CREATE INDEX ix_example_big_code ON example_big (code)'

Runs only when asked (``QueryOptimizer.optimization_report(explain=True)``): it talks to the
database. For the slowest measured statements (mean time per execution) that filter rows, it
asks for the plan (``_explain``); a full scan of a table of at least
``Thresholds.missing_index_min_rows`` rows, filtered on a column that leads no index, primary
key or unique constraint, becomes a finding with the ``CREATE INDEX`` that fixes it.

Design decisions:
- The filtered columns are read from the *fingerprint* (literals already replaced by ``?``),
  the plan only says which table is scanned (and, on PostgreSQL, which columns its filter
  uses). Columns are checked against the live schema (SQLAlchemy's inspector), so a
  suggestion always names a real column of a real table.
- Small tables are left alone: scanning 30 rows is the right plan and an index would not
  help. Rows are counted with ``count(*)`` over ``LIMIT ROW_COUNT_CAP`` rows, so the cost of
  the check is bounded on a huge table.
- The suggestion is DDL for the user to review: flowscope never creates indexes itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Engine

from . import _findings
from ._explain import SUPPORTED_DIALECTS, FullScan, full_scans
from ._recommendation import Evidence, Recommendation, Savings
from ._severity import severity
from ._sources import QueryData

ROW_COUNT_CAP = 1_000_000
_FILTERING = re.compile(r"^\s*(SELECT|UPDATE|DELETE)\b.*\bWHERE\b", re.IGNORECASE | re.DOTALL)
_WHERE = re.compile(r"\bWHERE\b(.*?)(?:\bORDER BY\b|\bGROUP BY\b|\bLIMIT\b|\bOFFSET\b|\bRETURNING\b|\bFOR UPDATE\b|$)",
                    re.IGNORECASE | re.DOTALL)
_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE)\s+\"?(\w+)\"?(?:\s+(?:AS\s+)?\"?(\w+)\"?)?", re.IGNORECASE)
_PREDICATE = re.compile(
    r"(?:\"?(\w+)\"?\.)?\"?(\w+)\"?\s*(?:=|!=|<>|<=|>=|<|>|\bLIKE\b|\bILIKE\b|\bIN\b|\bIS\b|\bBETWEEN\b)",
    re.IGNORECASE)
_KEYWORDS = {"and", "or", "not", "null", "where", "on", "set", "join", "left", "right", "inner", "outer",
             "full", "cross", "limit", "order", "group", "as", "select", "from", "exists", "case", "when",
             "then", "else", "end", "true", "false"}


@dataclass(frozen=True)
class IndexSuggestion:
    """One index to create, and why."""

    table: str
    column: str
    create_statement: str
    operation: str
    fingerprint: str
    rows: int                  # rows in the table (counted up to ROW_COUNT_CAP)
    scan: str                  # what the plan said, e.g. "SCAN example_big"


@dataclass(frozen=True)
class IndexAnalysis:
    recommendations: tuple[Recommendation, ...] = ()
    suggestions: tuple[IndexSuggestion, ...] = ()
    explained: int = 0         # statements whose plan was read
    failed: int = 0            # statements the database could not explain (e.g. other database)
    skipped: str | None = None  # why nothing was explained at all


def find_missing_indexes(engine: Engine | None, data: QueryData, thresholds: _findings.Thresholds,
                         limit: int = 10) -> IndexAnalysis:
    """EXPLAIN the ``limit`` slowest filtering statements of ``data`` on ``engine``."""
    if engine is None:
        return IndexAnalysis(skipped="no engine to explain on: pass engine=, or use an execution in a session")
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        return IndexAnalysis(skipped=f"plans of {engine.dialect.name!r} are not understood "
                                     f"(supported: {', '.join(SUPPORTED_DIALECTS)})")
    candidates = _slowest_filtering(data, limit)
    recommendations: list[Recommendation] = []
    suggestions: list[IndexSuggestion] = []
    seen: set[tuple[str, str]] = set()
    explained = failed = 0
    with engine.connect() as connection:
        schema = _Schema(connection)
        for obs, statement in candidates:
            transaction = connection.begin()
            try:
                scans = full_scans(connection, statement)
                explained += 1
                for scan in scans:
                    found = _suggest(connection, schema, obs, scan, thresholds)
                    if found is not None and (found.table, found.column) not in seen:
                        seen.add((found.table, found.column))
                        suggestions.append(found)
                        recommendations.append(_recommendation(obs, found, thresholds))
            except Exception:
                failed += 1
            finally:
                transaction.rollback()
    return IndexAnalysis(tuple(recommendations), tuple(suggestions), explained, failed)


def _slowest_filtering(data: QueryData, limit: int) -> list[tuple[_findings.StatementObservation, str]]:
    worst: dict[str, _findings.StatementObservation] = {}
    for obs in data.statements:
        if obs.fingerprint in data.examples and _FILTERING.match(obs.fingerprint):
            kept = worst.get(obs.fingerprint)
            if kept is None or _per_execution_ms(obs) > _per_execution_ms(kept):
                worst[obs.fingerprint] = obs
    ranked = sorted(worst.values(), key=_per_execution_ms, reverse=True)[:limit]
    return [(obs, data.examples[obs.fingerprint]) for obs in ranked]


def _per_execution_ms(obs: _findings.StatementObservation) -> float:
    return obs.total_ms / max(obs.executions, 1)


class _Schema:
    """Columns and index-leading columns of tables, read once per analysis."""

    def __init__(self, connection: Connection) -> None:
        self.inspector = sa_inspect(connection)
        self._tables: dict[str, tuple[set[str], set[str]] | None] = {}

    def table(self, name: str) -> tuple[set[str], set[str]] | None:
        if name not in self._tables:
            try:
                columns = {c["name"] for c in self.inspector.get_columns(name)}
                leading = set()
                for index in self.inspector.get_indexes(name):
                    if index["column_names"] and index["column_names"][0]:
                        leading.add(index["column_names"][0])
                for unique in self.inspector.get_unique_constraints(name):
                    if unique["column_names"]:
                        leading.add(unique["column_names"][0])
                primary = self.inspector.get_pk_constraint(name).get("constrained_columns") or []
                if primary:
                    leading.add(primary[0])
                self._tables[name] = (columns, leading)
            except Exception:
                self._tables[name] = None
        return self._tables[name]


def _suggest(connection: Connection, schema: _Schema, obs: _findings.StatementObservation, scan: FullScan,
             thresholds: _findings.Thresholds) -> IndexSuggestion | None:
    table = schema.table(scan.table)
    if table is None:
        return None
    columns, indexed = table
    for column in filtered_columns(obs.fingerprint, scan.table):
        if column not in columns or column in indexed:
            continue
        if scan.filter is not None and not re.search(rf"\b{re.escape(column)}\b", scan.filter):
            continue
        rows = _row_count(connection, scan.table)
        if rows < thresholds.missing_index_min_rows:
            return None
        index_name = f"ix_{scan.table}_{column}"[:63]
        where = "SCAN" if connection.dialect.name == "sqlite" else "Seq Scan on"
        return IndexSuggestion(
            table=scan.table, column=column,
            create_statement=f"CREATE INDEX {index_name} ON {scan.table} ({column})",
            operation=obs.operation, fingerprint=obs.fingerprint, rows=rows, scan=f"{where} {scan.table}")
    return None


def filtered_columns(sql: str, table: str) -> list[str]:
    """Columns of ``table`` that the WHERE clause of ``sql`` compares, in order of appearance."""
    aliases = {table: table}
    for match in _TABLE_REF.finditer(sql):
        name, alias = match.group(1), match.group(2)
        if alias and alias.lower() not in _KEYWORDS:
            aliases[alias] = name
    where = _WHERE.search(sql)
    if where is None:
        return []
    found: list[str] = []
    for match in _PREDICATE.finditer(where.group(1)):
        qualifier, column = match.group(1), match.group(2)
        if column.lower() in _KEYWORDS or column.isdigit():
            continue
        if qualifier is None or aliases.get(qualifier) == table:
            if column not in found:
                found.append(column)
    return found


def _row_count(connection: Connection, table: str) -> int:
    quoted = connection.dialect.identifier_preparer.quote(table)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {quoted} LIMIT {ROW_COUNT_CAP}) AS flowscope_rows")
        row: Any = cursor.fetchone()
        return int(row[0])
    finally:
        cursor.close()


def _recommendation(obs: _findings.StatementObservation, found: IndexSuggestion,
                    thresholds: _findings.Thresholds) -> Recommendation:
    at_least = "at least " if found.rows >= ROW_COUNT_CAP else ""
    return Recommendation(
        kind="missing_index", severity=severity(found.rows, thresholds.missing_index_min_rows),
        operation=obs.operation,
        message=(f"Full scan in {obs.operation}: the plan reads all {at_least}{found.rows:,} rows of "
                 f"{found.table} ({found.scan}) to filter on {found.table}.{found.column}, which no index leads"),
        suggestion=(f"{found.create_statement} (or index=True on the mapped column, in a migration); "
                    "then check the plan again with optimization_report(explain=True)"),
        evidence=Evidence(fingerprint=obs.fingerprint, executions=obs.executions, spans=obs.spans,
                          total_ms=round(obs.total_ms, 3), value=found.rows, unit="rows",
                          threshold=thresholds.missing_index_min_rows, call_site=obs.call_site,
                          trace_id=obs.trace_id or None, span_id=obs.span_id or None),
        estimated_savings=Savings(milliseconds=round(obs.total_ms, 3)))
