from sqlalchemy import func, select

from library.models import Book
from library.services import average_stars, catalog, catalog_eager, import_books


def test_catalog_lists_every_book(session):
    assert len(catalog(session)) == 16


def test_catalog_eager_lists_the_same(session):
    assert catalog_eager(session) == sorted(catalog_eager(session), key=lambda row: row["title"])


def test_average_stars(session):
    assert 1 <= average_stars(session, 1) <= 5


def test_seeding_writes_each_book(session):
    import_books(session, 1, [f"extra {i}" for i in range(6)])
    assert session.scalar(select(func.count()).select_from(Book)) == 22
