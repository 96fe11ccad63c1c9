"""What a SQL statement's text says: its fingerprint, and what kind of statement it is.

    >>> fingerprint("SELECT * FROM t WHERE id IN (?, ?, ?) AND name = 'x'")
    'SELECT * FROM t WHERE id IN (?) AND name = ?'
    >>> values_per_execution("SELECT * FROM t WHERE id IN (?, ?, ?)")
    3
    >>> is_page_walk("SELECT * FROM t WHERE t.id > ? ORDER BY t.id LIMIT ?")
    True

Pure functions of the text (cached), used off the query path: by the aggregator per span and
by the finding rules. Parameter values are never part of it.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WHITESPACE = re.compile(r"\s+")
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_NUMBER_LITERAL = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\$\d+|(?<!:):\w+|\?")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_\w+\]")
_PLACEHOLDER_CAST = re.compile(r"\?::\w+(?:\[\])?")   # psycopg renders %(p)s::INTEGER
MAX_FINGERPRINTED = 16384   # characters of a statement read (frames keep no more: _frames.MAX_STATEMENT_LENGTH)


@lru_cache(maxsize=4096)
def fingerprint(statement: str) -> str:
    """Normalize SQL so statements differing only in literals and placeholders compare equal.

    >>> fingerprint("SELECT * FROM t WHERE id IN (?, ?, ?) AND name = 'x'")
    'SELECT * FROM t WHERE id IN (?) AND name = ?'
    """
    text = _WHITESPACE.sub(" ", statement[:MAX_FINGERPRINTED]).strip()
    text = _STRING_LITERAL.sub("?", text)
    text = _POSTCOMPILE.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER_LITERAL.sub("?", text)
    text = _PLACEHOLDER_CAST.sub("?", text)
    return _IN_LIST.sub("(?)", text)


def is_read_statement(statement: str) -> bool:
    """True for SELECT (and WITH ... SELECT) statements: the ones an N+1 pattern is made of."""
    return statement.lstrip("( \n\t").upper().startswith(("SELECT", "WITH"))


def is_write_statement(statement: str) -> bool:
    """True for INSERT, UPDATE, DELETE (and REPLACE, MERGE, UPSERT) statements."""
    return statement.lstrip("( \n\t").upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE",
                                                          "UPSERT"))


_ANY_PLACEHOLDER = r"(?:\?|%s|%\(\w+\)s|\$\d+|(?<!:):\w+)(?:::\w+(?:\[\])?)?"
_BOUND_LIST = re.compile(rf"\bIN\s*\(\s*({_ANY_PLACEHOLDER}(?:\s*,\s*{_ANY_PLACEHOLDER})*)\s*\)", re.IGNORECASE)
_ROW = re.compile(rf"\(\s*{_ANY_PLACEHOLDER}(?:\s*,\s*{_ANY_PLACEHOLDER})*\s*\)")
_VALUES = re.compile(r"\bVALUES\b", re.IGNORECASE)


@lru_cache(maxsize=4096)
def values_per_execution(statement: str) -> int:
    """How many rows or values one execution of the raw ``statement`` handles: the longest
    bound ``IN (...)`` list of a SELECT, the row tuples after ``VALUES`` of an INSERT (1 when
    neither). More than one means a batch, not a per-row statement."""
    widest = 1
    for match in _BOUND_LIST.finditer(statement):
        widest = max(widest, match.group(1).count(",") + 1)
    values = _VALUES.search(statement)
    if values is not None:
        widest = max(widest, len(_ROW.findall(statement, values.end())))
    return widest


_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_LIMIT = re.compile(r"\b(?:LIMIT|FETCH\s+(?:FIRST|NEXT))\b", re.IGNORECASE)
_OFFSET = re.compile(r"\bOFFSET\b", re.IGNORECASE)
_RANGE_ON_PLACEHOLDER = re.compile(r"(?:[<>]=?\s*\?|\?\s*[<>]=?)")


@lru_cache(maxsize=4096)
def is_page_walk(fingerprinted: str) -> bool:
    """True for a page of an ordered scan (a fingerprint): ``ORDER BY ... LIMIT`` after a bound
    (keyset pagination: ``WHERE id > ?``) or at an ``OFFSET``. Pages of one walk differ only in
    the bound: a walk, not a per-row lookup."""
    return (bool(_ORDER_BY.search(fingerprinted)) and bool(_LIMIT.search(fingerprinted))
            and bool(_OFFSET.search(fingerprinted) or _RANGE_ON_PLACEHOLDER.search(fingerprinted)))
