"""Specification of ``SpanStore``: the last N finished spans, bounded, and looked up by trace,
execution and operation.

Bounds and look-ups are checked with the SDK's own finished spans made by a TracerProvider of
the test's own (so exact numbers of spans are known); what the configured store holds is
checked through the ``telemetry`` fixture with real operation spans.
"""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Engine, text

import flowscope
from flowscope.telemetry import SpanStore, frame_of, operation_spans
from flowscope.telemetry import _attributes as attr


@pytest.fixture
def store_and_tracer():
    def make(capacity: int):
        store = SpanStore(capacity)
        provider = TracerProvider(resource=Resource({"service.name": "span-store-spec"}))
        provider.add_span_processor(store)
        return store, provider.get_tracer("span-store-spec")
    return make


def test_a_store_keeps_the_last_n_spans_oldest_first(store_and_tracer):
    store, tracer = store_and_tracer(3)
    for i in range(5):
        tracer.start_span(f"span-{i}").end()

    assert [s.name for s in store.spans()] == ["span-2", "span-3", "span-4"]


def test_spans_pushed_out_are_counted_as_evicted(store_and_tracer):
    store, tracer = store_and_tracer(3)
    for i in range(2):
        tracer.start_span(f"span-{i}").end()
    assert store.evicted == 0
    for i in range(5):
        tracer.start_span(f"more-{i}").end()

    assert store.evicted == 4
    assert store.seen == 7
    assert len(store.spans()) == 3


def test_the_store_is_bounded_in_bytes_evicting_the_oldest_spans():
    from flowscope.telemetry._span_store import SIZE_BATCH

    store = SpanStore(capacity=10_000, max_bytes=2_000_000)
    provider = TracerProvider(resource=Resource({"service.name": "span-store-spec"}))
    provider.add_span_processor(store)
    tracer = provider.get_tracer("span-store-spec")
    for i in range(400):                       # 400 x 100 KB of attribute values: 40 MB offered
        with tracer.start_as_current_span(f"big-{i}") as span:
            span.set_attribute("payload", "x" * 100_000)
    for i in range(SIZE_BATCH):               # small ones after: the big ones make room
        tracer.start_span(f"small-{i}").end()

    kept = [s.name for s in store.spans()]
    assert store.bytes <= 2_000_000 and store.evicted_for_bytes > 380
    assert kept[-1] == f"small-{SIZE_BATCH - 1}" and kept[0].startswith("big-")   # the newest kept, oldest gone
    assert int(kept[0].split("-")[1]) > 380
    assert sum(len(s.attributes.get("payload", "")) for s in store.spans()) <= 2_000_000


def test_a_byte_budget_below_one_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        SpanStore(10, max_bytes=0)


def test_a_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match="capacity"):
        SpanStore(0)


def test_clear_empties_the_store_and_its_counts(store_and_tracer):
    store, tracer = store_and_tracer(2)
    for i in range(4):
        tracer.start_span(f"span-{i}").end()
    store.clear()

    assert store.spans() == []
    assert (store.seen, store.evicted) == (0, 0)


def test_spans_still_open_are_not_in_the_store(store_and_tracer):
    store, tracer = store_and_tracer(10)
    span = tracer.start_span("open")
    assert store.spans() == []
    span.end()
    assert [s.name for s in store.spans()] == ["open"]


def test_by_trace_returns_every_span_of_that_trace_only(store_and_tracer):
    store, tracer = store_and_tracer(100)
    with tracer.start_as_current_span("request-a") as a:
        with tracer.start_as_current_span("a-child"):
            pass
    with tracer.start_as_current_span("request-b"):
        pass

    found = store.by_trace(a.get_span_context().trace_id)
    assert sorted(s.name for s in found) == ["a-child", "request-a"]


def test_by_execution_matches_the_execution_id_as_int_or_str(store_and_tracer):
    store, tracer = store_and_tracer(100)
    tracer.start_span("x", attributes={attr.EXECUTION_ID: 42}).end()
    tracer.start_span("y", attributes={attr.EXECUTION_ID: "42"}).end()
    tracer.start_span("z", attributes={attr.EXECUTION_ID: 7}).end()
    tracer.start_span("w").end()

    assert [s.name for s in store.by_execution(42)] == ["x", "y"]
    assert [s.name for s in store.by_execution("42")] == ["x", "y"]
    assert [s.name for s in store.by_execution(7)] == ["z"]
    assert store.by_execution(8) == []


def test_by_operation_matches_the_workflow_operation_attribute(store_and_tracer):
    store, tracer = store_and_tracer(100)
    tracer.start_span("renamed", attributes={attr.OPERATION: "approve"}).end()
    tracer.start_span("approve").end()                       # the name alone is not enough
    tracer.start_span("other", attributes={attr.OPERATION: "reject"}).end()

    assert [s.name for s in store.by_operation("approve")] == ["renamed"]


def test_operation_spans_keeps_only_flowscope_operation_spans(store_and_tracer):
    store, tracer = store_and_tracer(100)
    tracer.start_span("op", attributes={attr.OPERATION: "op"}).end()
    tracer.start_span("http GET").end()

    assert [s.name for s in operation_spans(store.spans())] == ["op"]


def test_concurrent_spans_are_all_seen(store_and_tracer):
    store, tracer = store_and_tracer(500)
    threads_n, per_thread = 8, 500
    barrier = threading.Barrier(threads_n)

    def make_spans():
        barrier.wait()
        for _ in range(per_thread):
            tracer.start_span("concurrent").end()

    threads = [threading.Thread(target=make_spans) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert store.seen == threads_n * per_thread
    assert len(store.spans()) == 500
    assert store.evicted == threads_n * per_thread - 500


# --- the configured store -----------------------------------------------------------------------


def test_the_configured_store_holds_operation_spans_with_their_query_tally(telemetry, engine: Engine):
    with engine.connect() as conn:
        with flowscope.operation("tallied", execution_id_hint=1):
            for _ in range(3):
                conn.execute(text("SELECT 1")).all()

    span, = telemetry.span_store.by_operation("tallied")
    frame = frame_of(span)
    assert frame is not None
    assert frame.query_count == 3
    assert sum(t.count for t in frame.statements.values()) == 3


def test_the_configured_store_also_holds_spans_that_are_not_operations(telemetry):
    from opentelemetry import trace

    with trace.get_tracer("someone-else").start_as_current_span("third-party"):
        pass

    assert [s.name for s in telemetry.span_store.spans()] == ["third-party"]
    assert frame_of(telemetry.span_store.spans()[0]) is None
