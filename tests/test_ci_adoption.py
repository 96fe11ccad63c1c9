"""Adopting `flowscope check` in CI, end to end through the CLI: SARIF, baselines, [tool.flowscope].

Each run is a fresh process on a real SQLite file, with the scenario of tests/test_cli_check.py
(an N+1 over ``Book.author`` unless ``--eager``). SARIF is validated against the official SARIF
2.1.0 JSON schema (scripts/install-sarif-schema.sh fetches it; `make test` does), and skipped
without it unless FLOWSCOPE_REQUIRE_SARIF_SCHEMA=1 (CI).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.scenarios import LAZY_BOOKS

SCHEMA = Path(os.environ.get("FLOWSCOPE_SARIF_SCHEMA", Path(__file__).parent.parent / ".cache" /
                             "sarif-2.1.0-rtm.5.json"))
LOOP_LINE = "            names = [book.author.name for book in session.scalars(query)]"
_runs = itertools.count()


def check(tmp_path: Path, *options: str, scenario_args: tuple[str, ...] = (),
          source: str = LAZY_BOOKS) -> subprocess.CompletedProcess:
    """``flowscope check [options] scenario.py DB [scenario_args]``; each run on a database of its own."""
    scenario = tmp_path / "scenario.py"
    scenario.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-c", "from flowscope.cli import main; main()", "check", *options,
                           "scenario.py", str(tmp_path / f"books-{next(_runs)}.db"), *scenario_args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def sarif_schema() -> dict:
    if not SCHEMA.is_file():
        if os.environ.get("FLOWSCOPE_REQUIRE_SARIF_SCHEMA") == "1":
            pytest.fail(f"FLOWSCOPE_REQUIRE_SARIF_SCHEMA=1 but {SCHEMA} is missing (scripts/install-sarif-schema.sh)")
        pytest.skip(f"no SARIF schema at {SCHEMA} (scripts/install-sarif-schema.sh fetches it)")
    return json.loads(SCHEMA.read_text())


def test_sarif_is_valid_sarif_2_1_0_with_a_rule_per_kind_and_results_on_the_line(tmp_path: Path) -> None:
    import jsonschema

    done = check(tmp_path, "--sarif", "flowscope.sarif")

    assert done.returncode == 1, done.stdout + done.stderr
    log = json.loads((tmp_path / "flowscope.sarif").read_text())
    jsonschema.Draft4Validator(sarif_schema()).validate(log)
    [run] = log["runs"]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert len(rules) == len(set(rules)) and "n_plus_one" in rules
    assert {r["ruleId"] for r in run["results"]} == set(rules)
    [n_plus_one] = [r for r in run["results"] if r["ruleId"] == "n_plus_one"]
    location = n_plus_one["locations"][0]["physicalLocation"]
    line = 1 + textwrap.dedent(LAZY_BOOKS).splitlines().index(LOOP_LINE)
    assert location == {"artifactLocation": {"uri": "scenario.py", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": line}}
    assert n_plus_one["level"] == "error" and "Book.author" in n_plus_one["message"]["text"]
    assert rules[n_plus_one["ruleIndex"]] == "n_plus_one"
    assert len(n_plus_one["partialFingerprints"]["flowscopeFinding/v1"]) == 32


def test_a_baseline_fails_only_on_new_findings_survives_line_moves_and_lists_the_gone_ones(tmp_path: Path) -> None:
    wrote = check(tmp_path, "--fail-on", "low", "--write-baseline", "baseline.json")
    assert wrote.returncode == 1 and "wrote baseline.json" in wrote.stdout, wrote.stdout + wrote.stderr
    known = json.loads((tmp_path / "baseline.json").read_text())
    assert known["format"] == "flowscope-baseline" and any(f["kind"] == "n_plus_one" for f in known["findings"])

    moved = "# three lines added\n# above everything\n# else\n" + textwrap.dedent(LAZY_BOOKS)
    again = check(tmp_path, "--fail-on", "low", "--baseline", "baseline.json", source=moved)
    assert again.returncode == 0, again.stdout + again.stderr          # the same findings, lines moved
    assert f"baseline: 0 new, {len(known['findings'])} known (not failing), 0 gone" in again.stdout

    fixed = check(tmp_path, "--fail-on", "low", "--baseline", "baseline.json", scenario_args=("--eager",))
    assert "gone: n_plus_one in list_books at scenario.py in " in fixed.stdout, fixed.stdout

    unread = check(tmp_path, "--fail-on", "low", "--baseline", "baseline.json",
                   scenario_args=("--eager", "--ids-only"))
    assert unread.returncode == 1, unread.stdout
    failed = next(line for line in unread.stdout.splitlines() if line.startswith("check failed"))
    assert "not in the baseline" in failed and "unused_eager_load in list_books" in failed   # new: fails


def test_a_bad_baseline_exits_2_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "baseline.json").write_text('{"findings": []}')
    done = check(tmp_path, "--baseline", "baseline.json")
    assert done.returncode == 2
    assert "not a flowscope baseline (write one with --write-baseline)" in done.stderr


def test_tool_flowscope_sets_thresholds_and_ignore_rules_that_say_why(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.flowscope]
        fail_on = "low"

        [tool.flowscope.thresholds]
        n_plus_one = 50

        [[tool.flowscope.ignore]]
        kind = "high_query_count"
        operation = "scenario.py"
        reason = "the scenario seeds its rows one by one"

        [[tool.flowscope.ignore]]
        kind = "repeated_query"
        operation = "scenario.py"
        reason = "it lists the books three times on purpose"
    '''))
    done = check(tmp_path, "--json", "check.json")

    verdict = json.loads((tmp_path / "check.json").read_text())
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdict["fail_on"] == "low" and verdict["config"].endswith("pyproject.toml")
    assert not any(r["kind"] == "n_plus_one" for r in verdict["report"]["recommendations"])   # 30 < 50
    assert {i["reason"] for i in verdict["ignored"]} == {"the scenario seeds its rows one by one",
                                                         "it lists the books three times on purpose"}
    assert "ignored (" in done.stdout and "the scenario seeds its rows one by one" in done.stdout


@pytest.mark.parametrize(("table", "message"), [
    ('[tool.flowscope.thresholds]\nn_plus_once = 3', "[tool.flowscope].thresholds: unknown key 'n_plus_once'"),
    ('[tool.flowscope.thresholds]\nn_plus_one = "five"', "n_plus_one = 'five': expected an integer"),
    ('[[tool.flowscope.ignore]]\nkind = "n_plus_one"', "ignore[0]: reason required"),
    ('[[tool.flowscope.ignore]]\nkind = "n_plus_two"\nreason = "x"', "kind = 'n_plus_two': expected one of"),
    ('[tool.flowscope]\nfail_on = "sometimes"', "fail_on = 'sometimes': expected one of low, medium"),
])
def test_bad_configuration_exits_2_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(table + "\n")
    done = check(tmp_path)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "pyproject.toml" in done.stderr, done.stderr


def test_options_after_the_scenario_are_the_scenarios(tmp_path: Path) -> None:
    echo = "import sys\nprint('argv', sys.argv[1:])\n"
    done = check(tmp_path, source=echo, scenario_args=("--json", "mine.json", "--fail-on", "high"))
    assert "', '--json', 'mine.json', '--fail-on', 'high']" in done.stdout, done.stdout
    assert not (tmp_path / "mine.json").exists()


def test_per_operation_thresholds_parse_into_globs_of_thresholds() -> None:
    from flowscope.ci._project_config import parse_config

    config = parse_config({"thresholds": {"n_plus_one": 8, "per_operation": {"GET /reports/*": {
        "slow_operation_ms": 2000}}}}, "pyproject.toml")
    assert config.thresholds.n_plus_one == 8
    assert config.thresholds.for_operation("GET /reports/monthly").slow_operation_ms == 2000
    assert config.thresholds.for_operation("GET /orders").slow_operation_ms == 250
