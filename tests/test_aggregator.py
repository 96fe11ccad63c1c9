"""Specification of ``BottleneckSpanProcessor``: exact statistics from finished spans, bounded.

Two kinds of input:
- synthetic finished spans (the SDK's own ``ReadableSpan``, built with known start and end
  times and attributes) fed to a processor of the test's own: for statistics that must be
  compared with values computed exactly from the same durations (count, errors, quantiles, max,
  mean), for the caps, and for thread safety;
- real operation spans, made by ``flowscope.operation`` around real queries on a SQLite file
  and on PostgreSQL, for everything about statement fingerprints. The global processor has
  attached each span's query tally when the span reaches the test; the test then feeds the
  same span to a processor with small caps where a cap is what is being specified.

Quantiles: ``ddsketch`` answers quantile q with the value of rank ``floor(q * (n - 1))`` of the
sorted values (0-based), within ``RELATIVE_ACCURACY`` of it; the tests compare with exactly that.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from sqlalchemy import Engine, text

import flowscope
from flowscope.telemetry import RELATIVE_ACCURACY, BottleneckSpanProcessor, fingerprint, frame_of
from flowscope.telemetry import _attributes as attr

RESOURCE = Resource({"service.name": "aggregator-spec"})
_ids = iter(range(1, 10**9))


def finished_span(operation: str | None, duration_ms: float, *, error: bool = False,
                  **attributes) -> ReadableSpan:
    """A finished span as the SDK hands it to processors, ``duration_ms`` long."""
    if operation is not None:
        attributes[attr.OPERATION] = operation
    start = 1_700_000_000_000_000_000
    return ReadableSpan(
        name=operation or "not-an-operation",
        context=SpanContext(trace_id=next(_ids), span_id=next(_ids), is_remote=False,
                            trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        resource=RESOURCE, attributes=attributes,
        status=Status(StatusCode.ERROR if error else StatusCode.UNSET),
        start_time=start, end_time=start + round(duration_ms * 1_000_000))


def exact_rank_value(values: list[float], q: float) -> float:
    return sorted(values)[math.floor(q * (len(values) - 1))]


# --- counts and durations ------------------------------------------------------------------------


def test_merged_states_keep_exact_counts_and_quantiles_within_accuracy_of_the_union():
    rng = random.Random(7)
    fast = [rng.lognormvariate(1.0, 0.5) for _ in range(400)]
    slow = [rng.lognormvariate(3.0, 0.5) for _ in range(300)]
    workers = [BottleneckSpanProcessor(), BottleneckSpanProcessor()]
    for worker, durations in zip(workers, (fast, slow)):
        for d in durations:
            worker.on_end(finished_span("load", d, error=d > 40))
        worker.on_end(finished_span(f"only on worker {workers.index(worker)}", 1.0))
    controller = BottleneckSpanProcessor()
    for worker in workers:
        controller.merge_state(worker.export_state())

    union = fast + slow
    stats = controller.operation("load")
    assert (stats.count, stats.errors) == (700, sum(1 for d in union if d > 40))
    assert stats.duration_ms.max == pytest.approx(max(union), abs=1e-6)              # spans are in whole ns
    assert stats.duration_ms.mean == pytest.approx(sum(union) / 700, abs=1e-6)
    for q, value in ((0.50, stats.duration_ms.p50), (0.95, stats.duration_ms.p95)):
        exact = exact_rank_value(union, q)
        assert abs(value - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, value, exact)
    assert set(controller.operation_names()) == {"load", "only on worker 0", "only on worker 1"}


def test_count_and_errors_are_exact():
    processor = BottleneckSpanProcessor()
    for i in range(37):
        processor.on_end(finished_span("approve", 5.0, error=(i % 4 == 0)))

    stats = processor.operation("approve")
    assert (stats.count, stats.errors) == (37, 10)


@pytest.mark.parametrize("n", [1, 2, 10, 1000])
def test_quantiles_are_within_relative_accuracy_of_the_exact_value_of_the_same_rank(n):
    rng = random.Random(n)
    durations = [rng.lognormvariate(2.0, 1.2) for _ in range(n)]   # ~0.1 ms .. ~500 ms
    processor = BottleneckSpanProcessor()
    for d in durations:
        processor.on_end(finished_span("load", d))

    stats = processor.operation("load").duration_ms
    for q, value in ((0.50, stats.p50), (0.95, stats.p95), (0.99, stats.p99)):
        exact = exact_rank_value(durations, q)
        assert abs(value - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, value, exact)


@pytest.mark.parametrize("durations", [[17.85], [5.0, 5.0, 5.0], [0.31, 0.3, 0.32, 0.305]])
def test_quantiles_never_leave_the_measured_range(durations):
    # A sketch's value is its bin's midpoint, up to 1% above the largest value it holds: a
    # report must not show a p50 above the max (17.99 over 17.85 was seen on a one-span operation).
    processor = BottleneckSpanProcessor()
    for d in durations:
        processor.on_end(finished_span("once", d))

    stats = processor.operation("once").duration_ms
    assert min(durations) - 1e-6 <= stats.p50 <= stats.p95 <= stats.p99 <= stats.max
    assert stats.max == pytest.approx(max(durations), abs=1e-6)


def test_max_mean_and_total_are_exact():
    durations = [12.5, 3.0, 48.25, 7.0, 0.5]
    processor = BottleneckSpanProcessor()
    for d in durations:
        processor.on_end(finished_span("ship", d))

    stats = processor.operation("ship")
    assert stats.duration_ms.max == pytest.approx(48.25, abs=1e-6)
    assert stats.duration_ms.mean == pytest.approx(sum(durations) / 5, abs=1e-6)
    assert stats.total_ms == pytest.approx(sum(durations), abs=1e-6)


def test_memory_and_query_attributes_aggregate_to_exact_min_max_mean_total():
    processor = BottleneckSpanProcessor()
    for rss, peak, queries, query_ms in ((1000, 0, 3, 1.5), (-200, 4096, 9, 4.5), (5000, 0, 6, 3.0)):
        processor.on_end(finished_span("import", 1.0, **{
            attr.RSS_DELTA_BYTES: rss, attr.PEAK_INCREASE_BYTES: peak,
            attr.QUERY_COUNT: queries, attr.QUERY_DURATION_MS: query_ms}))

    stats = processor.operation("import")
    assert stats.rss_delta_bytes == flowscope.telemetry.MinMaxMean(-200, 5000, pytest.approx(5800 / 3), 5800)
    assert stats.peak_increase_bytes.maximum == 4096
    assert (stats.query_count.minimum, stats.query_count.maximum, stats.query_count.mean,
            stats.query_count.total) == (3, 9, 6.0, 18)
    assert stats.query_ms.total == pytest.approx(9.0)


def test_spans_that_are_not_operations_are_ignored():
    processor = BottleneckSpanProcessor()
    processor.on_end(finished_span(None, 3.0))

    assert processor.operation_names() == []


def test_sdk_spans_that_are_no_operation_are_left_out_at_on_end_and_operation_spans_are_queued():
    # The SDK's own spans (BoundedAttributes): a span without workflow.operation or a parked
    # frame costs two dict lookups at on_end and is never queued for the batch.
    provider = TracerProvider()
    processor = BottleneckSpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("aggregator-spec")
    for _ in range(3):
        with tracer.start_as_current_span("GET /elsewhere"):
            pass
    assert len(processor._ended) == 0
    with tracer.start_as_current_span("op") as span:
        span.set_attribute(attr.OPERATION, "op")
    assert len(processor._ended) == 1
    assert processor.operation_names() == ["op"] and processor.operation("op").count == 1


def test_real_operations_with_known_sleeps_are_aggregated_by_the_configured_processor(telemetry):
    import time

    for seconds in (0.01, 0.02, 0.03):
        with flowscope.operation("sleepy"):
            time.sleep(seconds)
    with pytest.raises(ZeroDivisionError):
        with flowscope.operation("sleepy"):
            1 / 0

    stats = telemetry.aggregator.operation("sleepy")
    assert (stats.count, stats.errors) == (4, 1)
    assert stats.duration_ms.max >= 30
    assert stats.total_ms >= 60


def test_operation_spans_aggregate_from_their_frame_exactly_as_from_their_attributes(telemetry, engine: Engine):
    # flowscope.operation leaves its measures on the span's frame, and the aggregator reads
    # them there instead of the attributes: both ways must give the same statistics.
    with engine.connect() as conn:
        for rows in (1, 3, 5):
            with flowscope.operation("measured"):
                held = bytearray(rows * 1_000_000)
                for i in range(rows):
                    conn.execute(text("SELECT :i"), {"i": i}).all()
                del held
    spans = telemetry.span_store.by_operation("measured")
    assert all(frame_of(s) is not None and frame_of(s).measured is not None for s in spans)
    from_frames, from_attributes = BottleneckSpanProcessor(), BottleneckSpanProcessor()
    for span in spans:
        from_frames.on_end(span)
        from_attributes.on_end(ReadableSpan(   # the same span without a frame
            name=span.name, context=SpanContext(span.context.trace_id, next(_ids), is_remote=False),
            resource=span.resource, attributes=span.attributes, status=span.status,
            start_time=span.start_time, end_time=span.end_time))
    frames, attributes = from_frames.operation("measured"), from_attributes.operation("measured")

    assert frames.query_count == attributes.query_count
    assert frames.query_count.total == 9
    assert (frames.rss_delta_bytes, frames.peak_increase_bytes, frames.query_ms) == \
        (attributes.rss_delta_bytes, attributes.peak_increase_bytes, attributes.query_ms)
    assert (frames.count, frames.duration_ms, frames.total_ms) == \
        (attributes.count, attributes.duration_ms, attributes.total_ms)


def test_the_query_tally_of_an_ended_span_is_found_before_any_aggregation(telemetry, engine: Engine):
    # on_end only queues the span: the frame waits for the aggregator, and frame_of finds it.
    with engine.connect() as conn:
        with flowscope.operation("queued"):
            conn.execute(text("SELECT 1")).all()
            conn.execute(text("SELECT 2")).all()
    span, = telemetry.span_store.by_operation("queued")

    assert frame_of(span).query_count == 2
    assert telemetry.aggregator.operation("queued").query_count.total == 2   # the read aggregates
    assert frame_of(span).query_count == 2                                    # now on the span itself


def test_reset_forgets_everything():
    processor = BottleneckSpanProcessor(max_operations=1)
    processor.on_end(finished_span("a", 1.0))
    processor.on_end(finished_span("b", 1.0))
    processor.reset()

    assert processor.operations() == []
    assert processor.overflow_operations == 0


# --- caps ---------------------------------------------------------------------------------------


def test_operations_beyond_the_cap_go_to_other_and_are_counted():
    processor = BottleneckSpanProcessor(max_operations=3)
    for name in ("a", "b", "c", "d", "d", "e"):
        processor.on_end(finished_span(name, 1.0))
    processor.on_end(finished_span("a", 1.0))                 # a known name still has its own

    assert sorted(processor.operation_names()) == ["<other>", "a", "b", "c"]
    assert processor.operation("<other>").count == 3
    assert processor.overflow_operations == 3
    assert processor.operation("a").count == 2


def test_caps_below_one_are_refused():
    with pytest.raises(ValueError):
        BottleneckSpanProcessor(max_operations=0)
    with pytest.raises(ValueError):
        BottleneckSpanProcessor(max_fingerprints_per_operation=0)


# --- fingerprints: real operations on real databases ---------------------------------------------


@pytest.fixture
def conn(engine: Engine) -> Iterator:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1")).all()
        yield connection


def by_fingerprint(stats, needle: str):
    found = [f for f in stats.fingerprints if needle in f.fingerprint]
    assert len(found) == 1, [f.fingerprint for f in stats.fingerprints]
    return found[0]


@pytest.mark.parametrize("statement, same_as", [
    ("SELECT * FROM t WHERE id = 1 AND name = 'alice'", "SELECT * FROM t WHERE id = 42 AND name = 'bob'"),
    ("SELECT * FROM t WHERE id = ?", "SELECT * FROM t WHERE id = %(id_1)s"),
    ("SELECT * FROM t WHERE id = $1", "SELECT * FROM t WHERE id = :id"),
    ("SELECT * FROM t WHERE id IN (?, ?, ?)", "SELECT * FROM t WHERE id IN (__[POSTCOMPILE_id_1])"),
    ("SELECT * FROM t WHERE id IN (1, 2)", "SELECT * FROM t WHERE id IN (%(id_1_1)s, %(id_1_2)s, %(id_1_3)s)"),
    ("SELECT  *\n FROM t   WHERE price = -3.5", "SELECT * FROM t WHERE price = 10"),
    ("SELECT * FROM t WHERE name = 'it''s'", "SELECT * FROM t WHERE name = ''"),
])
def test_statements_differing_only_in_literals_and_placeholders_have_one_fingerprint(statement, same_as):
    assert fingerprint(statement) == fingerprint(same_as)


@pytest.mark.parametrize("statement, other", [
    ("SELECT * FROM t WHERE id = 1", "SELECT * FROM u WHERE id = 1"),
    ("SELECT a FROM t", "SELECT b FROM t"),
    ("SELECT * FROM t1 WHERE id = 1", "SELECT * FROM t2 WHERE id = 1"),
])
def test_statements_differing_in_structure_have_different_fingerprints(statement, other):
    assert fingerprint(statement) != fingerprint(other)


def test_repeats_distinct_and_identical_parameters_in_one_span_are_exact(telemetry, conn):
    lookup = text("SELECT id FROM workflow_executions WHERE id = :id")
    with flowscope.operation("n_plus_one"):
        for i in (1, 2, 3, 1, 1, 4):
            conn.execute(lookup, {"id": i}).all()

    stats = telemetry.aggregator.operation("n_plus_one")
    fp = by_fingerprint(stats, "FROM workflow_executions")
    assert fp.executions == 6
    assert fp.spans == 1
    assert fp.max_repeats_in_span == 6
    assert fp.max_distinct_parameters_in_span == 4
    assert fp.max_identical_in_span == 3
    assert fp.total_ms > 0


def test_fingerprint_maxima_are_the_largest_of_any_one_span(telemetry, conn):
    lookup = text("SELECT id FROM workflow_executions WHERE id = :id")
    spans = []
    for ids in ((1, 2), (5, 6, 7, 8, 8), (9, 9, 9)):
        with flowscope.operation("batches") as span:
            for i in ids:
                conn.execute(lookup, {"id": i}).all()
        spans.append(span)

    fp = by_fingerprint(telemetry.aggregator.operation("batches"), "FROM workflow_executions")
    assert (fp.executions, fp.spans) == (10, 3)
    assert fp.max_repeats_in_span == 5
    assert fp.max_distinct_parameters_in_span == 4
    assert fp.max_identical_in_span == 3
    most = spans[1].get_span_context()              # the span with the most repeats
    assert fp.example_trace_id == f"{most.trace_id:032x}"
    assert fp.example_span_id == f"{most.span_id:016x}"


def test_statements_differing_only_in_literals_add_up_within_one_span(telemetry, conn):
    with flowscope.operation("inlined_ids"):
        for i in range(1, 7):
            conn.execute(text(f"SELECT id FROM workflow_executions WHERE id = {i}")).all()

    stats = telemetry.aggregator.operation("inlined_ids")
    fp = by_fingerprint(stats, "FROM workflow_executions")
    assert (fp.executions, fp.spans) == (6, 1)
    assert fp.max_repeats_in_span == 6
    assert fp.max_distinct_parameters_in_span == 6
    assert fp.max_identical_in_span == 1
    assert [name for name, _ in telemetry.aggregator.bottlenecks().n_plus_one] == ["inlined_ids"]


def test_n_plus_one_is_a_read_repeated_with_different_parameters(telemetry, conn):
    lookup = text("SELECT id FROM workflow_executions WHERE id = :id")
    with flowscope.operation("list_with_details"):
        for i in range(1, 7):
            conn.execute(lookup, {"id": i}).all()
    with flowscope.operation("same_row_again"):
        for _ in range(6):
            conn.execute(lookup, {"id": 1}).all()
    with flowscope.operation("few_lookups"):
        for i in range(1, 4):
            conn.execute(lookup, {"id": i}).all()

    found = telemetry.aggregator.bottlenecks(n_plus_one_threshold=5).n_plus_one
    assert [name for name, _ in found] == ["list_with_details"]
    assert found[0][1].max_repeats_in_span == 6


def test_fingerprints_beyond_the_cap_go_to_other_and_are_counted(telemetry, conn):
    with flowscope.operation("many_statements") as span:
        for table in ("workflow_executions", "workflow_transitions"):
            for column in ("id", "version" if table == "workflow_executions" else "execution_id"):
                conn.execute(text(f"SELECT {column} FROM {table} WHERE id = :id"), {"id": 1}).all()
    finished, = telemetry.span_store.by_operation("many_statements")
    assert frame_of(finished) is not None and len(frame_of(finished).statements) == 4
    assert finished.context.span_id == span.get_span_context().span_id

    capped = BottleneckSpanProcessor(max_fingerprints_per_operation=2)
    capped.on_end(finished)

    stats = capped.operation("many_statements")
    assert len(stats.fingerprints) == 3                 # two kept, plus "<other>"
    assert stats.overflow_fingerprints == 2
    other = by_fingerprint(stats, "<other>")
    assert other.executions == 2


def test_nested_operation_statements_count_in_the_outer_fingerprints(telemetry, conn):
    lookup = text("SELECT id FROM workflow_executions WHERE id = :id")
    with flowscope.operation("outer_fp"):
        conn.execute(lookup, {"id": 1}).all()
        with flowscope.operation("inner_fp"):
            conn.execute(lookup, {"id": 2}).all()
            conn.execute(lookup, {"id": 3}).all()

    outer = by_fingerprint(telemetry.aggregator.operation("outer_fp"), "FROM workflow_executions")
    inner = by_fingerprint(telemetry.aggregator.operation("inner_fp"), "FROM workflow_executions")
    assert (outer.executions, outer.max_distinct_parameters_in_span) == (3, 3)
    assert (inner.executions, inner.max_distinct_parameters_in_span) == (2, 2)


# --- thread safety ------------------------------------------------------------------------------


def test_concurrent_on_end_calls_lose_nothing():
    threads_n, per_thread = 8, 2000
    spans = [[finished_span(f"op-{i % 3}", 1.0 + (j % 7), error=(j % 10 == 0)) for j in range(per_thread)]
             for i in range(threads_n)]
    processor = BottleneckSpanProcessor()
    barrier = threading.Barrier(threads_n)

    def feed(batch):
        barrier.wait()
        for span in batch:
            processor.on_end(span)

    threads = [threading.Thread(target=feed, args=(batch,)) for batch in spans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stats = processor.operations()
    assert sum(s.count for s in stats) == threads_n * per_thread
    assert sum(s.errors for s in stats) == threads_n * per_thread // 10
    expected_total = sum(1.0 + (j % 7) for j in range(per_thread)) * threads_n
    assert sum(s.total_ms for s in stats) == pytest.approx(expected_total)


def test_reads_while_other_threads_end_spans_lose_nothing():
    # Readers aggregate the queued spans while writers keep queueing more.
    writers_n, per_thread = 4, 3000
    spans = [[finished_span("op", 2.0) for _ in range(per_thread)] for _ in range(writers_n)]
    processor = BottleneckSpanProcessor()
    done = threading.Event()
    seen: list[int] = []

    def feed(batch):
        for span in batch:
            processor.on_end(span)

    def read():
        while not done.is_set():
            stats = processor.operation("op")
            seen.append(stats.count if stats else 0)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=feed, args=(batch,)) for batch in spans]
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()

    assert processor.operation("op").count == writers_n * per_thread
    assert seen == sorted(seen)      # counts only ever grew
    assert len(set(seen)) > 1        # the reader did read while spans were arriving


# --- the fast paths ------------------------------------------------------------------------------


def test_the_fast_paths_are_in_use_with_the_pinned_dependencies():
    # Each is checked at import against the library's own behaviour and turned off when an
    # upgrade changes it: statistics stay right, aggregation gets slower. This says when.
    from flowscope.telemetry import _aggregator

    assert _aggregator._READABLE_FIELDS
    assert _aggregator._INLINE_KEY is not None
    assert _aggregator._INLINE_SKETCH


def test_the_fast_paths_and_the_library_paths_give_the_same_statistics(monkeypatch):
    from flowscope.telemetry import _aggregator

    rng = random.Random(5)
    spans = [finished_span(f"op-{rng.randrange(4)}", rng.lognormvariate(1.0, 1.5), error=rng.random() < 0.1,
                           **{attr.RSS_DELTA_BYTES: rng.randrange(-5000, 90000), attr.QUERY_COUNT: rng.randrange(9)})
             for _ in range(3000)]
    fast = BottleneckSpanProcessor()
    for span in spans:
        fast.on_end(span)
    monkeypatch.setattr(_aggregator, "_READABLE_FIELDS", False)
    monkeypatch.setattr(_aggregator, "_INLINE_KEY", None)
    monkeypatch.setattr(_aggregator, "_INLINE_SKETCH", False)
    slow = BottleneckSpanProcessor()
    for span in spans:
        slow.on_end(span)

    assert sorted(fast.operations(), key=lambda o: o.name) == sorted(slow.operations(), key=lambda o: o.name)
