"""Span-based operations in a real Celery worker: each task run is a flowscope operation.

A real ``celery worker`` subprocess (solo pool) with a real Redis broker and result backend
(tests/support/redis_server.py), switched on with no code change: FLOWSCOPE_AUTO_INSTRUMENT=true
configures flowscope and turns on opentelemetry-instrumentation-celery, whose CONSUMER span
``run/<task name>`` becomes the operation. The tasks (tests/support/celery_app.py) read a real
SQLite file: one has a planted N+1 over the lazy ``Book.author``, its twin eager-loads it. The
test process sends each task twice and waits for the results; then the worker is stopped with
SIGTERM (Celery's warm shutdown, which exits through ``sys.exit``, so ``atexit`` runs) and the
process report it wrote at exit (FLOWSCOPE_REPORT_JSON) is read.

Without redis-server these tests skip (``scripts/install-redis.sh``); with
FLOWSCOPE_REQUIRE_REDIS=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support import celery_app
from support.celery_app import EAGER_TASK, LAZY_TASK
from support.e2e import clean_env
from support.redis_server import redis_or_skip

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
APP_FILE = TESTS / "support" / "celery_app.py"
BOOKS = 12
RUNS = 2                       # each task is sent this many times
LAZY_QUERIES = 1 + BOOKS       # the books, then one lazy load of Book.author per book
EAGER_QUERIES = 2              # the books, then one SELECT ... IN of their authors (selectinload)
RESULT_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def _lazy_load_line() -> int:
    [line] = [number for number, text in enumerate(APP_FILE.read_text().splitlines(), start=1)
              if text.rstrip().endswith(celery_app.LAZY_LOAD_MARKER)]
    return line


def _wait(result: Any, worker: subprocess.Popen, logs: Path) -> Any:
    """The task's result; fails at once, with the worker's output, if the worker has exited."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    deadline = time.monotonic() + RESULT_TIMEOUT
    while True:
        if worker.poll() is not None:
            pytest.fail(f"the Celery worker exited ({worker.returncode}) before task {result.id} finished:\n"
                        f"{logs.read_text(errors='replace')}")
        try:
            return result.get(timeout=0.5)
        except CeleryTimeout:
            if time.monotonic() > deadline:
                pytest.fail(f"no result for task {result.id} after {RESULT_TIMEOUT:.0f} s; worker output:\n"
                            f"{logs.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the worker once for the module: ``{"report": <exit report JSON>, "results": ..., "log": str}``."""
    with redis_or_skip() as redis:
        tmp = tmp_path_factory.mktemp("celery")
        database = tmp / "books.db"
        report = tmp / "report.json"
        logs = tmp / "worker.log"
        celery_app.seed(str(database), BOOKS)
        # This process only sends: point the app at this run's server (it may have been imported before).
        celery_app.app.conf.update(broker_url=redis.url, result_backend=redis.url)

        env = clean_env(FLOWSCOPE_AUTO_INSTRUMENT="true", FLOWSCOPE_REPORT_JSON=str(report),
                        OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                        PYTHONPATH=str(TESTS),
                        **{celery_app.BROKER_VARIABLE: redis.url, celery_app.DATABASE_VARIABLE: str(database)})
        command = [sys.executable, "-m", "celery", "-A", "support.celery_app", "worker", "--pool", "solo",
                   "--concurrency", "1", "-l", "warning", "--without-gossip", "--without-mingle",
                   "--without-heartbeat", "-n", f"flowscope-test-{os.getpid()}@%h"]
        with logs.open("w") as out:
            # cwd: the repository root, so call sites read tests/support/celery_app.py:<line>.
            worker = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT)
        try:
            results = {"lazy": [], "eager": []}
            for _ in range(RUNS):
                results["lazy"].append(_wait(celery_app.list_books_lazy.delay(), worker, logs))
                results["eager"].append(_wait(celery_app.list_books_eager.apply_async(), worker, logs))
            worker.send_signal(signal.SIGTERM)   # warm shutdown: the worker exits, atexit hooks run
            returncode = worker.wait(timeout=STOP_TIMEOUT)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
        log = logs.read_text(errors="replace")
        assert returncode == 0, f"the worker exited with {returncode}:\n{log}"
        assert report.exists(), f"the worker wrote no report at exit; its output:\n{log}"
        return {"report": json.loads(report.read_text()), "results": results, "log": log}


def _operation(report: dict[str, Any], name: str) -> dict[str, Any]:
    named = {op["name"]: op for op in report["operations"]}
    assert name in named, f"no operation {name!r}; the report has {sorted(named)}"
    return named[name]


def _n_plus_ones(report: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    return [r for r in report["recommendations"] if r["kind"] == "n_plus_one" and r["operation"] == operation]


def test_the_tasks_ran_in_the_worker(worker_run: dict[str, Any]) -> None:
    expected = [f"author {i}" for i in range(BOOKS)]
    assert worker_run["results"] == {"lazy": [expected] * RUNS, "eager": [expected] * RUNS}
    assert "Traceback" not in worker_run["log"], worker_run["log"]


def test_each_task_run_is_an_operation_named_after_its_consumer_span(worker_run: dict[str, Any]) -> None:
    report = worker_run["report"]
    names = sorted(op["name"] for op in report["operations"])
    assert names == sorted([f"run/{LAZY_TASK}", f"run/{EAGER_TASK}"]), names
    for name in names:
        assert _operation(report, name)["count"] == RUNS, name


def test_the_query_count_of_each_task_is_exact(worker_run: dict[str, Any]) -> None:
    report = worker_run["report"]
    for task, queries in ((LAZY_TASK, LAZY_QUERIES), (EAGER_TASK, EAGER_QUERIES)):
        counts = _operation(report, f"run/{task}")["query_count"]
        assert (counts["minimum"], counts["maximum"], counts["total"]) == (queries, queries, queries * RUNS), \
            (task, counts)


def test_the_planted_n_plus_one_is_one_finding_with_relationship_and_call_site(worker_run: dict[str, Any]) -> None:
    operation = f"run/{LAZY_TASK}"
    findings = _n_plus_ones(worker_run["report"], operation)
    assert len(findings) == 1, json.dumps(worker_run["report"]["recommendations"], indent=1)
    evidence = findings[0]["evidence"]
    assert evidence["relationship"] == "Book.author", evidence
    assert evidence["call_site"] == f"tests/support/celery_app.py:{_lazy_load_line()} in list_books_lazy", evidence
    assert evidence["executions"] == BOOKS and evidence["distinct_parameter_sets"] == BOOKS, evidence
    assert "Book.author" in findings[0]["message"] and operation in findings[0]["message"]


def test_the_eager_twin_has_no_n_plus_one(worker_run: dict[str, Any]) -> None:
    report = worker_run["report"]
    assert _n_plus_ones(report, f"run/{EAGER_TASK}") == []
    assert [r["operation"] for r in report["recommendations"] if r["kind"] == "n_plus_one"] == \
        [f"run/{LAZY_TASK}"]
