"""Spans leave the process over OTLP, gRPC and HTTP, and arrive whole at a real receiver.

The receiver is Arize Phoenix (tests/support/phoenix.py), started once for this module on
127.0.0.1. The application runs in a fresh interpreter (``configure()`` is once per process):
tests/scripts/example_app.py calls ``flowscope.configure()`` with OTEL_EXPORTER_OTLP_ENDPOINT
and _PROTOCOL pointing at Phoenix, runs one execution of each example workflow on a SQLite file
inside a ``flowscope.operation("nightly_batch")``, and force-flushes. The spans are then read
back through Phoenix's REST API. Each run writes to its own Phoenix project (resource attribute
``openinference.project.name``), so the runs cannot see each other's spans.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from support.e2e import check_action_spans, run_example_app, shared_phoenix, wait_for_app_spans
from support.phoenix import PhoenixServer

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.fixture(scope="module")
def phoenix() -> PhoenixServer:
    return shared_phoenix()


@pytest.fixture(scope="module")
def exported(phoenix: PhoenixServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """One run of the example app per protocol, side by side: (app's JSON line, spans stored, stderr)."""
    def run(protocol: str) -> tuple:
        project = "export-" + protocol.replace("/", "-")
        result, done = run_example_app(tmp_path_factory.mktemp(project), "configure", project=project,
                                       **phoenix.otlp_env(protocol))
        return result, wait_for_app_spans(phoenix, project, result), done.stderr

    with ThreadPoolExecutor(max_workers=len(PROTOCOLS)) as pool:
        return dict(zip(PROTOCOLS, pool.map(run, PROTOCOLS)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_configure_exports_over_otlp_to_the_endpoint_of_the_environment(exported, protocol):
    result, _, stderr = exported[protocol]
    assert result["exporter"] == "otlp"
    assert result["owns_provider"] is True
    assert result["flushed"] is True
    assert result["warnings"] == []
    assert stderr == ""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_action_span_arrives_under_its_parent_operation_with_its_attributes(exported, protocol):
    result, spans, _ = exported[protocol]
    check_action_spans(spans, result)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_trace_holds_exactly_the_operation_spans_of_the_run(exported, protocol):
    result, spans, _ = exported[protocol]
    assert sorted(s["name"] for s in spans) == sorted([*result["spans"], "nightly_batch"])
    assert len({s["context"]["span_id"] for s in spans}) == len(spans)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_query_counts_arrive_as_integers_and_add_up_in_the_parent(exported, protocol):
    result, spans, _ = exported[protocol]
    counts = {s["name"]: s["attributes"]["workflow.db.query_count"] for s in spans}
    assert all(type(n) is int for n in counts.values())
    actions = sum(n for name, n in counts.items() if name != "nightly_batch")
    # Inclusive: the batch also counts the queries it ran between its children (the
    # session.get() of each workflowable record, reloads after the actions' commits).
    assert counts["nightly_batch"] >= actions + 3


def test_both_protocols_deliver_the_same_span_tree(exported):
    shapes = []
    for protocol in PROTOCOLS:
        _, spans, _ = exported[protocol]
        ids = {s["context"]["span_id"]: s["name"] for s in spans}
        shapes.append(sorted((s["name"], ids.get(s["parent_id"])) for s in spans))
    assert shapes[0] == shapes[1]
