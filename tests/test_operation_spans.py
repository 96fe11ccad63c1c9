"""Specification of ``flowscope.operation``: one span per unit of work, with exact measurements.

Every assertion is about a real span that went through the real SDK pipeline into flowscope's
span store (the ``telemetry`` fixture: ``flowscope.configure()`` once, emptied per test). Query
counts are checked on a SQLite file and on PostgreSQL (``database_url``), memory against real
allocations that are written to (so the pages are resident), garbage collections against real
``gc.collect()`` calls. The tracemalloc mode is checked in a subprocess, because ``configure``
reads FLOWSCOPE_MEMORY_PROFILE once per process.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine, text

import flowscope
from flowscope.performance import process_report
from flowscope.telemetry import _attributes as attr
from flowscope.telemetry._probes import peak_rss_bytes, rss_bytes

MB = 1_000_000


def only_span(telemetry, name: str):
    spans = telemetry.span_store.by_operation(name)
    assert len(spans) == 1, f"expected one {name!r} span, got {len(spans)}"
    return spans[0]


def run_queries(conn, n: int) -> None:
    for i in range(n):
        conn.execute(text("SELECT :i"), {"i": i}).all()


def held_allocation(n: int) -> bytearray:
    """``n`` bytes, every page written to, so they are resident (not lazily zero-mapped)."""
    block = bytearray(n)
    block[::4096] = b"\x01" * len(range(0, n, 4096))
    return block


# --- the span and its attributes ----------------------------------------------------------------


def test_operation_span_carries_its_name_and_the_callers_attributes(telemetry):
    with flowscope.operation("import_rows", rows=500, source="upload.csv"):
        pass

    span = only_span(telemetry, "import_rows")
    assert span.name == "import_rows"
    assert span.attributes[attr.OPERATION] == "import_rows"
    assert span.attributes["rows"] == 500
    assert span.attributes["source"] == "upload.csv"


def test_operation_span_carries_every_measurement_attribute(telemetry):
    with flowscope.operation("measured"):
        pass

    span = only_span(telemetry, "measured")
    for name in (attr.RSS_BYTES, attr.RSS_DELTA_BYTES, attr.PEAK_INCREASE_BYTES, attr.GC_COLLECTIONS,
                 attr.QUERY_COUNT, attr.QUERY_DURATION_MS):
        assert name in span.attributes, name
    assert span.attributes[attr.RSS_BYTES] > 10 * MB   # a real reading of this process
    assert span.attributes[attr.QUERY_COUNT] == 0


def test_operation_span_is_the_current_span_inside_and_a_child_of_the_callers_span(telemetry):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        with flowscope.operation("handle") as span:
            assert trace.get_current_span() is span
        assert trace.get_current_span() is request

    handle = only_span(telemetry, "handle")
    assert handle.parent.span_id == request.get_span_context().span_id
    assert handle.context.trace_id == request.get_span_context().trace_id


def test_operation_span_is_ended_when_the_block_exits(telemetry):
    with flowscope.operation("short") as span:
        assert span.is_recording()
    assert not span.is_recording()
    assert only_span(telemetry, "short").end_time is not None


# --- queries ------------------------------------------------------------------------------------


def test_seven_queries_inside_an_operation_are_counted_as_seven(telemetry, engine: Engine):
    with engine.connect() as conn:
        with flowscope.operation("seven"):
            run_queries(conn, 7)

    span = only_span(telemetry, "seven")
    assert span.attributes[attr.QUERY_COUNT] == 7
    assert span.attributes[attr.QUERY_DURATION_MS] > 0


def test_queries_outside_any_operation_are_not_counted_in_it(telemetry, engine: Engine):
    with engine.connect() as conn:
        run_queries(conn, 5)
        with flowscope.operation("two"):
            run_queries(conn, 2)
        run_queries(conn, 5)

    assert only_span(telemetry, "two").attributes[attr.QUERY_COUNT] == 2


def test_query_duration_is_at_least_the_time_the_database_spent(telemetry, engine: Engine):
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # a SQL function that takes 50 ms, as pg_sleep does
            conn.connection.driver_connection.create_function("pg_sleep", 1, time.sleep)
        with flowscope.operation("slow_query"):
            conn.execute(text("SELECT pg_sleep(0.05)")).all()

    span = only_span(telemetry, "slow_query")
    assert span.attributes[attr.QUERY_COUNT] == 1
    assert span.attributes[attr.QUERY_DURATION_MS] >= 50
    assert span.attributes[attr.QUERY_DURATION_MS] <= (span.end_time - span.start_time) / 1e6


def test_nested_operations_count_inclusively(telemetry, engine: Engine):
    with engine.connect() as conn:
        with flowscope.operation("outer"):
            run_queries(conn, 1)
            with flowscope.operation("inner"):
                run_queries(conn, 4)
            run_queries(conn, 2)

    outer, inner = only_span(telemetry, "outer"), only_span(telemetry, "inner")
    assert inner.attributes[attr.QUERY_COUNT] == 4
    assert outer.attributes[attr.QUERY_COUNT] == 7          # its own 3 + the inner 4
    assert inner.parent.span_id == outer.context.span_id
    assert outer.attributes[attr.QUERY_DURATION_MS] >= inner.attributes[attr.QUERY_DURATION_MS]


def test_sibling_operations_do_not_share_counts(telemetry, engine: Engine):
    with engine.connect() as conn:
        with flowscope.operation("parent"):
            with flowscope.operation("first"):
                run_queries(conn, 2)
            with flowscope.operation("second"):
                run_queries(conn, 3)

    assert only_span(telemetry, "first").attributes[attr.QUERY_COUNT] == 2
    assert only_span(telemetry, "second").attributes[attr.QUERY_COUNT] == 3
    assert only_span(telemetry, "parent").attributes[attr.QUERY_COUNT] == 5



def test_queries_under_a_users_own_span_count_in_the_operation_around_it(telemetry, engine: Engine):
    tracer = trace.get_tracer("user")
    with engine.connect() as conn:
        with flowscope.operation("around"):
            with tracer.start_as_current_span("user.step"):
                run_queries(conn, 3)
            run_queries(conn, 1)

    assert only_span(telemetry, "around").attributes[attr.QUERY_COUNT] == 4


def test_after_an_operation_its_caller_s_span_and_operation_are_current_again(telemetry, engine: Engine):
    with engine.connect() as conn:
        with flowscope.operation("enclosing") as enclosing:
            with flowscope.operation("nested"):
                pass
            assert trace.get_current_span() is enclosing
            run_queries(conn, 2)
        assert trace.get_current_span() is trace.INVALID_SPAN
        run_queries(conn, 5)

    assert only_span(telemetry, "enclosing").attributes[attr.QUERY_COUNT] == 2


# --- the OpenTelemetry context an operation makes current (_context) ---------------------------------


def test_the_fast_context_paths_are_in_use_with_the_pinned_opentelemetry():
    # Each stands in for a public call and is checked against it at import; when an
    # opentelemetry-api upgrade changes what they rely on, the public path is used instead
    # (still correct, ~0.5 us slower per operation). This test says when that happens.
    from flowscope.telemetry import _context

    assert _context._fast_current_context is not None
    assert _context._SPAN_KEY is not None


def test_the_fast_current_context_is_the_public_one_in_threads_and_tasks():
    from opentelemetry import context as otel_context

    from flowscope.telemetry._context import _fast_current_context

    def same() -> bool:
        return _fast_current_context() is otel_context.get_current()

    async def in_task() -> bool:
        return same()

    results: list[bool] = []
    with flowscope.operation("outside"):
        results.append(same())
        worker = threading.Thread(target=lambda: results.append(same()))
        worker.start()
        worker.join()
        results.append(asyncio.run(in_task()))
    results.append(same())
    assert results == [True, True, True, True]


def test_an_operation_ended_inside_a_task_its_block_started_ends_quietly(telemetry, caplog):
    async def main() -> None:
        op = flowscope.operation("handed_to_a_task")
        op.__enter__()

        async def finish() -> None:
            op.__exit__(None, None, None)

        await asyncio.create_task(finish())

    with caplog.at_level("WARNING"):
        contextvars.copy_context().run(asyncio.run, main())

    assert only_span(telemetry, "handed_to_a_task").attributes[attr.QUERY_COUNT] == 0
    assert [r.getMessage() for r in caplog.records] == []      # no "Failed to detach context"


@pytest.mark.parametrize("private_span_key", [True, False], ids=["fast", "public"])
def test_operation_context_sets_the_span_and_the_frame_and_keeps_the_rest(monkeypatch, private_span_key):
    from opentelemetry import context as otel_context

    from flowscope.telemetry import _context
    from flowscope.telemetry._frames import OperationFrame

    if not private_span_key:
        monkeypatch.setattr(_context, "_SPAN_KEY", None)
    baggage_key = otel_context.create_key("caller's own value")
    caller = otel_context.set_value(baggage_key, "kept")
    span, frame = trace.NonRecordingSpan(trace.SpanContext(7, 8, is_remote=False)), OperationFrame(None)

    made = _context.operation_context(caller, span, frame)

    assert trace.get_current_span(made) is span
    assert made.get(_context.FRAME_KEY) is frame
    assert made.get(baggage_key) == "kept"
    assert caller.get(_context.FRAME_KEY) is None          # the caller's context is not changed
    assert made == otel_context.set_value(_context.FRAME_KEY, frame, trace.set_span_in_context(span, caller))


def test_operations_nest_and_count_with_the_public_context_path(telemetry, engine: Engine, monkeypatch):
    from flowscope.telemetry import _context

    monkeypatch.setattr(_context, "_SPAN_KEY", None)
    with engine.connect() as conn:
        with flowscope.operation("public_outer") as outer:
            with flowscope.operation("public_inner"):
                run_queries(conn, 2)
            assert trace.get_current_span() is outer
            run_queries(conn, 1)

    assert only_span(telemetry, "public_inner").attributes[attr.QUERY_COUNT] == 2
    assert only_span(telemetry, "public_outer").attributes[attr.QUERY_COUNT] == 3
    assert only_span(telemetry, "public_inner").parent.span_id == outer.get_span_context().span_id

# --- memory and garbage collection --------------------------------------------------------------


def test_memory_held_at_the_end_shows_as_rss_delta_and_peak_increase(telemetry):
    # Allocate past the process's earlier high-water mark, so the peak must rise too.
    headroom = max(0, peak_rss_bytes() - rss_bytes())
    size = 50 * MB + headroom
    with flowscope.operation("hold_50mb"):
        block = held_allocation(size)

    span = only_span(telemetry, "hold_50mb")
    assert span.attributes[attr.RSS_DELTA_BYTES] >= size - 5 * MB
    assert span.attributes[attr.PEAK_INCREASE_BYTES] >= 45 * MB
    assert span.attributes[attr.RSS_BYTES] >= span.attributes[attr.RSS_DELTA_BYTES]
    del block


def test_memory_freed_before_the_end_does_not_show_as_rss_delta(telemetry):
    with flowscope.operation("transient_50mb"):
        block = held_allocation(50 * MB)
        del block

    assert only_span(telemetry, "transient_50mb").attributes[attr.RSS_DELTA_BYTES] < 10 * MB


def test_peak_increase_is_zero_when_the_operation_stays_under_an_earlier_peak(telemetry):
    earlier_peak = held_allocation(40 * MB)  # the high-water mark is now 40 MB above RSS
    del earlier_peak
    with flowscope.operation("tiny"):
        _ = [0] * 10

    assert only_span(telemetry, "tiny").attributes[attr.PEAK_INCREASE_BYTES] == 0


def test_peak_increase_counts_a_peak_another_thread_reached_during_the_operation(telemetry):
    # The high-water mark is the process's: memory another thread allocated and freed while
    # the operation ran raises it too.
    import threading

    headroom = max(0, peak_rss_bytes() - rss_bytes())
    size = 50 * MB + headroom
    with flowscope.operation("peak_elsewhere"):
        worker = threading.Thread(target=lambda: held_allocation(size))   # freed when it returns
        worker.start()
        worker.join()

    attributes = only_span(telemetry, "peak_elsewhere").attributes
    assert attributes[attr.PEAK_INCREASE_BYTES] >= 45 * MB
    assert attributes[attr.RSS_DELTA_BYTES] < 10 * MB


def test_garbage_collections_inside_an_operation_are_counted(telemetry):
    with flowscope.operation("collects"):
        for _ in range(3):
            gc.collect()

    assert only_span(telemetry, "collects").attributes[attr.GC_COLLECTIONS] >= 3


def test_no_garbage_collection_counts_zero(telemetry):
    gc.disable()
    try:
        with flowscope.operation("no_gc"):
            pass
    finally:
        gc.enable()

    assert only_span(telemetry, "no_gc").attributes[attr.GC_COLLECTIONS] == 0


def test_tracemalloc_peak_is_absent_unless_asked_for(telemetry):
    with flowscope.operation("plain"):
        pass

    assert attr.TRACEMALLOC_PEAK_BYTES not in only_span(telemetry, "plain").attributes


TRACEMALLOC_SCRIPT = textwrap.dedent("""
    import json
    import flowscope
    from flowscope.telemetry import _attributes as attr

    telemetry = flowscope.configure()
    with flowscope.operation("outer"):
        transient = bytes(20_000_000)       # allocated and freed inside the outer operation
        del transient
        with flowscope.operation("inner"):
            small = bytes(3_000_000)
            del small
    with flowscope.operation("idle"):
        pass
    peaks = {s.name: s.attributes.get(attr.TRACEMALLOC_PEAK_BYTES)
             for s in telemetry.span_store.spans()}
    print(json.dumps(peaks))
