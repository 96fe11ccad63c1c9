"""``slowest_traces``: the longest recent traces of the span store, as waterfalls in tree order."""

from __future__ import annotations

import time

import pytest

from opentelemetry import trace
from opentelemetry.trace import StatusCode

import flowscope
from flowscope.performance import slowest_traces
from flowscope.telemetry import Telemetry


def test_a_trace_lists_its_spans_in_tree_order_with_depth_offsets_and_queries(telemetry: Telemetry) -> None:
    tracer = trace.get_tracer("user")
    with flowscope.operation("checkout"):
        time.sleep(0.002)
        with tracer.start_as_current_span("user.validate"):
            time.sleep(0.002)
        with flowscope.operation("charge"):
            with tracer.start_as_current_span("user.gateway"):
                time.sleep(0.003)

    [view] = slowest_traces(telemetry.span_store)

    assert view.root == "checkout"
    assert [(s.name, s.depth, s.operation) for s in view.spans] == [
        ("checkout", 0, True), ("user.validate", 1, False), ("charge", 1, True), ("user.gateway", 2, False)]
    checkout, validate, charge, gateway = view.spans
    assert checkout.offset_ms == 0 and checkout.duration_ms == view.duration_ms
    assert 2 <= validate.offset_ms < charge.offset_ms <= gateway.offset_ms
    assert gateway.duration_ms >= 3 and charge.duration_ms >= gateway.duration_ms
    assert (checkout.query_count, charge.query_count, validate.query_count) == (0, 0, None)
    assert len(view.trace_id) == 32 and view.truncated == 0


def test_only_traces_with_an_operation_count_longest_first_up_to_the_limit(telemetry: Telemetry) -> None:
    tracer = trace.get_tracer("user")
    with tracer.start_as_current_span("not.an.operation"):
        time.sleep(0.02)
    for pause in (0.001, 0.006, 0.003):
        with flowscope.operation(f"op{pause}"):
            time.sleep(pause)

    views = slowest_traces(telemetry.span_store, limit=2)

    assert [v.root for v in views] == ["op0.006", "op0.003"]


def test_a_failed_span_is_marked_and_a_long_trace_is_cut_at_max_spans(telemetry: Telemetry) -> None:
    tracer = trace.get_tracer("user")
    try:
        with flowscope.operation("batch"):
            for i in range(5):
                with tracer.start_as_current_span(f"item{i}"):
                    pass
            raise RuntimeError("boom")
    except RuntimeError:
        pass

    [view] = slowest_traces(telemetry.span_store, max_spans=3)

    assert [s.name for s in view.spans] == ["batch", "item0", "item1"]
    assert view.truncated == 3
    assert view.spans[0].error and not view.spans[1].error
    assert telemetry.span_store.by_operation("batch")[0].status.status_code is StatusCode.ERROR


def test_a_span_whose_parent_left_the_store_is_shown_as_a_root(telemetry: Telemetry) -> None:
    with flowscope.operation("outer"):
        with flowscope.operation("inner"):
            pass
    [outer] = telemetry.span_store.by_operation("outer")
    kept = [s for s in telemetry.span_store.spans() if s is not outer]
    telemetry.span_store.clear()
    for span in kept:
        telemetry.span_store.on_end(span)

    [view] = slowest_traces(telemetry.span_store)

    assert [(s.name, s.depth) for s in view.spans] == [("inner", 0)]


def test_among_keeps_only_the_traces_of_the_given_spans(telemetry: Telemetry) -> None:
    for name in ("mine", "theirs", "mine_too"):
        with flowscope.operation(name):
            time.sleep(0.001)
    store = telemetry.span_store
    mine = store.by_operation("mine") + store.by_operation("mine_too")

    views = slowest_traces(store, limit=5, among=mine)

    assert sorted(v.root for v in views) == ["mine", "mine_too"]


@pytest.mark.parametrize("limit, max_spans", [(-1, 10), (3, 0)])
def test_a_negative_limit_or_no_room_for_spans_is_a_clear_value_error(telemetry: Telemetry, limit, max_spans) -> None:
    with pytest.raises(ValueError, match="slowest_traces needs limit >= 0 and max_spans >= 1"):
        slowest_traces(telemetry.span_store, limit=limit, max_spans=max_spans)


def test_the_terminal_report_draws_the_slowest_trace_as_a_tree(telemetry: Telemetry) -> None:
    from rich.console import Console

    from flowscope.performance import print_process_report, process_report

    tracer = trace.get_tracer("user")
    with flowscope.operation("checkout"):
        with flowscope.operation("charge"):
            with tracer.start_as_current_span("user.gateway"):
                time.sleep(0.002)
        with flowscope.operation("receipt"):
            pass
    console = Console(record=True, width=120)

    print_process_report(process_report(telemetry.aggregator, span_store=telemetry.span_store), console)

    lines = console.export_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Slowest recent trace"))
    tree = [line.split("  +")[0] for line in lines[start + 1:start + 5]]
    assert tree == ["└── checkout", "    ├── charge", "    │   └── user.gateway", "    └── receipt"]
    assert ", 0 queries" in lines[start + 1] and "queries" not in lines[start + 3]
