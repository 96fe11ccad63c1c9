"""`flowscope check`: a scenario run measured, its report printed, exit 1 on findings (a CI gate).

Each run is a fresh process (the aggregator is process-wide), on a real SQLite file: a scenario
with an N+1 over a lazy relationship fails the check and names the relationship; the same
scenario with eager loading passes; a scenario that cannot run exits 2 with one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from support.scenarios import LAZY_BOOKS as SCENARIO




def run_check(tmp_path: Path, *args: str, eager: bool = False, ids_only: bool = False) -> subprocess.CompletedProcess:
    scenario = tmp_path / "scenario.py"
    scenario.write_text(textwrap.dedent(SCENARIO))
    script_args = [str(tmp_path / "books.db")] + (["--eager"] if eager else []) + (["--ids-only"] if ids_only else [])
    return subprocess.run([sys.executable, "-c", "from flowscope.cli import main; main()", "check", *args,
                           str(scenario), *script_args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_an_n_plus_one_fails_the_check_and_is_named(tmp_path: Path) -> None:
    done = run_check(tmp_path, "--json", str(tmp_path / "check.json"))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Book.author" in done.stdout and "check failed" in done.stdout
    verdict = json.loads((tmp_path / "check.json").read_text())
    assert verdict["passed"] is False and verdict["fail_on"] == "medium"
    [n_plus_one] = [r for r in verdict["failing"] if r["kind"] == "n_plus_one"]
    assert n_plus_one["operation"] == "list_books"
    assert "selectinload(Book.author)" in n_plus_one["suggestion"]


def test_check_writes_the_report_as_an_html_page_when_asked(tmp_path: Path) -> None:
    done = run_check(tmp_path, "--html", str(tmp_path / "check.html"))

    assert done.returncode == 1, done.stdout + done.stderr
    html = (tmp_path / "check.html").read_text(encoding="utf-8")
    assert "list_books" in html and "Book.author" in html and "selectinload(Book.author)" in html


def test_github_annotations_put_the_n_plus_one_on_the_line_that_runs_it(tmp_path: Path) -> None:
    done = run_check(tmp_path, "--annotations", "github")

    assert done.returncode == 1, done.stdout + done.stderr
    line = 1 + textwrap.dedent(SCENARIO).splitlines().index(
        "            names = [book.author.name for book in session.scalars(query)]")
    [n_plus_one] = [a for a in done.stdout.splitlines() if a.startswith("::") and "n_plus_one" in a]
    assert n_plus_one.startswith(f"::error file=scenario.py,line={line},title=flowscope n_plus_one in list_books::")
    assert "%0AFix: Eager-load the relationship: .options(selectinload(Book.author))" in n_plus_one


def test_junit_xml_has_a_failing_test_case_per_finding_at_its_line(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    done = run_check(tmp_path, "--junit", str(tmp_path / "check.xml"))

    assert done.returncode == 1, done.stdout + done.stderr
    suite = ET.parse(tmp_path / "check.xml").getroot().find("testsuite")
    [case] = [c for c in suite.iter("testcase") if c.get("classname") == "flowscope.n_plus_one"]
    line = 1 + textwrap.dedent(SCENARIO).splitlines().index(
        "            names = [book.author.name for book in session.scalars(query)]")
    assert (case.get("name"), case.get("file"), case.get("line")) == ("list_books: n_plus_one", "scenario.py", str(line))
    failure = case.find("failure")
    assert failure is not None and "selectinload(Book.author)" in failure.text
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure")) >= 1


def test_junit_xml_of_a_clean_run_has_no_failing_test_case(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    done = run_check(tmp_path, "--junit", str(tmp_path / "check.xml"), eager=True)

    assert done.returncode == 0, done.stdout + done.stderr
    suite = ET.parse(tmp_path / "check.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0"
    cases = list(suite.iter("testcase"))
    assert cases and not any(case.find("failure") is not None for case in cases)
    # the scenario is a root operation: what it ran itself (its set-up, the same list three times
    # over its nested operations; counts are inclusive) gives low findings below --fail-on, and
    # none is about the eager-loaded list_books
    assert all(c.get("name").startswith("scenario.py: ") for c in cases), [c.get("name") for c in cases]
    assert all("below --fail-on medium" in c.find("system-out").text for c in cases)


def test_an_annotation_escapes_what_the_workflow_command_format_reserves() -> None:
    from flowscope.ci._formats import _annotation
    from flowscope.analysis._recommendation import Evidence, Recommendation

    rec = Recommendation(kind="slow_query", severity="low", operation="a,b:c", message="100% slow\nreally",
                         suggestion="index it", evidence=Evidence(call_site="app/x,y.py:12 in f"))

    assert _annotation(rec, "warning") == (
        "::warning file=app/x%2Cy.py,line=12,title=flowscope slow_query in a%2Cb%3Ac::"
        "100%25 slow%0Areally%0AFix: index it")


def test_the_same_scenario_with_eager_loading_passes(tmp_path: Path) -> None:
    done = run_check(tmp_path, eager=True)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "check passed" in done.stdout and "list_books" in done.stdout


def test_an_eager_load_the_scenario_never_reads_is_an_unused_eager_load_at_its_line(tmp_path: Path) -> None:
    done = run_check(tmp_path, "--fail-on", "low", "--json", str(tmp_path / "check.json"), eager=True, ids_only=True)

    assert done.returncode == 1, done.stdout + done.stderr
    failing = json.loads((tmp_path / "check.json").read_text())["failing"]
    [rec] = [r for r in failing if r["kind"] == "unused_eager_load"]
    line = 1 + textwrap.dedent(SCENARIO).splitlines().index(
        "            ids = [book.id for book in session.scalars(query)]")
    assert (rec["kind"], rec["operation"], rec["evidence"]["relationship"]) == (
        "unused_eager_load", "list_books", "Book.author")
    assert rec["evidence"]["call_site"].startswith(f"scenario.py:{line} ")
    assert rec["evidence"]["spans"] == 3 and rec["evidence"]["value"] == 30     # 30 authors, in each of 3 runs


def test_fail_on_never_reports_without_failing(tmp_path: Path) -> None:
    done = run_check(tmp_path, "--fail-on", "never")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "n_plus_one" in done.stdout


def test_a_missing_scenario_exits_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "from flowscope.cli import main; main()", "check",
                           str(tmp_path / "nowhere.py")], capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nowhere.py'}: no such script "
                                                "(give a .py file or module:function)"]


def test_a_scenario_that_raises_exits_2_naming_the_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('database is down')\n")
    done = subprocess.run([sys.executable, "-c", "from flowscope.cli import main; main()", "check", str(broken)],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert "RuntimeError: database is down" in done.stderr
