"""One operation span's statements grouped by fingerprint: what the finding rules read.

    >>> tallies = tallies_by_fingerprint(frame.statements)
    >>> tallies["SELECT * FROM users WHERE users.id = ?"].loader_count
    12

Raw statements that differ only in inlined literals (or IN-list lengths) are one statement run
``sum(count)`` times in the span: an N+1 pattern, not several statements run once each. Their
parameter sets are disjoint (other literals are other parameters), so distinct sets add up;
identical repeats can only be identical within one raw statement, so they take the max. Used
by the aggregator (every operation span, off the query path) and by the findings of one
execution's spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._frames import OTHER_STATEMENT, StatementTally
from ._text import fingerprint, is_page_walk, is_read_statement, is_write_statement, values_per_execution


@dataclass
class FingerprintTally:
    """One fingerprint's executions inside one span, over every raw statement it normalizes."""

    count: int = 0
    seconds: float = 0.0
    distinct_parameter_sets: int = 0
    most_identical: int = 0
    relationship: str | None = None
    call_site: str | None = None
    loader_count: int = 0          # executions the relationship's lazy loader ran
    bound_values: int = 0          # rows or values handled, over all executions (batches > count)
    from_flush: bool = False       # run by the ORM's unit of work
    example_statement: str | None = None   # one raw statement (for EXPLAIN; never parameters)

    @property
    def values_per_execution(self) -> float:
        return self.bound_values / self.count if self.count else 1.0


def tallies_by_fingerprint(statements: Mapping[str, StatementTally]) -> dict[str, FingerprintTally]:
    grouped: dict[str, FingerprintTally] = {}
    for statement, tally in statements.items():
        key = fingerprint(statement)
        g = grouped.get(key)
        if g is None:
            g = grouped[key] = FingerprintTally()
            if statement != OTHER_STATEMENT:
                g.example_statement = statement
        g.count += tally.count
        g.seconds += tally.seconds
        sets = tally.parameter_sets
        g.distinct_parameter_sets += len(sets)
        if sets:
            g.most_identical = max(g.most_identical, max(sets.values()))
        g.loader_count += tally.loader_count
        g.bound_values += tally.many_rows if tally.many_rows else tally.count * values_per_execution(statement)
        g.from_flush = g.from_flush or tally.from_flush
        if g.relationship is None:
            g.relationship = tally.relationship
        if g.call_site is None:
            g.call_site = tally.call_site
    return grouped


# One execution handling this many rows or values (on average) is a batch: a selectinload chunk,
# an IN-list of ids, a multi-row INSERT, an executemany.
BATCH_VALUES = 2.0


def is_per_row_read(fingerprinted: str, values_per_execution: float, relationship: str | None) -> bool:
    """A SELECT that, repeated with other parameters, is one lookup per row (an N+1): not a
    batch, and not a page of an ordered walk (unless an ORM lazy loader ran it)."""
    if not is_read_statement(fingerprinted) or values_per_execution >= BATCH_VALUES:
        return False
    return relationship is not None or not is_page_walk(fingerprinted)


def is_per_row_write(fingerprinted: str, values_per_execution: float, from_flush: bool) -> bool:
    """An INSERT/UPDATE/DELETE that, repeated with other parameters, writes one row per call
    (a write loop): not a batch or executemany, and not the ORM's own flush."""
    return is_write_statement(fingerprinted) and values_per_execution < BATCH_VALUES and not from_flush
