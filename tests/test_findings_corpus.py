"""The finding rules scored on a labelled corpus (tests/support/findings_corpus.py), on SQLite and PostgreSQL.

Two steps per database:
1. The labels are true: each scenario runs with no flowscope operation open while a
   ``before_cursor_execute`` listener counts the SQL sent to the driver; the statement its label
   names ran as many times as the label says (with distinct or identical parameters, as it says).
2. The rules find exactly the labels: each scenario runs inside its own operation; the process
   report's ``n_plus_one``, ``repeated_query`` and ``write_loop`` findings are matched to the labels
   by (operation, kind, relationship). Precision and recall must be 1.0; every N+1 and write loop
   names a line of the corpus file; nothing else fires.
An eager-load label is proven by its lazy twin (the scenario with ``lazyload`` as its loader): an
unread eager load leaves the twin with no load of the relationship, a read one with lazy loads.

Async scenarios run on an ``AsyncSession`` (aiosqlite; psycopg's async mode on PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import lazyload, sessionmaker

import flowscope
from flowscope.performance import process_report
from flowscope.telemetry import Telemetry, install_eager_load_audit, uninstall_eager_load_audit
from support import findings_corpus as corpus

RULE_KINDS = ("n_plus_one", "repeated_query", "write_loop", "unused_eager_load")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path) -> Iterator[corpus.World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'corpus.db'}"
        async_url = f"sqlite+aiosqlite:///{tmp_path / 'corpus.db'}"
    else:
        url = request.getfixturevalue("_postgres_schema_url")
        async_url = url
    engine = create_engine(url)
    corpus.seed(engine)
    async_engine = create_async_engine(async_url)
    yield corpus.World(engine, sessionmaker(engine), async_sessionmaker(async_engine, expire_on_commit=False))
    asyncio.run(async_engine.dispose())
    engine.dispose()


def run(scenario: corpus.Scenario, world: corpus.World, **loader: object) -> None:
    if scenario.is_async:
        asyncio.run(scenario.run(world, **loader))
    else:
        scenario.run(world, **loader)


@pytest.fixture
def eager_load_audit() -> Iterator[None]:
    install_eager_load_audit()
    yield
    uninstall_eager_load_audit()


def test_the_corpus_covers_every_pattern_with_at_least_30_scenarios() -> None:
    kinds = Counter(kind for s in corpus.SCENARIOS for kind, _ in s.expected)
    assert len(corpus.SCENARIOS) >= 30
    assert kinds["n_plus_one"] >= 10 and kinds["write_loop"] >= 3 and kinds["repeated_query"] >= 2
    assert kinds["unused_eager_load"] >= 3
    assert sum(1 for s in corpus.SCENARIOS if not s.expected) >= 12      # the patterns that must stay silent
    assert sum(1 for s in corpus.SCENARIOS if s.is_async) >= 3


def test_every_label_is_true_by_the_sql_that_ran(world: corpus.World, telemetry: Telemetry) -> None:
    sent: list[tuple[str, object]] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        sent.append((statement, repr(parameters)))

    wrong = []
    for engine in (world.engine, world.async_sessions.kw["bind"].sync_engine):
        event.listen(engine, "before_cursor_execute", count)
    try:
        for scenario in corpus.SCENARIOS:
            runs = [(scenario.proof, {})]
            if scenario.lazy_proof is not None:
                runs.append((scenario.lazy_proof, {"loader": lazyload}))
            for proof, loader in runs:
                sent.clear()
                run(scenario, world, **loader)
                if proof is None:
                    continue
                matching = [(s, p) for s, p in sent if proof.fragment.lower() in s.lower()]
                distinct = len(set(matching))
                name = f"{scenario.name} (lazy twin)" if loader else scenario.name
                if len(matching) != proof.executions:
                    wrong.append(f"{name}: {proof.fragment!r} ran {len(matching)} times, "
                                 f"labelled {proof.executions}")
                elif proof.executions > 1 and proof.distinct_parameters != (distinct == len(matching)):
                    wrong.append(f"{name}: {distinct} distinct of {len(matching)}")
    finally:
        for engine in (world.engine, world.async_sessions.kw["bind"].sync_engine):
            event.remove(engine, "before_cursor_execute", count)
    assert wrong == [], "\n".join(wrong)
    # No operation was open but the ones the scenarios themselves open (nesting): a flowscope-free run.
    assert set(telemetry.aggregator.operation_names()) <= {s.owner for s in corpus.SCENARIOS if s.owner}


def test_the_rules_find_exactly_the_labelled_patterns(world: corpus.World, telemetry: Telemetry,
                                                      eager_load_audit: None) -> None:
    for scenario in corpus.SCENARIOS:
        with flowscope.operation(scenario.operation):
            run(scenario, world)
    findings = [r for r in process_report().recommendations if r.kind in RULE_KINDS]

    expected = {(s.owner or s.operation, kind, relationship) for s in corpus.SCENARIOS
                for kind, relationship in s.expected}
    found = [(r.operation, r.kind, r.evidence.relationship) for r in findings]
    outcome = corpus.Outcome(true_positives=[f for f in found if f in expected],
                             false_positives=[f for f in found if f not in expected],
                             missed=sorted(expected - set(found), key=str))
    assert (outcome.false_positives, outcome.missed) == ([], [])
    assert (outcome.precision, outcome.recall) == (1.0, 1.0)
    assert len(found) == len(set(found))                             # one finding per pattern
    for rec in findings:
        if rec.kind in ("n_plus_one", "write_loop", "unused_eager_load"):
            assert rec.evidence.call_site and "findings_corpus.py:" in rec.evidence.call_site, rec.message
        if rec.kind in ("n_plus_one", "write_loop"):
            assert rec.estimated_savings.queries > 0


def test_a_lazy_load_beside_a_get_of_the_same_sql_counts_the_loader_only(world: corpus.World,
                                                                           telemetry: Telemetry) -> None:
    [scenario] = [s for s in corpus.SCENARIOS if s.run is corpus.get_beside_lazy]
    with flowscope.operation(scenario.operation):
        run(scenario, world)

    [rec] = [r for r in process_report().recommendations if r.kind == "n_plus_one"]
    assert rec.evidence.relationship == "Post.author"
    assert rec.evidence.executions == corpus.AUTHORS - 1       # author 1 was in the identity map already
    assert "(and 1 more of the same SQL run otherwise)" in rec.message


@pytest.mark.otel_sqlalchemy
def test_statements_annotated_by_sqlcommenter_keep_their_relationship_line_and_fix(
        world: corpus.World, telemetry: Telemetry) -> None:
    # enable_commenter=True appends /*...traceparent='00-<trace>-<span>-01'*/: a different text per
    # query span. The tallies are keyed on the statement without it.
    from opentelemetry import trace
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    sent: list[str] = []
    event.listen(world.engine, "after_cursor_execute", lambda conn, cursor, statement, *rest: sent.append(statement))
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(engine=world.engine, tracer_provider=trace.get_tracer_provider(), enable_commenter=True)
    try:
        with flowscope.operation("commented"):
            corpus.many_to_one_lazy(world)
    finally:
        instrumentor.uninstrument()

    assert len({s for s in sent if "traceparent" in s and "FROM corpus_authors" in s}) == corpus.AUTHORS
    [rec] = [r for r in process_report().recommendations if r.kind == "n_plus_one"]
    assert rec.evidence.relationship == "Post.author" and rec.evidence.executions == corpus.AUTHORS
    assert "findings_corpus.py:" in rec.evidence.call_site
    assert "selectinload(Post.author)" in rec.suggestion
    assert "traceparent" not in rec.evidence.fingerprint
