"""The demo's performance report: the planted onboarding N+1 is found, with its statement, in the
data (``run_demo``), on the terminal (``print_demo``) and through the ``flowscope demo`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import create_engine, func, select

from flowscope.cli import main
from flowscope.demo import DemoResult, print_demo, run_demo
from flowscope.examples import OnboardingTask
from flowscope.telemetry import Telemetry

ONBOARDING_SIGN_OFF = "EmployeeOnboarding.complete_orientation"
STAFF_BY_ID = "FROM example_staff WHERE example_staff.id = ?"   # PostgreSQL adds a bind cast: ?::INTEGER
OPERATIONS_TABLE = "Operations (slowest p95 first"


def most_tasks_of_one_employee(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            counts = select(func.count().label("n")).select_from(OnboardingTask).group_by(OnboardingTask.employee_id).subquery()
            return conn.scalar(select(func.max(counts.c.n)))
    finally:
        engine.dispose()


def staff_statement(result: DemoResult) -> str:
    [(_, fp)] = [(op, fp) for op, fp in result.report.bottlenecks.n_plus_one if op == ONBOARDING_SIGN_OFF]
    return fp.fingerprint


@pytest.fixture(scope="module")
def sqlite_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """One small demo run on a SQLite file, shared by the printing tests."""
    import flowscope

    flowscope.configure()
    return run_demo(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}", executions_per_workflow=5)


def test_run_demo_recommends_fixing_the_onboarding_n_plus_one_with_its_statement(
        database_url: str, telemetry: Telemetry) -> None:
    result = run_demo(database_url, executions_per_workflow=5)

    [finding] = [r for r in result.report.recommendations if r.kind == "n_plus_one"]
    assert finding.operation == ONBOARDING_SIGN_OFF
    assert finding.evidence.fingerprint.startswith("SELECT example_staff.id")
    assert STAFF_BY_ID in finding.evidence.fingerprint
    assert finding.evidence.executions == finding.evidence.distinct_parameter_sets == (
        most_tasks_of_one_employee(database_url))
    assert finding.evidence.spans == 5                       # every sign-off showed it


def test_run_demo_lists_the_onboarding_n_plus_one_among_its_bottlenecks(
        sqlite_demo: DemoResult) -> None:
    assert [op for op, _ in sqlite_demo.report.bottlenecks.n_plus_one] == [ONBOARDING_SIGN_OFF]
    assert STAFF_BY_ID in staff_statement(sqlite_demo)


def test_run_demo_reports_every_example_action_and_none_of_the_set_up(sqlite_demo: DemoResult) -> None:
    names = {op.name for op in sqlite_demo.report.operations}

    for run in sqlite_demo.workflows:
        assert f"{run.workflow}.start" in names
        assert {f"{run.workflow}.{a.action}" for a in run.actions} <= names
    counts = {op.name: op.count for op in sqlite_demo.report.operations}
    assert counts[ONBOARDING_SIGN_OFF] == 5


def test_run_demo_does_not_flag_the_clean_twin(sqlite_demo: DemoResult) -> None:
    flagged = {(r.kind, r.operation) for r in sqlite_demo.report.recommendations}

    assert ("n_plus_one", "OrderFulfillment.pick") not in flagged


def test_print_demo_shows_the_operations_table_and_the_n_plus_one_with_its_statement(
        sqlite_demo: DemoResult) -> None:
    console = Console(record=True, width=160)

    print_demo(sqlite_demo, console)

    output = console.export_text()
    assert OPERATIONS_TABLE in output
    for header in ("Operation", "Count", "p95", "Queries/op"):
        assert header in output
    lines = output.splitlines()
    [at] = [i for i, line in enumerate(lines) if "N+1 pattern" in line]
    assert ONBOARDING_SIGN_OFF in lines[at]
    assert lines[at + 1].strip() == staff_statement(sqlite_demo)             # the bottleneck's statement
    assert f"statement: {staff_statement(sqlite_demo)}" in output            # and the recommendation's
    assert "n_plus_one" in output


def test_flowscope_demo_command_prints_the_n_plus_one_and_its_statement(
        tmp_path: Path, telemetry: Telemetry) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    result = CliRunner().invoke(main, ["demo", "--database-url", url, "--executions", "3"])

    assert result.exit_code == 0, result.output
    assert OPERATIONS_TABLE in result.output
    assert "N+1 pattern" in result.output
    assert ONBOARDING_SIGN_OFF in result.output
    assert "SELECT example_staff.id" in result.output
    assert STAFF_BY_ID in result.output
