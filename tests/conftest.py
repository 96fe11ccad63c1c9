"""Shared fixtures: real databases.

``database_url`` is parametrized over a SQLite file and PostgreSQL. PostgreSQL comes from
FLOWSCOPE_TEST_POSTGRES_URL (``.ci/run`` starts a server and sets it); without it the default
local URL is tried, and its tests skip with the reason shown. With FLOWSCOPE_REQUIRE_POSTGRES=1
(set by CI) an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from flowscope.workflows import Base

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``otel_sqlalchemy`` need opentelemetry-instrumentation-sqlalchemy, which
    (0.66b) instruments nothing on SQLAlchemy >= 2.1: there they skip, saying so."""
    import sqlalchemy

    if tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) < (2, 1):
        return
    skip = pytest.mark.skip(reason=f"opentelemetry-instrumentation-sqlalchemy supports SQLAlchemy < 2.1 only "
                                   f"(installed: {sqlalchemy.__version__})")
    for item in items:
        if "otel_sqlalchemy" in item.keywords:
            item.add_marker(skip)


DEFAULT_POSTGRES_URL = "postgresql+psycopg://flowscope:flowscope@127.0.0.1:5432/flowscope_test"
_postgres_problem: str | None = None
_postgres_checked = False


def postgres_url() -> str:
    """The PostgreSQL URL for tests, or skip (fail in CI) with the reason."""
    global _postgres_checked, _postgres_problem
    url = os.environ.get("FLOWSCOPE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if not _postgres_checked:
        _postgres_checked = True
        try:
            engine = create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
        except Exception as err:  # any driver/connection problem means "no server here"
            _postgres_problem = f"no PostgreSQL at {url} ({type(err).__name__}: {str(err).splitlines()[0]})"
    if _postgres_problem:
        if os.environ.get("FLOWSCOPE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLOWSCOPE_REQUIRE_POSTGRES=1 but {_postgres_problem}")
        pytest.skip(f"{_postgres_problem}; run scripts/start-postgres.sh and set FLOWSCOPE_TEST_POSTGRES_URL")
    return url


def _reset(engine: Engine, *metadatas) -> None:
    for metadata in metadatas:
        metadata.drop_all(engine)
        metadata.create_all(engine)


@pytest.fixture(scope="session")
def _postgres_schema_url() -> Iterator[str]:
    """PostgreSQL URL whose connections use a schema private to this test process.

    Concurrent test runs against one server (developers, helpers) then never drop each
    other's tables; the schema is dropped at the end of the session.
    """
    url = postgres_url()
    schema = f"flowscope_test_{os.getpid()}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A URL of an empty real database: a SQLite file, then PostgreSQL (a private schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowscope-test.db'}"
    return request.getfixturevalue("_postgres_schema_url")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` with flowscope's and the examples' tables freshly created."""
    from flowscope.examples import ExampleBase

    eng = create_engine(database_url)
    _reset(eng, ExampleBase.metadata, Base.metadata)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


@pytest.fixture
def telemetry():
    """flowscope configured once for the test session (global provider), emptied per test.

    Yields the :class:`flowscope.telemetry.Telemetry`; its ``span_store`` holds this test's
    finished spans and its ``aggregator`` this test's statistics.
    """
    import flowscope
    from flowscope.telemetry import FlowscopeInstrumentor, health

    tel = flowscope.configure()
    FlowscopeInstrumentor().instrument()  # a test may have uninstrumented; no-op otherwise
    tel.aggregator.reset()
    tel.span_store.clear()
    health.reset()
    yield tel
    tel.aggregator.reset()
    tel.span_store.clear()
