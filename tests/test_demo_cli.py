"""`flowscope demo`: runs every example to a final step, times it, prints it, and can run again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from flowscope.cli import main
from flowscope.demo import DatabaseURLError, DemoResult, print_demo, run_demo
from flowscope.examples import EXAMPLE_WORKFLOWS
from flowscope.workflows import Workflow, WorkflowExecution, create_schema, start_workflow, step

NAMES = [w.__qualname__ for w in EXAMPLE_WORKFLOWS]


class Unrelated(Workflow):
    """Someone else's workflow in the same database; the demo must leave it alone."""

    start = step(finish="done")
    done = step()


def stored_executions(database_url: str, ids: tuple[int, ...]) -> list[WorkflowExecution]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(WorkflowExecution).where(WorkflowExecution.id.in_(ids))))
    finally:
        engine.dispose()


def test_run_demo_walks_every_execution_to_a_final_step(database_url: str) -> None:
    result = run_demo(database_url, executions_per_workflow=3)

    assert [run.workflow for run in result.workflows] == NAMES
    for run, workflow in zip(result.workflows, EXAMPLE_WORKFLOWS):
        assert run.executions == run.completed == 3
        assert run.starts.count == 3
        assert run.transitions == sum(len(a.durations) for a in run.actions) >= 3
        assert set(run.final_steps) <= set(workflow.final_steps())
        assert all(a.total_seconds > 0 and a.mean_seconds <= a.max_seconds for a in run.actions)
        stored = stored_executions(database_url, run.execution_ids)
        assert len(stored) == 3
        assert all(e.status == "completed" and e.workflow_class == workflow.import_path() for e in stored)
    assert result.total_seconds >= sum(r.total_seconds for r in result.workflows)


def test_run_demo_follows_a_deterministic_mix_of_paths(tmp_path: Path) -> None:
    result = run_demo(f"sqlite:///{tmp_path / 'demo.db'}", executions_per_workflow=20)

    documents = result.workflow("DocumentApproval")
    assert documents.final_steps == {"approved": 20}
    assert {"reject", "resubmit", "request_changes"} <= {a.action for a in documents.actions}
    orders = result.workflow("OrderFulfillment")
    assert orders.final_steps == {"delivered": 16, "cancelled": 4}
    assert result.workflow("EmployeeOnboarding").transitions == 20 * 4


def test_running_the_demo_again_replaces_only_earlier_demo_data(database_url: str) -> None:
    engine = create_engine(database_url)
    create_schema(engine)
    with Session(engine) as session:
        unrelated_id = start_workflow(session, Unrelated).id
    engine.dispose()

    run_demo(database_url, executions_per_workflow=3)
    engine = create_engine(database_url)
    with Session(engine) as session:   # the demo's runs plus its optimization loop's re-runs
        left_by_first = session.scalar(select(func.count()).select_from(WorkflowExecution).where(
            WorkflowExecution.workflow_class.in_([w.import_path() for w in EXAMPLE_WORKFLOWS])))
    engine.dispose()
    second = run_demo(database_url, executions_per_workflow=3)

    assert left_by_first >= 3 * len(EXAMPLE_WORKFLOWS)
    assert second.removed_executions == left_by_first
    engine = create_engine(database_url)
    with Session(engine) as session:
        demo_rows = session.scalars(select(WorkflowExecution.id).where(
            WorkflowExecution.workflow_class.in_([w.import_path() for w in EXAMPLE_WORKFLOWS]))).all()
        assert sorted(demo_rows) == sorted(i for run in second.workflows for i in run.execution_ids)
        assert session.get(WorkflowExecution, unrelated_id) is not None
    engine.dispose()


def test_run_demo_rejects_a_bad_url_before_doing_anything() -> None:
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        run_demo("not a url")


def test_print_demo_names_the_database_and_every_workflow_and_action(tmp_path: Path) -> None:
    result = run_demo(f"sqlite:///{tmp_path / 'p.db'}", executions_per_workflow=2)
    console = Console(record=True, width=120)

    print_demo(result, console)

    text = console.export_text()
    assert f"sqlite:///{tmp_path / 'p.db'}" in text
    assert "dropped and recreated" in text
    for run in result.workflows:
        assert run.workflow in text
        assert all(a.action in text for a in run.actions)


def test_demo_result_hides_the_database_password() -> None:
    result = DemoResult(database_url="postgresql+psycopg://u:***@h/db", dialect="postgresql",
                        executions_per_workflow=1, seed=0, removed_executions=0, setup_seconds=0.0,
                        total_seconds=0.0)
    console = Console(record=True, width=120)
    print_demo(result, console)
    assert "***" in console.export_text()


# --- the command --------------------------------------------------------------------------------

def test_demo_command_prints_every_workflow(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(main, ["demo", "--database-url", url, "--executions", "3"])

    assert result.exit_code == 0, result.output
    assert url in result.output
    for name in NAMES:
        assert name in result.output


def test_demo_command_writes_the_report_as_html_when_asked(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["demo", "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
                                       "--executions", "3", "--html", str(page)])

    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "EmployeeOnboarding.complete_orientation" in html and "OnboardingTask.assignee" in html


def test_demo_command_with_an_unwritable_html_path_says_so(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "report.html"
    result = CliRunner().invoke(main, ["demo", "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
                                       "--executions", "1", "--html", str(target)])

    assert result.exit_code == 2
    assert f"--html: cannot write {target}" in result.output


def test_demo_command_runs_twice_on_the_same_file(tmp_path: Path) -> None:
    args = ["demo", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--executions", "3"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)

    assert (first.exit_code, second.exit_code) == (0, 0), second.output
    removed = re.search(r"(\d+) executions left by an earlier demo deleted", second.output)
    assert removed is not None, second.output
    assert int(removed.group(1)) >= 9          # 3 per workflow, plus the optimization loop's re-runs


@pytest.mark.parametrize("url, message", [
    ("not a url", "is not a database URL"),
    ("nosuchdb://somewhere/db", "unknown database dialect or driver 'nosuchdb'"),
    ("sqlite:////nonexistent-directory/x.db", "cannot connect to sqlite:////nonexistent-directory/x.db"),
])
def test_demo_command_with_a_bad_url_exits_2_with_one_clear_line(url: str, message: str) -> None:
    result = CliRunner().invoke(main, ["demo", "--database-url", url])

    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("Error: --database-url:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_demo_command_never_shows_the_database_password() -> None:
    result = CliRunner().invoke(main, ["demo", "--database-url",
                                       "postgresql+psycopg://someone:hunter2@127.0.0.1:1/nowhere"])
    assert result.exit_code == 2
    assert "hunter2" not in result.output and "***" in result.output


def test_demo_command_rejects_zero_executions() -> None:
    result = CliRunner().invoke(main, ["demo", "--executions", "0"])
    assert result.exit_code == 2


def test_flowscope_demo_uses_flowscope_db_in_the_current_directory(tmp_path: Path) -> None:
    """The installed console script, in a real process, with every default."""
    script = Path(sys.executable).with_name("flowscope")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from flowscope.cli import main; main()"]
    env = {**os.environ, "COLUMNS": "120"}

    done = subprocess.run(command + ["demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)

    assert done.returncode == 0, done.stderr
    assert "sqlite:///flowscope.db" in done.stdout
    assert (tmp_path / "flowscope.db").is_file()
    for name in NAMES:
        assert name in done.stdout
