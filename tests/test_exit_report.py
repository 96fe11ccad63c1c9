"""FLOWSCOPE_REPORT_HTML / FLOWSCOPE_REPORT_JSON: the process report written when the process exits.

Each case is a fresh interpreter, switched on with no code change (FLOWSCOPE_AUTO_INSTRUMENT's
start-up hook), running an N+1 over a lazy relationship on a real SQLite file; the report
files are read after it exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.e2e import clean_env
from support.scenarios import LAZY_BOOKS




def run_app(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(LAZY_BOOKS)
    return subprocess.run([sys.executable, str(app), str(tmp_path / "books.db")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env=clean_env(FLOWSCOPE_AUTO_INSTRUMENT="true", **variables))


def test_at_exit_the_report_is_written_as_html_and_json(tmp_path: Path) -> None:
    done = run_app(tmp_path, FLOWSCOPE_REPORT_HTML=str(tmp_path / "report.html"),
                   FLOWSCOPE_REPORT_JSON=str(tmp_path / "report.json"))

    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "report.json").read_text())
    [n_plus_one] = [r for r in data["recommendations"] if r["kind"] == "n_plus_one"]
    assert n_plus_one["operation"] == "list_books" and n_plus_one["evidence"]["relationship"] == "Book.author"
    assert [op["name"] for op in data["operations"]] == ["list_books"]
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Book.author" in html and "list_books" in html


def test_without_the_variables_nothing_is_written(tmp_path: Path) -> None:
    done = run_app(tmp_path)

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.py", "books.db"]


def test_a_path_that_cannot_be_written_is_one_line_on_stderr_and_the_exit_status_stays_0(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "report.html"
    done = run_app(tmp_path, FLOWSCOPE_REPORT_HTML=str(target))

    assert done.returncode == 0
    assert done.stderr.strip().splitlines() == [
        f"flowscope: FLOWSCOPE_REPORT_HTML={str(target)!r}: cannot write the report "
        f"(FileNotFoundError: [Errno 2] No such file or directory: {str(target)!r})"]
