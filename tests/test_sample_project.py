"""The sample project (tests/sample_project: a book catalog and its own suite) run under the plugin.

A realistic suite of a team's app, which knows nothing of flowscope but one ``[tool.flowscope]``
ignore rule: models with relationships, a planted N+1 (the catalog serializes each book's author
lazily), a planted repeated query in a unittest ``setUp`` (each price label reads the currency
setting again) and a one-by-one import its pyproject ignores, with the reason. pytest runs in a
subprocess there, as the team would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent / "sample_project"


def run_sample(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    report = tmp_path / "report.json"
    env = {**os.environ, "FLOWSCOPE_REPORT_JSON": str(report)}
    env.pop("FLOWSCOPE_AUTO_INSTRUMENT", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
                           *options], capture_output=True, text=True, timeout=300, cwd=SAMPLE, env=env)


def line_of(path: str, marker: str) -> int:
    lines = (SAMPLE / path).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


def test_the_sample_suite_passes_untouched_without_the_plugin(tmp_path: Path) -> None:
    done = run_sample(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout and "= flowscope =" not in done.stdout


def test_under_the_plugin_the_planted_n_plus_one_and_repeated_query_are_named_with_their_lines(
        tmp_path: Path) -> None:
    done = run_sample(tmp_path, "--flowscope")

    assert done.returncode == 0, done.stdout + done.stderr
    n_plus_one = line_of("library/services.py", "# one author query per book")
    repeated = line_of("library/services.py", "# the same query each time")
    summary = done.stdout[done.stdout.index("= flowscope ="):]
    assert "2 findings in tests (2 distinct), worst first; 1 ignored by" in summary
    assert (f"repeated_query in tests/test_prices.py::TestPriceLabels::test_every_book_has_a_label "
            f"at library/services.py:{repeated} in price_label") in summary
    assert (f"n_plus_one     Book.author in tests/test_catalog.py::test_catalog_lists_every_book "
            f"at library/services.py:{n_plus_one} in ") in summary
    assert "test_catalog_eager_lists_the_same" not in summary and "write_loop" not in summary
    report = json.loads((tmp_path / "report.json").read_text())
    tests = {op["name"]: op for op in report["operations"]}
    assert tests["tests/test_catalog.py::test_catalog_lists_every_book"]["query_count"]["total"] == 1 + 8   # 8 authors
    assert tests["tests/test_catalog.py::test_catalog_eager_lists_the_same"]["query_count"]["total"] == 4


def test_nplusone_error_fails_only_the_test_with_the_n_plus_one(tmp_path: Path) -> None:
    done = run_sample(tmp_path, "--flowscope", "--flowscope-nplusone=error")

    assert done.returncode == 1
    assert "1 failed, 4 passed" in done.stdout, done.stdout
    assert "FAILED tests/test_catalog.py::test_catalog_lists_every_book" in done.stdout
    assert "lazy loads of Book.author ran 8 queries" in done.stdout, done.stdout


def test_a_baseline_written_by_the_plugin_makes_the_known_findings_no_error(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    wrote = run_sample(tmp_path, "--flowscope", f"--flowscope-write-baseline={baseline}")
    assert wrote.returncode == 0 and f"wrote the baseline {baseline}" in wrote.stdout, wrote.stdout
    assert {f["kind"] for f in json.loads(baseline.read_text())["findings"]} == {"n_plus_one", "repeated_query"}

    known = run_sample(tmp_path, "--flowscope", "--flowscope-nplusone=error", f"--flowscope-baseline={baseline}")
    assert known.returncode == 0, known.stdout                      # the N+1 is known: no error
    assert "0 findings in tests (0 distinct), worst first; 1 ignored by" in known.stdout
    assert "; 2 known to the baseline" in known.stdout

    (tmp_path / "bad.json").write_text("[]")
    bad = run_sample(tmp_path, "--flowscope", f"--flowscope-baseline={tmp_path / 'bad.json'}")
    assert bad.returncode == 4 and "--flowscope-baseline" in bad.stderr and "not a flowscope baseline" in bad.stderr
