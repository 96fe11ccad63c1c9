"""Unused eager loads (``unused_eager_load``): relationships an operation loads eagerly and never reads.

The audit (telemetry/sql/_eager_audit.py) is opt-in; these tests switch it on and off around
each test, on a real SQLite file, and read the findings through the process report, the
execution Monitor's data path (``PerformanceOptimizer``) and ``flowscope check``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship, selectinload
from sqlalchemy.orm.attributes import InstrumentedAttribute

import flowscope
from flowscope.performance import PerformanceOptimizer, process_report
from flowscope.telemetry import Telemetry, install_eager_load_audit, uninstall_eager_load_audit
from flowscope.telemetry._frames import innermost_frame

SHELVES, BOOKS_PER_SHELF = 6, 3


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "audit_shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]
    books: Mapped[list[Book]] = relationship(back_populates="shelf", order_by="Book.id")
    labels: Mapped[list[Label]] = relationship(lazy="selectin")   # eager by the mapping's default


class Book(Base):
    __tablename__ = "audit_books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    shelf_id: Mapped[int] = mapped_column(ForeignKey("audit_shelves.id"))
    shelf: Mapped[Shelf] = relationship(back_populates="books")


class Label(Base):
    __tablename__ = "audit_labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("audit_shelves.id"))
    text: Mapped[str]


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'library.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for s in range(SHELVES):
            session.add(Shelf(label=f"shelf {s}", labels=[Label(text=f"label {s}")],
                              books=[Book(title=f"book {s}.{b}") for b in range(BOOKS_PER_SHELF)]))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def audit() -> Iterator[None]:
    install_eager_load_audit()
    yield
    uninstall_eager_load_audit()


def unused(recommendations: list) -> dict[tuple[str, str], object]:
    return {(r.operation, r.evidence.relationship): r for r in recommendations if r.kind == "unused_eager_load"}


def shelf_titles(engine: Engine, *, read_books: bool) -> list[str]:
    with Session(engine) as session:
        shelves = session.scalars(select(Shelf).options(selectinload(Shelf.books))).all()
        labels = [shelf.label for shelf in shelves]
        if read_books:
            labels += [book.title for shelf in shelves for book in shelf.books]
        return labels


def test_an_unread_selectinload_is_a_finding_with_its_cost_line_and_fix(library: Engine, telemetry: Telemetry,
                                                                      audit: None) -> None:
    with flowscope.operation("shelves"):
        shelf_titles(library, read_books=False)

    found = unused(process_report().recommendations)
    rec = found[("shelves", "Shelf.books")]
    assert rec.evidence.value == SHELVES * BOOKS_PER_SHELF and rec.evidence.unit == "rows"
    assert rec.evidence.executions == 1 and rec.estimated_savings.queries == 1   # the extra SELECT
    assert rec.evidence.call_site.startswith("tests/test_unused_eager_loads.py:")
    assert "for 6 rows (1 extra query and 18 related rows) and never read" in rec.message
    assert "Drop selectinload(Shelf.books)" in rec.suggestion
    # Shelf.labels is eager by its mapping and unread too: the fix names the mapping's default.
    assert 'lazy="selectin"' in found[("shelves", "Shelf.labels")].suggestion


def test_a_read_eager_load_is_no_finding(library: Engine, telemetry: Telemetry, audit: None) -> None:
    with flowscope.operation("shelves"):
        shelf_titles(library, read_books=True)
    assert ("shelves", "Shelf.books") not in unused(process_report().recommendations)


def test_an_unread_joinedload_says_it_costs_a_join(library: Engine, telemetry: Telemetry, audit: None) -> None:
    with flowscope.operation("books"), Session(library) as session:
        [book.title for book in session.scalars(select(Book).options(joinedload(Book.shelf)))]

    rec = unused(process_report().recommendations)[("books", "Book.shelf")]
    assert rec.evidence.executions == 0 and "a JOIN" in rec.message
    assert "Drop joinedload(Book.shelf)" in rec.suggestion


def test_read_in_one_span_of_an_operation_means_needed(library: Engine, telemetry: Telemetry,
                                                      audit: None) -> None:
    for read_books in (False, True, False):
        with flowscope.operation("sometimes"):
            shelf_titles(library, read_books=read_books)
    for _ in range(2):
        with flowscope.operation("never"):
            shelf_titles(library, read_books=False)

    found = unused(process_report().recommendations)
    assert ("sometimes", "Shelf.books") not in found
    assert found[("never", "Shelf.books")].evidence.spans == 2
    stats = {e.relationship: e for e in telemetry.aggregator.operation("sometimes").eager_loads}
    assert (stats["Shelf.books"].spans, stats["Shelf.books"].unused_spans) == (3, 2)


def test_a_nested_operations_load_read_by_its_caller_is_needed_and_an_unread_one_is_the_inner_ones(
        library: Engine, telemetry: Telemetry, audit: None) -> None:
    with flowscope.operation("page"), Session(library) as session:
        with flowscope.operation("repository"):
            shelves = session.scalars(select(Shelf).options(selectinload(Shelf.books))).all()
        [book.title for shelf in shelves for book in shelf.books]    # the caller reads it

    found = unused(process_report().recommendations)
    assert ("repository", "Shelf.books") not in found and ("page", "Shelf.books") not in found
    assert ("repository", "Shelf.labels") in found                      # loaded in there, read by nobody


def test_the_performance_optimizer_finds_it_too(library: Engine, telemetry: Telemetry, audit: None) -> None:
    # PerformanceOptimizer(None) reads the aggregator; its query optimizer the same rule set.
    with flowscope.operation("shelves"):
        shelf_titles(library, read_books=False)
    kinds = [(r.kind, r.evidence.relationship) for r in PerformanceOptimizer().recommendations()]
    assert ("unused_eager_load", "Shelf.books") in kinds


def test_off_by_default_and_uninstalling_gives_the_attributes_their_class_back(library: Engine,
                                                                             telemetry: Telemetry) -> None:
    with flowscope.operation("shelves"):
        shelf_titles(library, read_books=False)
    assert unused(process_report().recommendations) == {}

    install_eager_load_audit()
    with flowscope.operation("audited"):
        shelf_titles(library, read_books=False)
        assert innermost_frame().eager_audit is not None
    assert type(Shelf.__dict__["books"]).__name__ == "_AuditedAttribute"
    uninstall_eager_load_audit()
    assert type(Shelf.__dict__["books"]) is InstrumentedAttribute
    assert shelf_titles(library, read_books=True)[-1] == "book 5.2"    # the ORM works as before


def test_reads_outside_any_operation_are_not_recorded(library: Engine, telemetry: Telemetry, audit: None) -> None:
    titles = shelf_titles(library, read_books=True)                       # audited classes, no operation
    assert len(titles) == SHELVES + SHELVES * BOOKS_PER_SHELF
    assert unused(process_report().recommendations) == {}


def test_the_environment_switch_turns_the_audit_on(library: Engine, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import flowscope
        from flowscope.performance import process_report
        from test_unused_eager_loads import shelf_titles
        from sqlalchemy import create_engine
        flowscope.configure()
        with flowscope.operation("shelves"):
            shelf_titles(create_engine({str(library.url)!r}), read_books=False)
        print(sorted(r.evidence.relationship for r in process_report().recommendations
                     if r.kind == "unused_eager_load"))
    """))
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    for switch, expected in (("true", "['Shelf.books', 'Shelf.labels']"), ("", "[]")):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env={**env, "FLOWSCOPE_AUDIT_EAGER_LOADS": switch})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == expected
