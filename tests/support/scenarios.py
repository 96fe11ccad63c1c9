"""Application scripts the subprocess tests run: they know nothing of flowscope's set-up."""

# A list of books whose authors load lazily: an N+1 over Book.author inside the operation
# "list_books", three times (``--eager`` loads them with selectinload instead). Argument: the
# SQLite file.
LAZY_BOOKS = '''
import sys
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

import flowscope


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship()


engine = create_engine("sqlite:///" + sys.argv[1])
Base.metadata.create_all(engine)
with Session(engine) as session:
    session.add_all([Book(author=Author(name=f"author {i}")) for i in range(30)])
    session.commit()

eager, ids_only = "--eager" in sys.argv, "--ids-only" in sys.argv
for _ in range(3):
    with Session(engine) as session, flowscope.operation("list_books"):
        query = select(Book).options(selectinload(Book.author)) if eager else select(Book)
        if ids_only:   # the eager load is never read
            ids = [book.id for book in session.scalars(query)]
        else:
            names = [book.author.name for book in session.scalars(query)]
'''
