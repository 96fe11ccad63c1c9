"""A small Celery application for tests/test_span_operations_celery.py: it knows nothing of flowscope.

    TEST_CELERY_BROKER_URL=redis://127.0.0.1:6379/0 TEST_CELERY_DATABASE=/tmp/books.db \\
        python -m celery -A support.celery_app worker --pool solo     # with tests/ on sys.path

Broker and result backend: the Redis URL in ``TEST_CELERY_BROKER_URL``. Data: SQLAlchemy 2 ORM
models (Author, Book with a lazy many-to-one ``Book.author``) in the SQLite file named by
``TEST_CELERY_DATABASE``, filled by :func:`seed` (one author per book, so each lazy load is a
query of its own: the session's identity map never answers one).

Tasks:
- ``library.list_books_lazy``: the planted N+1, one SELECT of the books, then one lazy load of
  ``Book.author`` per book at the line marked ``# N+1: lazy load``: 1 + N queries.
- ``library.list_books_eager``: its twin with ``selectinload(Book.author)``: 2 queries.
"""

from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery
from sqlalchemy import Engine, ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

BROKER_VARIABLE = "TEST_CELERY_BROKER_URL"
DATABASE_VARIABLE = "TEST_CELERY_DATABASE"
LAZY_TASK = "library.list_books_lazy"
EAGER_TASK = "library.list_books_eager"
LAZY_LOAD_MARKER = "# N+1: lazy load"

app = Celery("support.celery_app")
app.conf.update(
    broker_url=os.environ.get(BROKER_VARIABLE),
    result_backend=os.environ.get(BROKER_VARIABLE),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    result_expires=600,
)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(lazy="select")


def seed(path: str, books: int) -> None:
    """Create the tables in the SQLite file ``path`` and add ``books`` books, each by its own author."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([Book(title=f"book {i}", author=Author(name=f"author {i}")) for i in range(books)])
            session.commit()
    finally:
        engine.dispose()


@lru_cache(maxsize=1)
def engine() -> Engine:
    """The worker's engine on ``TEST_CELERY_DATABASE`` (created at the first task)."""
    path = os.environ.get(DATABASE_VARIABLE)
    if not path:
        raise RuntimeError(f"{DATABASE_VARIABLE} is not set")
    return create_engine(f"sqlite:///{path}")


@app.task(name=LAZY_TASK)
def list_books_lazy() -> list[str]:
    """Each book's author name; the authors load lazily, one query per book (the N+1)."""
    names = []
    with Session(engine()) as session:
        for book in session.scalars(select(Book).order_by(Book.id)):
            names.append(book.author.name)  # N+1: lazy load
    return names


@app.task(name=EAGER_TASK)
def list_books_eager() -> list[str]:
    """The same list with the authors eager-loaded in one more query (no N+1)."""
    names = []
    with Session(engine()) as session:
        for book in session.scalars(select(Book).options(selectinload(Book.author)).order_by(Book.id)):
            names.append(book.author.name)
    return names
