"""Span-based operations on a real FastAPI app served by uvicorn: sync, async and AsyncSession endpoints.

The app (tests/support/fastapi_app.py) knows nothing of flowscope. It runs as its own process,
served by uvicorn on 127.0.0.1, switched on only with ``FLOWSCOPE_AUTO_INSTRUMENT=true`` (which
turns on the installed opentelemetry-instrumentation-fastapi), hit with httpx (concurrently, so
requests interleave on one event loop and in the thread pool) and read back from its
``FLOWSCOPE_REPORT_JSON``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from support.served_app import served_app

APP_SOURCE = Path(__file__).parent / "support" / "fastapi_app.py"
AUTHORS = 12
CONCURRENT = 6


def _line(marker: str) -> int:
    return next(i for i, line in enumerate(APP_SOURCE.read_text().splitlines(), 1) if marker in line)


SYNC_LAZY_LINE = _line("# the sync lazy load")
ASYNC_LAZY_LINE = _line("# the async lazy load")

SERVED_APP = '''
import socket, sys, threading
import uvicorn
sys.path.insert(0, {app_dir!r})
from fastapi_app import create_app

app = create_app(sys.argv[1], authors=%d)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
print(listener.getsockname()[1], flush=True)
def stop_on_stdin():
    sys.stdin.readline()          # the test says when to stop
    server.should_exit = True
threading.Thread(target=stop_on_stdin, daemon=True).start()
server.run(sockets=[listener])
''' % AUTHORS


async def _hit(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        paths = ["/api/posts", "/api/feed", "/api/posts/eager", "/api/posts/5"] * CONCURRENT
        responses = await asyncio.gather(*(http.get(path) for path in paths))
    assert [r.status_code for r in responses] == [200] * len(paths)
    assert all(len(r.json()) == AUTHORS for r in responses if r.url.path == "/api/posts")
    assert all(len(r.json()["items"]) == AUTHORS for r in responses if r.url.path == "/api/feed")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One served app, hit once, read by both tests (a uvicorn start costs ~2 s)."""
    tmp_path = tmp_path_factory.mktemp("fastapi")
    report_path = tmp_path / "report.json"
    with served_app(tmp_path, APP_SOURCE, SERVED_APP, str(tmp_path / "blog.db"),
                    FLOWSCOPE_AUTO_INSTRUMENT="true", FLOWSCOPE_REPORT_JSON=str(report_path)) as port:
        asyncio.run(_hit(port))
    return json.loads(report_path.read_text())


def test_a_fastapi_app_under_uvicorn_is_measured_per_request_with_only_the_auto_switch(report: dict) -> None:
    operations = {op["name"]: op for op in report["operations"]}
    assert set(operations) == {"GET /api/posts", "GET /api/feed", "GET /api/posts/eager",
                               "GET /api/posts/{post_id}"}       # route templates, never raw URLs
    expected_queries = {"GET /api/posts": 1 + AUTHORS,         # sync Session in the thread pool
                        "GET /api/feed": 1 + AUTHORS,          # AsyncSession, one awaited load per row
                        "GET /api/posts/eager": 2,             # posts + one selectin
                        "GET /api/posts/{post_id}": 2}         # the post + its author
    for name, queries in expected_queries.items():
        stats = operations[name]
        assert stats["count"] == CONCURRENT, name
        # Exact per request although the requests interleaved: min and max equal the total's share.
        assert stats["query_count"]["total"] == CONCURRENT * queries, name
        assert stats["query_count"]["minimum"] == stats["query_count"]["maximum"] == queries, name
    # Only the app's set-up (schema and seed rows, before uvicorn served) ran outside a request.
    unmeasured = report["unmeasured"]
    assert unmeasured["queries"] >= 2 * AUTHORS
    assert {s["call_site"].split(" in ")[1] for s in unmeasured["statements"]} == {"create_app"}


def test_the_sync_and_the_async_n_plus_one_each_name_the_relationship_and_the_app_line(report: dict) -> None:
    found = {r["operation"]: r for r in report["recommendations"] if r["kind"] == "n_plus_one"}
    assert set(found) == {"GET /api/posts", "GET /api/feed"}       # the eager twin and the detail are silent
    for rec in found.values():
        assert rec["evidence"]["relationship"] == "Post.author"
        assert rec["evidence"]["executions"] == AUTHORS
    assert found["GET /api/posts"]["evidence"]["call_site"] == f"fastapi_app.py:{SYNC_LAZY_LINE} in serialize"
    # The awaited lazy load runs in SQLAlchemy's greenlet, whose own stack is SQLAlchemy's only:
    # the line is found on the stack of the greenlet that spawned it.
    assert found["GET /api/feed"]["evidence"]["call_site"] == \
        f"fastapi_app.py:{ASYNC_LAZY_LINE} in serialize_async"
