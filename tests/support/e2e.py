"""Shared by the end-to-end tests against Phoenix: start it or skip, run the example app, check spans.

    phoenix = shared_phoenix()                 # in a module-scoped fixture; ~12 s, once per run
    result, done = run_example_app(tmp_path, "configure", project="p1", **phoenix.otlp_env("grpc"))
    spans = wait_for_app_spans(phoenix, "p1", result)
    check_action_spans(spans, result)

Phoenix missing: the tests skip with the install command as the reason, except with
FLOWSCOPE_REQUIRE_PHOENIX=1 (CI), where that is a failure.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.phoenix import PhoenixNotInstalled, PhoenixServer

TESTS = Path(__file__).resolve().parents[1]
EXAMPLE_APP = TESTS / "scripts" / "example_app.py"
BIN = Path(sys.executable).parent
INSTALL_HINT = "Phoenix is not installed: run scripts/install-phoenix.sh (make test does)"

MEMORY_ATTRIBUTES = ("workflow.memory.rss_bytes", "workflow.memory.rss_delta_bytes",
                     "workflow.memory.peak_increase_bytes", "workflow.gc.collections")
SpanDict = dict[str, Any]


_shared: PhoenixServer | None = None


def shared_phoenix() -> PhoenixServer:
    """One started PhoenixServer for the whole test run (~12 s to start, so started once).

    Modules that use it ask for it from a module-scoped fixture; it is stopped when the test
    process exits (and, tied to this process, dies with it if the run is killed). Skips (fails
    under FLOWSCOPE_REQUIRE_PHOENIX=1) when Phoenix is not installed. Each test writes to its
    own Phoenix project, so sharing the server shares no spans.
    """
    global _shared
    if _shared is None:
        try:
            server = PhoenixServer()
        except PhoenixNotInstalled as err:
            if os.environ.get("FLOWSCOPE_REQUIRE_PHOENIX") == "1":
                pytest.fail(f"FLOWSCOPE_REQUIRE_PHOENIX=1 but {err}")
            pytest.skip(f"{INSTALL_HINT} ({err})")
        server.start()
        atexit.register(server.stop)
        _shared = server
    return _shared


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without any OTEL_*/FLOWSCOPE_* variable (and without PYTHONPATH), plus ``variables``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "FLOWSCOPE_")) and k != "PYTHONPATH"}
    env.update(variables)
    return env


def run_example_app(tmp_path: Path, mode: str, *, project: str, launcher: tuple[str, ...] = (),
                    timeout: float = 90, **variables: str) -> tuple[dict[str, Any], subprocess.CompletedProcess]:
    """Run tests/scripts/example_app.py in a fresh interpreter; spans go to Phoenix project ``project``."""
    env = clean_env(OTEL_SERVICE_NAME="flowscope-e2e",
                    OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={project}", **variables)
    database = tmp_path / f"{project}.db"
    command = [*launcher, sys.executable, str(EXAMPLE_APP), str(database), mode]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(done.stdout.splitlines()[-1]), done


def wait_for_app_spans(phoenix: PhoenixServer, project: str, result: dict[str, Any], *,
                       timeout: float = 30) -> list[SpanDict]:
    """Every span of the app's batch trace, once the batch and all its operation spans are stored.

    The batch span ends last, so it is exported last (children, query spans included, go in
    the same or an earlier export request, and Phoenix stores requests in order).
    """
    wanted = {*result["spans"], "nightly_batch"}
    deadline = time.monotonic() + timeout
    while True:
        spans = phoenix.spans(project, trace_id=result["batch_trace_id"])
        if wanted <= {s["name"] for s in spans}:
            return spans
        if time.monotonic() > deadline:
            missing = sorted(wanted - {s["name"] for s in spans})
            raise TimeoutError(f"after {timeout:.0f} s Phoenix project {project!r} lacks {missing}; "
                               f"has {len(spans)} spans of the trace")
        time.sleep(0.1)


def by_name(spans: list[SpanDict]) -> dict[str, SpanDict]:
    named: dict[str, SpanDict] = {}
    for span in spans:
        assert span["name"] not in named or "workflow.operation" not in span["attributes"], \
            f"two operation spans named {span['name']!r}"
        named.setdefault(span["name"], span)
    return named


def check_action_spans(spans: list[SpanDict], result: dict[str, Any]) -> dict[str, SpanDict]:
    """Every start/action span is there, under the batch span, with its workflow, memory and
    query attributes (ints as ints); returns the operation spans by name."""
    named = by_name(spans)
    batch = named["nightly_batch"]
    assert batch["context"]["span_id"] == result["batch_span_id"]
    assert batch["parent_id"] is None
    assert batch["attributes"]["workflow.operation"] == "nightly_batch"
    assert batch["attributes"]["batch"] == "e2e"
    missing = [name for name in result["spans"] if name not in named]
    assert not missing, f"missing spans {missing}; Phoenix has {sorted(named)}"
    children_queries = 0
    for name in result["spans"]:
        span = named[name]
        attributes = span["attributes"]
        workflow, _, action = name.partition(".")
        assert span["parent_id"] == result["batch_span_id"], name
        assert span["context"]["trace_id"] == result["batch_trace_id"], name
        assert attributes["workflow.operation"] == name
        assert attributes["workflow.action"] == action
        assert attributes["workflow.class"].endswith(f":{workflow}")
        assert attributes["workflow.execution.id"] == result["executions"][workflow], name
        count = attributes["workflow.db.query_count"]
        assert type(count) is int and count >= 1, (name, count)
        assert isinstance(attributes["workflow.db.query_duration_ms"], (int, float))
        for key in MEMORY_ATTRIBUTES:
            assert type(attributes[key]) is int, (name, key, attributes.get(key))
        assert attributes["workflow.memory.rss_bytes"] > 0
        children_queries += count
    assert batch["attributes"]["workflow.db.query_count"] >= children_queries   # inclusive of nested
    orientation = named["EmployeeOnboarding.complete_orientation"]["attributes"]["workflow.db.query_count"]
    assert orientation >= 10, "the planted N+1: one SELECT per onboarding task (10 for an engineer)"
    return named
