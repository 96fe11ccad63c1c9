"""`flowscope bench` and `flowscope load-test`: tables and JSON on success, exit 2 and one line on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowscope.cli import main
from flowscope.performance import ComparisonResult

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- bench ----------------------------------------------------------------------------------------

def test_bench_prints_statistics_and_the_verdict_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = invoke("bench", "support.bench_targets:single", "support.bench_targets:double", "--iterations", "8",
                    "--warmup", "1", "--min-time", "0.002", "--clock", "cpu", "--json", str(out))

    assert result.exit_code == 0, result.output
    assert "support.bench_targets:single" in result.output and "Median" in result.output
    assert "support.bench_targets:double is" in result.output and "slower than" in result.output
    assert "fastest: support.bench_targets:single" in result.output
    saved = ComparisonResult.load(out)
    assert [s.name for s in saved.subjects] == ["support.bench_targets:single", "support.bench_targets:double"]
    assert len(saved.subjects[0].samples) == 8

    again = invoke("bench", "support.bench_targets:single", "support.bench_targets:double", "--iterations", "8",
                   "--warmup", "1", "--min-time", "0.002", "--clock", "cpu", "--compare-to", str(out))
    assert again.exit_code == 0, again.output
    assert "Against the saved result" in again.output
    assert "support.bench_targets:single (new)" in again.output


def test_bench_fails_on_a_significant_regression_against_the_saved_result_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "main.json"
    run = ("bench", "support.bench_targets:changing", "--iterations", "12", "--warmup", "1", "--min-time", "0.002",
           "--clock", "cpu")
    assert invoke(*run, "--json", str(saved)).exit_code == 0

    same = invoke(*run, "--compare-to", str(saved), "--fail-on-regression", "50")
    assert same.exit_code == 0, same.output
    assert f"no regression over 50% against {saved}" in same.output

    monkeypatch.setenv("BENCH_TARGET_WORK", "6000")                 # three times the work
    slower = invoke(*run, "--compare-to", str(saved), "--fail-on-regression", "50")
    assert slower.exit_code == 1, slower.output
    assert "regression: support.bench_targets:changing is +" in slower.output
    assert f"slower than in {saved}" in slower.output and "over the 50% allowed" in slower.output
    assert invoke(*run, "--compare-to", str(saved), "--fail-on-regression", "500").exit_code == 0   # within 500%

    alone = invoke(*run, "--fail-on-regression", "5")
    assert alone.exit_code == 2 and "--fail-on-regression needs --compare-to FILE" in alone.output


def test_bench_writes_the_comparison_as_an_html_page_when_asked(tmp_path: Path) -> None:
    page = tmp_path / "bench.html"
    result = invoke("bench", "support.bench_targets:single", "support.bench_targets:double", "--iterations", "4",
                    "--warmup", "1", "--min-time", "0.001", "--clock", "cpu", "--html", str(page))

    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert "support.bench_targets:double" in html and "Against the baseline" in html


@pytest.mark.parametrize("args, message", [
    (["no_such_module_xyz:fn"], "module 'no_such_module_xyz' cannot be imported"),
    (["support.bench_targets:missing"], "has no attribute 'missing'"),
    (["support.bench_targets:NOT_CALLABLE"], "it is a int, not a callable"),
    (["support.bench_targets"], "expected 'module:name'"),
    (["support.bench_targets:single", "support.bench_targets:double", "--iterations", "1"],
     "iterations must be at least 2"),
    (["support.bench_targets:single", "--compare-to", "/nonexistent/saved.json"], "No such file"),
])
def test_bench_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    result = invoke("bench", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# -- load-test ------------------------------------------------------------------------------------

def test_load_test_prints_the_summary_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = invoke("load-test", "flowscope.examples:DocumentApproval", "-c", "3", "-n", "3", "--seed", "1",
                    "--json", str(out))

    assert result.exit_code == 0, result.output
    for text in ("Load test", "Throughput", "workflows/s", "Latency per action", "submit_for_review",
                 "DocumentApproval.approve", "one write lock", "temporary"):
        assert text in result.output
    data = json.loads(out.read_text())
    assert data["throughput"] > 0
    assert data["operations_planned"] == 9 and data["operations_accounted_for"] == 9
    assert data["operations_performed"] == 6


def test_load_test_writes_the_result_as_an_html_page_when_asked(tmp_path: Path) -> None:
    page = tmp_path / "load.html"
    result = invoke("load-test", "flowscope.examples:DocumentApproval", "-c", "2", "-n", "2", "--html", str(page))

    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert "load test of flowscope.examples.document_approval:DocumentApproval" in html
    assert "submit_for_review" in html


def test_load_test_in_processes_on_a_given_database(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = invoke("load-test", "support.load_workflows:PingPong", "-c", "2", "-n", "2", "--processes",
                    "--workers", "2", "--database-url", f"sqlite:///{tmp_path / 'cli.db'}", "--json", str(out))

    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["mode"] == "processes" and data["workers"] == 2 and data["operations_performed"] == 4
    assert not data["temporary_database"]


def test_load_test_shows_errors_grouped_by_type(tmp_path: Path) -> None:
    result = invoke("load-test", "support.load_workflows:Flaky", "-c", "4", "-n", "2")

    assert result.exit_code == 0, result.output
    assert "Errors by type" in result.output and "FlakyError" in result.output


@pytest.mark.parametrize("args, message", [
    (["flowscope.examples:DocumentApproval", "-c", "0"], "concurrent_executions must be at least 1, got 0"),
    (["flowscope.examples:DocumentApproval", "-c", "-2"], "concurrent_executions must be at least 1, got -2"),
    (["flowscope.examples:DocumentApproval", "-n", "0"], "operations_per_execution must be at least 1, got 0"),
    (["builtins:int"], "is not a workflow class"),
    (["support.load_workflows:last_action"], "is not a workflow class"),
    (["support.load_workflows:Inert"], "has no action at its initial step"),
    (["no_such_module_xyz:Flow"], "module 'no_such_module_xyz' cannot be imported"),
    (["flowscope.examples:DocumentApproval", "--database-url", "not a url"], "is not a database URL"),
    (["flowscope.examples:DocumentApproval", "-c", "2", "--processes", "--workers", "5"], "workers=5 is more than"),
])
def test_load_test_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    result = invoke("load-test", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_ctrl_c_stops_the_load_test_and_prints_the_partial_results(tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(SRC), os.environ.get("PYTHONPATH", "")]),
               COLUMNS="160")
    process = subprocess.Popen(
        [sys.executable, "-c", "from flowscope.cli import main; main()", "load-test",
         "support.load_workflows:SlowPingPong", "-c", "2", "-n", "1000", "--json", str(out),
         "--database-url", f"sqlite:///{tmp_path / 'ctrl-c.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "ctrl-c.db-wal").exists():
            time.sleep(0.1)
        time.sleep(1.0)          # let some actions run
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "INTERRUPTED: partial results" in output
    data = json.loads(out.read_text())
    assert data["interrupted"] and 0 < data["operations_performed"] < 2000
    assert data["operations_accounted_for"] == 2000
