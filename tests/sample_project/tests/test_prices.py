import tempfile
import unittest

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from library.models import Base, Book
from library.services import price_label, seed


class TestPriceLabels(unittest.TestCase):
    def setUp(self):
        engine = create_engine(f"sqlite:///{tempfile.mkdtemp()}/catalog.db")
        Base.metadata.create_all(engine)
        self.session = Session(engine)
        seed(self.session)
        self.labels = [price_label(self.session, book) for book in self.session.scalars(select(Book))]

    def tearDown(self):
        self.session.close()

    def test_every_book_has_a_label(self):
        self.assertEqual(len(self.labels), 16)
        self.assertTrue(all(label.endswith(" EUR") for label in self.labels))