""")


@pytest.fixture(scope="module")
def tracemalloc_peaks() -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWSCOPE_"))}
    env.update(FLOWSCOPE_MEMORY_PROFILE="tracemalloc", OTEL_TRACES_EXPORTER="none")
    done = subprocess.run([sys.executable, "-c", TRACEMALLOC_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_tracemalloc_mode_reports_the_allocation_peak_of_memory_freed_inside(tracemalloc_peaks):
    assert tracemalloc_peaks["outer"] >= 20_000_000


def test_tracemalloc_peak_of_a_nested_operation_is_its_own(tracemalloc_peaks):
    assert 2_900_000 <= tracemalloc_peaks["inner"] < 20_000_000   # 3 MB, less what was freed first


def test_tracemalloc_peak_of_an_idle_operation_is_small(tracemalloc_peaks):
    assert 0 <= tracemalloc_peaks["idle"] < 1_000_000


# --- errors -------------------------------------------------------------------------------------


class PaymentDeclined(Exception):
    pass


def test_an_exception_is_recorded_and_re_raised_unchanged(telemetry):
    error = PaymentDeclined("card 4242 declined")
    with pytest.raises(PaymentDeclined) as raised:
        with flowscope.operation("charge"):
            raise error

    assert raised.value is error
    span = only_span(telemetry, "charge")
    assert span.status.status_code is StatusCode.ERROR
    assert "PaymentDeclined" in span.status.description
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1
    assert events[0].attributes["exception.type"].endswith("PaymentDeclined")
    assert events[0].attributes["exception.message"] == "card 4242 declined"


def test_a_failed_operation_still_reports_its_queries(telemetry, engine: Engine):
    with engine.connect() as conn:
        with pytest.raises(PaymentDeclined):
            with flowscope.operation("half_done"):
                run_queries(conn, 3)
                raise PaymentDeclined()

    assert only_span(telemetry, "half_done").attributes[attr.QUERY_COUNT] == 3


def test_a_successful_operation_has_no_error_status_and_no_exception_event(telemetry):
    with flowscope.operation("fine"):
        pass

    span = only_span(telemetry, "fine")
    assert span.status.status_code is not StatusCode.ERROR
    assert not [e for e in span.events if e.name == "exception"]


# --- decorator and async forms ------------------------------------------------------------------


def test_decorator_on_a_sync_function_makes_one_span_per_call(telemetry, engine: Engine):
    @flowscope.operation("nightly_report", kind="batch")
    def nightly_report(conn, n):
        """Docstring kept."""
        run_queries(conn, n)
        return f"{n} rows"

    with engine.connect() as conn:
        assert nightly_report(conn, 2) == "2 rows"
        assert nightly_report(conn, 5) == "5 rows"

    assert nightly_report.__name__ == "nightly_report"
    assert nightly_report.__doc__ == "Docstring kept."
    spans = telemetry.span_store.by_operation("nightly_report")
    assert [s.attributes[attr.QUERY_COUNT] for s in spans] == [2, 5]
    assert all(s.attributes["kind"] == "batch" for s in spans)


def test_decorator_on_a_sync_function_records_and_re_raises(telemetry):
    @flowscope.operation("explodes")
    def explodes():
        raise PaymentDeclined("no")

    with pytest.raises(PaymentDeclined):
        explodes()
    assert only_span(telemetry, "explodes").status.status_code is StatusCode.ERROR


def test_decorator_on_an_async_function_keeps_it_a_coroutine_function(telemetry, engine: Engine):
    @flowscope.operation("fetch", source="api")
    async def fetch(conn, n):
        await asyncio.sleep(0)
        run_queries(conn, n)
        await asyncio.sleep(0)
        return n * 10

    assert asyncio.iscoroutinefunction(fetch)
    with engine.connect() as conn:
        assert asyncio.run(fetch(conn, 3)) == 30

    span = only_span(telemetry, "fetch")
    assert span.attributes[attr.QUERY_COUNT] == 3
    assert span.attributes["source"] == "api"


def test_decorator_on_an_async_function_records_and_re_raises(telemetry):
    @flowscope.operation("async_explodes")
    async def explodes():
        await asyncio.sleep(0)
        raise PaymentDeclined("async no")

    with pytest.raises(PaymentDeclined, match="async no"):
        asyncio.run(explodes())
    span = only_span(telemetry, "async_explodes")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_async_with_form_measures_the_block(telemetry, engine: Engine):
    async def main(conn):
        async with flowscope.operation("async_block", step="one") as span:
            assert span.is_recording()
            run_queries(conn, 4)
            await asyncio.sleep(0)

    with engine.connect() as conn:
        asyncio.run(main(conn))

    span = only_span(telemetry, "async_block")
    assert span.attributes[attr.QUERY_COUNT] == 4
    assert span.attributes["step"] == "one"


# --- end attributes are recorded as the SDK would record them -------------------------------------


def _twin_spans(limits, start):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import _Span
    from opentelemetry.trace import SpanContext

    def make():
        return _Span("twin", SpanContext(1, 2, is_remote=False), resource=Resource.get_empty(),
                     attributes=dict(start) if start else None, limits=limits)
    return make(), make()


@pytest.mark.parametrize("start", [None, {"start": "x", attr.QUERY_COUNT: 1}], ids=["no_start", "start"])
@pytest.mark.parametrize("case", ["plain", "late_rename", "long_name_truncated", "long_late_value",
                                  "count_limit", "late_sequence"])
def test_end_attributes_recorded_directly_equal_what_set_attributes_records(case, start):
    # What operation.__exit__ does: the direct path, or set_attributes when it declines.
    from opentelemetry.sdk.trace import SpanLimits

    from flowscope.telemetry._operation import _record_directly

    limits = SpanLimits(max_span_attribute_length=8 if "long" in case else None,
                        max_span_attributes=5 if case == "count_limit" else None)
    late = {"late_rename": {attr.OPERATION: "renamed", "workflow.step": "draft"},
            "long_late_value": {"workflow.step": "a-step-name-longer-than-eight"},
            "late_sequence": {"workflow.tags": ["a", "b"]}}.get(case)
    name = "an-operation-name-longer-than-eight" if case == "long_name_truncated" else "op"
    end = {attr.OPERATION: name, attr.RSS_BYTES: 10, attr.RSS_DELTA_BYTES: -2,
           attr.QUERY_COUNT: 3, attr.QUERY_DURATION_MS: 0.5}
    attributes = {**late, **end} if late else end
    direct, supported = _twin_spans(limits, start)

    if not _record_directly(direct, dict(attributes), check=late is not None):
        direct.set_attributes(attributes)
    supported.set_attributes(attributes)

    assert list(direct.attributes.items()) == list(supported.attributes.items())
    assert direct.dropped_attributes == supported.dropped_attributes


def test_the_direct_path_for_end_attributes_is_in_use_with_the_pinned_sdk():
    # When an opentelemetry-sdk upgrade changes the internals it relies on, the import-time
    # check turns it off and set_attributes records the end attributes instead: still correct,
    # ~1-2 us slower per operation (bench_operation_overhead). This test says when that happens.
    from flowscope.telemetry import _operation

    assert _operation._DIRECT_ATTRIBUTES


# --- the probes themselves ----------------------------------------------------------------------


def test_memory_probes_agree_with_psutil():
    import psutil

    from flowscope.telemetry._probes import memory_mark, rss_of

    mark, peak = memory_mark()
    info = psutil.Process().memory_info()
    assert isinstance(mark, bytes)           # the raw /proc/self/statm line, parsed by rss_of
    assert abs(rss_of(mark) - info.rss) < 8 * MB
    assert peak >= rss_of(mark) - 8 * MB
    assert abs(rss_bytes() - info.rss) < 8 * MB
    assert rss_of(12345) == 12345            # without /proc the mark is the RSS itself


def test_without_proc_the_probes_fall_back_to_psutil_and_operations_still_work(telemetry, monkeypatch):
    import psutil

    from flowscope.telemetry import _probes

    monkeypatch.setattr(_probes, "_statm_fd", None)      # as on macOS: no /proc/self/statm
    mark, _ = _probes.memory_mark()
    assert isinstance(mark, int) and abs(mark - psutil.Process().memory_info().rss) < 8 * MB
    with flowscope.operation("no_proc"):
        pass
    assert only_span(telemetry, "no_proc").attributes[attr.RSS_BYTES] > 0


def test_without_getrusage_the_peak_reads_zero_and_operations_still_work(telemetry, monkeypatch):
    from flowscope.telemetry import _probes

    monkeypatch.setattr(_probes, "_getrusage", None)     # as on Windows: no resource module
    assert _probes.peak_rss_bytes() == 0
    with flowscope.operation("no_getrusage"):
        pass
    attributes = only_span(telemetry, "no_getrusage").attributes
    assert attributes[attr.PEAK_INCREASE_BYTES] == 0 and attributes[attr.RSS_BYTES] > 0


@pytest.mark.parametrize("name", [123, None, b"checkout", 1.5, ["a"]])
def test_a_name_that_is_not_a_str_is_a_clear_type_error_at_the_call(name) -> None:
    with pytest.raises(TypeError, match=r"flowscope.operation\(name\): the name must be a str such as 'checkout', got"):
        flowscope.operation(name)


def test_a_str_subclass_is_a_name_and_a_huge_name_is_cut_to_the_limit(telemetry) -> None:
    class Route(str):
        pass

    with flowscope.operation(Route("GET /x")):
        pass
    with flowscope.operation("x" * 10_000_000):     # a pasted payload, say
        pass

    names = telemetry.aggregator.operation_names()
    assert set(names) == {"GET /x", "x" * 256} and all(type(n) is str for n in names)
    [span] = telemetry.span_store.by_operation("x" * 256)
    assert len(span.name) == 256 and len(process_report(telemetry.aggregator).to_json()) < 100_000


def test_the_name_limit_follows_the_sdks_attribute_value_length_limit_when_one_is_set() -> None:
    import subprocess
    import sys

    from support.e2e import clean_env

    read = "from flowscope.telemetry._operation import MAX_NAME_LENGTH; print(MAX_NAME_LENGTH)"
    limits = [subprocess.run([sys.executable, "-c", read], env=clean_env(**env), capture_output=True, text=True,
                             timeout=60).stdout.strip()
              for env in ({}, {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "40"},
                          {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "40", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "1000"})]
    assert limits == ["256", "40", "1000"]
