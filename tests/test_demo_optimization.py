"""The demo's optimization loop: the planted N+1 is found, ``auto_optimize`` eager-loads exactly
its relationship, and the same workflow run again needs fewer queries, both numbers printed; the
fixes are off again when the demo returns."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from flowscope.cli import main
from flowscope.demo import DemoResult, print_demo, run_demo
from flowscope.performance.optimizations import _caching, _eager_loading
from flowscope.telemetry import Telemetry

SIGN_OFF = "EmployeeOnboarding.complete_orientation"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    import flowscope

    flowscope.configure()
    return run_demo(f"sqlite:///{tmp_path_factory.mktemp('optimize') / 'demo.db'}", executions_per_workflow=5)


def test_the_demo_eager_loads_the_relationship_its_n_plus_one_names(database_url: str, telemetry: Telemetry) -> None:
    result = run_demo(database_url, executions_per_workflow=3)

    loop = result.optimization
    assert [(f.kind, f.target, f.because) for f in loop.applied] == [
        ("eager_loading", "OnboardingTask.assignee", f"n_plus_one in {SIGN_OFF}")]
    before, after = loop.queries_per_operation(SIGN_OFF)
    assert before - after >= 8 - 1                       # every task's assignee in one query
    assert loop.after.operation(SIGN_OFF).count == loop.before.operation(SIGN_OFF).count == 3
    assert loop.queries_after < loop.queries_before


def test_the_demo_leaves_no_optimization_enabled(demo: DemoResult) -> None:
    assert demo.optimization is not None and demo.optimization.applied
    assert _eager_loading.enabled() == () and _caching.enabled() == ()


def test_the_demo_report_still_shows_the_n_plus_one_measured_before_the_fix(demo: DemoResult) -> None:
    assert [r.kind for r in demo.report.recommendations] == ["n_plus_one"]
    sign_off = next(op for op in demo.report.operations if op.name == SIGN_OFF)
    assert sign_off.count == 5


def test_print_demo_shows_the_loop_with_both_numbers(demo: DemoResult) -> None:
    console = Console(record=True, width=200)

    print_demo(demo, console)

    output = console.export_text()
    before, after = demo.optimization.queries_per_operation(SIGN_OFF)
    assert "Optimization loop" in output
    assert "applied: eager_loading OnboardingTask.assignee" in output
    assert f"{SIGN_OFF}: {before:.1f} queries/op before, {after:.1f} after" in output


def test_flowscope_demo_command_prints_the_optimization_loop(tmp_path: Path, telemetry: Telemetry) -> None:
    result = CliRunner().invoke(main, ["demo", "--database-url", f"sqlite:///{tmp_path / 'cli.db'}",
                                       "--executions", "2"])

    assert result.exit_code == 0, result.output
    assert "Optimization loop" in result.output
    assert "queries/op before" in result.output
