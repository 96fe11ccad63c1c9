"""Metrics next to the spans: what flowscope exports over OTLP, and that the numbers agree.

The example app (tests/scripts/example_app.py, ``configure`` mode) runs in a fresh interpreter
with OTEL_METRICS_EXPORTER=otlp and the endpoint of a real OTLP receiver in this process
(tests/support/otlp_receiver.py: the official gRPC services and the HTTP/protobuf endpoints).
The same receiver gets the spans, so each metric is checked against the spans of the same run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from flowscope.telemetry import METRICS
from support.e2e import run_example_app
from support.otlp_receiver import OtlpReceiver

PROTOCOLS = ["grpc", "http/protobuf"]
OPERATION = "workflow.operation"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(scope="module", params=PROTOCOLS)
def run(request, receiver: OtlpReceiver, tmp_path_factory) -> tuple[dict, OtlpReceiver]:
    receiver.clear()
    result, done = run_example_app(tmp_path_factory.mktemp("metrics"), "configure", project="metrics",
                                   OTEL_METRICS_EXPORTER="otlp", **receiver.env(request.param))
    assert done.stderr == ""
    assert result["metrics_exporter"] == "otlp"
    return result, receiver


def by_operation(points: dict) -> dict[str, object]:
    return {dict(key)[OPERATION]: point for key, point in points.items()}


def operation_spans(receiver: OtlpReceiver) -> list[tuple[str, dict]]:
    return [(name, attributes) for name, attributes in receiver.spans() if OPERATION in attributes]


def test_every_declared_metric_arrives_with_its_unit(run):
    _, receiver = run
    units = {metric.name: metric.unit for _, metric in receiver.metrics()}
    assert set(units) == {m.name for m in METRICS}
    assert units == {m.name: m.unit for m in METRICS}


def test_the_latency_histogram_counts_every_operation_span_in_seconds(run):
    result, receiver = run
    spans = Counter(attributes[OPERATION] for _, attributes in operation_spans(receiver))
    histogram = by_operation(receiver.last_points("workflow.operation.duration"))
    assert {name: point.count for name, point in histogram.items()} == dict(spans)
    assert set(spans) == {*result["spans"], "nightly_batch"}
    batch = histogram["nightly_batch"]
    assert 0 < batch.sum < 60                    # seconds, not milliseconds
    assert list(batch.explicit_bounds)[:3] == [0.0005, 0.001, 0.0025]


def test_the_query_counter_adds_up_the_spans_query_counts(run):
    _, receiver = run
    expected: Counter[str] = Counter()
    for _, attributes in operation_spans(receiver):
        expected[attributes[OPERATION]] += attributes["workflow.db.query_count"]
    queries = by_operation(receiver.last_points("workflow.db.queries"))
    assert {name: point.as_int for name, point in queries.items()} == dict(expected)
    assert all(point.is_monotonic for _, m in receiver.metrics() if m.name == "workflow.db.queries"
               for point in [m.sum])


def test_the_planted_n_plus_one_is_counted_for_its_operation_and_the_enclosing_one(run):
    _, receiver = run
    findings = by_operation(receiver.last_points("workflow.db.n_plus_one"))
    assert {name: point.as_int for name, point in findings.items()} == {
        "EmployeeOnboarding.complete_orientation": 1, "nightly_batch": 1}


def test_memory_and_dropped_spans_are_observed(run):
    _, receiver = run
    rss, = receiver.last_points("workflow.memory.rss").values()
    assert rss.as_int > 10_000_000
    dropped, = receiver.last_points("flowscope.spans.dropped").values()
    assert dropped.as_int == 0


def test_metrics_resource_is_the_spans_resource(run):
    _, receiver = run
    resources = {tuple(sorted(resource.items())) for resource, _ in receiver.metrics()}
    assert len(resources) == 1
    resource = dict(next(iter(resources)))
    assert resource["service.name"] == "flowscope-e2e"
