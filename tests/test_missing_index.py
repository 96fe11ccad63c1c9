"""``missing_index``: asked for with ``optimization_report(explain=True)``, read from the database's
own plan (SQLite EXPLAIN QUERY PLAN, PostgreSQL EXPLAIN of a generic plan): a full scan of a
table of thousands of rows, filtered on a column no index leads. The same lookup with the index
is silent, and so are small tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, String, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import flowscope
from flowscope.performance import Monitor
from flowscope.performance.optimizations import QueryOptimizer
from flowscope.analysis._indexes import filtered_columns
from flowscope.telemetry import Telemetry
from flowscope.workflows import Workflow, start_workflow, step

ROWS = 3000
CREATE_INDEX = "CREATE INDEX ix_test_shipments_tracking_code ON test_shipments (tracking_code)"


class _Base(DeclarativeBase):
    pass


class Shipment(_Base):
    __tablename__ = "test_shipments"

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(32))          # no index: the planted problem
    carrier: Mapped[str] = mapped_column(String(32), index=True)


class Delivery(Workflow):
    booked = step(deliver="delivered")
    delivered = step()


@pytest.fixture
def shipments(engine: Engine) -> Iterator[Engine]:
    """``ROWS`` shipments, none indexed by tracking code."""
    _Base.metadata.drop_all(engine)
    _Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Shipment), [{"tracking_code": f"TRK{i:06d}", "carrier": f"carrier {i % 7}"}
                                        for i in range(ROWS)])
    yield engine
    _Base.metadata.drop_all(engine)


def track(session: Session, codes: range = range(3)) -> None:
    with flowscope.operation("track_parcels"):
        for i in codes:
            session.scalars(select(Shipment).where(Shipment.tracking_code == f"TRK{i:06d}")).one()


def missing(report) -> list:
    return [r for r in report.optimization_opportunities if r.kind == "missing_index"]


def test_a_lookup_by_an_unindexed_column_of_a_large_table_is_a_missing_index(
        shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session:
        track(session)

    report = QueryOptimizer().optimization_report(explain=True, engine=shipments)

    [finding] = missing(report)
    assert finding.operation == "track_parcels"
    assert finding.suggestion.startswith(CREATE_INDEX)
    assert (finding.evidence.value, finding.evidence.unit, finding.evidence.threshold) == (ROWS, "rows", 1000)
    assert finding.evidence.fingerprint.endswith("WHERE test_shipments.tracking_code = ?")
    [index] = report.recommended_indexes
    assert (index.table, index.column, index.create_statement, index.rows) == (
        "test_shipments", "tracking_code", CREATE_INDEX, ROWS)
    assert report.explain.requested and report.explain.explained >= 1


def test_the_process_wide_report_explains_statements_whose_spans_left_the_store(
        shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session:
        track(session)
    telemetry.span_store.clear()      # as when later traffic has pushed these spans out

    report = QueryOptimizer().optimization_report(explain=True, engine=shipments)

    [finding] = missing(report)
    assert finding.operation == "track_parcels" and finding.suggestion.startswith(CREATE_INDEX)


def test_the_same_lookup_with_the_index_is_silent(shipments: Engine, telemetry: Telemetry) -> None:
    with shipments.begin() as conn:
        conn.exec_driver_sql(CREATE_INDEX)
    with Session(shipments) as session:
        track(session)

    report = QueryOptimizer().optimization_report(explain=True, engine=shipments)

    assert missing(report) == [] and report.recommended_indexes == ()
    assert report.explain.explained >= 1 and report.explain.failed == 0


def test_the_suggested_index_really_removes_the_full_scan(shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session:
        track(session)
    [index] = QueryOptimizer().optimization_report(explain=True, engine=shipments).recommended_indexes

    with shipments.begin() as conn:
        conn.exec_driver_sql(index.create_statement)
    telemetry.aggregator.reset()
    telemetry.span_store.clear()
    with Session(shipments) as session:
        track(session)

    assert missing(QueryOptimizer().optimization_report(explain=True, engine=shipments)) == []


def test_a_lookup_by_an_indexed_column_is_silent(shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session, flowscope.operation("by_carrier"):
        session.scalars(select(Shipment).where(Shipment.carrier == "carrier 3")).all()

    assert missing(QueryOptimizer().optimization_report(explain=True, engine=shipments)) == []


def test_a_full_scan_of_a_small_table_is_silent(shipments: Engine, telemetry: Telemetry) -> None:
    with shipments.begin() as conn:
        conn.execute(Shipment.__table__.delete().where(Shipment.id > 50))
    with Session(shipments) as session:
        track(session)

    report = QueryOptimizer().optimization_report(explain=True, engine=shipments)

    assert missing(report) == [] and report.explain.explained >= 1


def test_without_explain_no_plan_is_asked_for(shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session:
        track(session)

    report = QueryOptimizer().optimization_report(engine=shipments)

    assert missing(report) == [] and not report.explain.requested and report.explain.explained == 0


def test_an_execution_s_optimizer_explains_on_its_session_s_database(
        shipments: Engine, telemetry: Telemetry) -> None:
    with Session(shipments) as session:
        execution = start_workflow(session, Delivery)
        with Monitor(execution).monitor_operation("find_parcel"):
            session.scalars(select(Shipment).where(Shipment.tracking_code == "TRK000042")).one()

        [finding] = missing(QueryOptimizer(execution).optimization_report(explain=True))

    assert finding.operation == "find_parcel"


def test_without_a_database_the_report_says_why_nothing_was_explained(telemetry: Telemetry) -> None:
    report = QueryOptimizer().optimization_report(explain=True)

    assert "no engine" in report.explain.skipped
    assert report.recommended_indexes == ()


def test_filtered_columns_are_read_from_the_where_clause_with_aliases() -> None:
    sql = ("SELECT s.id FROM test_shipments AS s JOIN carriers c ON c.id = s.carrier_id "
           "WHERE s.tracking_code = ? AND c.name = ? AND weight > ? ORDER BY s.id")

    assert filtered_columns(sql, "test_shipments") == ["tracking_code", "weight"]
    assert filtered_columns(sql, "carriers") == ["name", "weight"]
    assert filtered_columns("SELECT id FROM t", "t") == []
