"""The declarative base of the example tables, kept apart from flowscope's own ``Base``.

Design decision: a separate ``DeclarativeBase`` (and an ``example_`` prefix on every table
name) so the examples can be created, dropped and reset without touching flowscope's tables or
an application's own ``orders``/``documents`` tables in the same database. No example table
has a foreign key into flowscope's tables: executions point at records through the engine's
polymorphic reference, so either metadata can be dropped first.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import DeclarativeBase


class ExampleBase(DeclarativeBase):
    """Declarative base of the example workflows' tables (``example_*``)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
