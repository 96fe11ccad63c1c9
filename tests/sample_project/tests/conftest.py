import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from library.models import Base
from library.services import seed


@pytest.fixture
def session(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        seed(s)
        yield s
    engine.dispose()
