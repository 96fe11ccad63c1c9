"""What the catalog's pages call."""

from __future__ import annotations

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, selectinload

from .models import Author, Book, Review, Setting


def catalog(session: Session) -> list[dict]:
    """Every book with its author's name."""
    books = session.scalars(select(Book).order_by(Book.id)).all()
    return [{"title": book.title, "author": book.author.name} for book in books]   # one author query per book


def catalog_eager(session: Session) -> list[dict]:
    books = session.scalars(select(Book).options(selectinload(Book.author)).order_by(Book.id)).all()
    return [{"title": book.title, "author": book.author.name} for book in books]


def average_stars(session: Session, book_id: int) -> float | None:
    return session.scalar(select(func.avg(Review.stars)).where(Review.book_id == book_id))


def price_label(session: Session, book: Book) -> str:
    currency = session.scalar(select(Setting.value).where(Setting.key == "currency"))   # the same query each time
    return f"{book.price_cents / 100:.2f} {currency}"


def seed(session: Session, authors: int = 8, books_per_author: int = 2) -> None:
    session.add(Setting(key="currency", value="EUR"))
    for a in range(authors):
        author = Author(name=f"author {a}")
        author.books = [Book(title=f"book {a}.{b}", price_cents=1000 + 100 * b,
                             reviews=[Review(stars=1 + (a + b) % 5)]) for b in range(books_per_author)]
        session.add(author)
    session.commit()


def import_books(session: Session, author_id: int, titles: list[str]) -> None:
    """The one-by-one import path (one INSERT per title)."""
    for title in titles:
        session.execute(insert(Book).values(title=title, price_cents=999, author_id=author_id))
    session.commit()
