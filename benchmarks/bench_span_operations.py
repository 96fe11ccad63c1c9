"""What span-based operations cost: a request traced by its framework's instrumentation, with and without flowscope.

What, side by side in one run:
1. A request: a Flask endpoint returning a small JSON body, called through Flask's test client
   and traced by opentelemetry-instrumentation-flask. Baseline: the instrumentation alone (what
   the app had before flowscope). flowscope: the same app on a provider that also carries
   flowscope's processors, so the request's SERVER span is a span-based operation (query frame,
   memory probes, flowscope's attributes, aggregation). Per request. The endpoint runs no query
   on purpose: this is the span path alone (benchmarks/bench_query_attribution.py prices
   queries), and an empty endpoint is where a fixed cost shows most.
2. Spans that are not operations: an empty INTERNAL span and an empty CLIENT span, each on both
   providers. Per span.

How: two TracerProviders built here, neither global. Both end in the same exporter pipeline (a
BatchSpanProcessor whose exporter discards). The flowscope one gets its processors from
``flowscope.configure(tracer_provider=...)``, as an application's would (span-based operations,
the aggregator, the span store, in that order). Each Flask app is instrumented with its own
provider (``instrument_app(app, tracer_provider=...)``). Variants run interleaved round by
round in alternating order; ratios are min/min of process CPU time (see _harness.py); each
chunk is followed, untimed, by a flush of the batch queues, and the flowscope chunks end, timed,
with a read of the aggregator so its batched work is charged to them. The span store is never
cleared: it fills in the warm-up round and then runs as in production, at its capacity, every
new span evicting (and freeing) the oldest in the timed loop, as the baseline frees each span
after its export.

Targets: request with flowscope / request with the instrumentation alone <= 1.3x; an INTERNAL
or CLIENT span on flowscope's provider / the same span without flowscope <= 1.05x.

    .venv/bin/python benchmarks/bench_span_operations.py      # BENCH_ROUNDS=N to change
"""

from __future__ import annotations

from _harness import Check, DiscardingExporter, Report, env_int, interleave, print_samples, ratio
from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

import flowscope

REQUEST_TARGET = 1.3
SPAN_TARGET = 1.05
REQUESTS = env_int("BENCH_CHUNK", 500)
SPANS = 4 * REQUESTS
ROUNDS = env_int("BENCH_ROUNDS", 21)
ROUTE = "/api/status/<int:item>"

plain_exporter, flowscope_exporter = DiscardingExporter(), DiscardingExporter()
plain = TracerProvider()
plain.add_span_processor(BatchSpanProcessor(plain_exporter))
with_flowscope = TracerProvider()
telemetry = flowscope.configure(tracer_provider=with_flowscope, exporter="none", instrument=False)
with_flowscope.add_span_processor(BatchSpanProcessor(flowscope_exporter))
aggregate = telemetry.aggregator.operation_names   # timed: aggregates what on_end queued


def _app(provider: TracerProvider):  # type: ignore[no-untyped-def]
    app = Flask(f"bench-{id(provider)}")

    @app.get(ROUTE)
    def status(item: int) -> dict:
        return {"item": item, "status": "ok"}

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    return app.test_client()


plain_client, flowscope_client = _app(plain), _app(with_flowscope)


def requests(client, after=None):  # type: ignore[no-untyped-def]
    def run() -> int:
        get = client.get
        for i in range(REQUESTS):
            get(f"/api/status/{i}")
        if after is not None:
            after()
        return REQUESTS
    return run


def spans(provider: TracerProvider, kind: SpanKind, after=None):  # type: ignore[no-untyped-def]
    start_span = provider.get_tracer("bench").start_as_current_span

    def run() -> int:
        for _ in range(SPANS):
            with start_span("bench.span", kind=kind):
                pass
        if after is not None:
            after()
        return SPANS
    return run


def flush() -> None:
    plain.force_flush()
    with_flowscope.force_flush()


def main() -> None:
    print(__doc__.split("\n\n")[0])
    print(f"\n{ROUNDS} rounds x {REQUESTS} requests / {SPANS} spans per variant, interleaved\n")
    samples = interleave({
        "request": requests(plain_client),
        "request + flowscope": requests(flowscope_client, after=aggregate),
        "INTERNAL span": spans(plain, SpanKind.INTERNAL),
        "INTERNAL span + flowscope": spans(with_flowscope, SpanKind.INTERNAL, after=aggregate),
        "CLIENT span": spans(plain, SpanKind.CLIENT),
        "CLIENT span + flowscope": spans(with_flowscope, SpanKind.CLIENT, after=aggregate),
    }, rounds=ROUNDS, between=flush)
    print_samples(samples, "unit")
    flush()

    request_stats = telemetry.aggregator.operation(f"GET {ROUTE}")
    expected_requests = (ROUNDS + 1) * REQUESTS        # the warm-up round included
    print(f"\n  requests aggregated as the operation 'GET {ROUTE}': {request_stats.count} "
          f"(expected {expected_requests}); exported spans: plain {plain_exporter.exported}, "
          f"flowscope {flowscope_exporter.exported}")
    cpu = {name: min(v) * 1e6 for name, v in samples.cpu.items()}
    report = Report("span_operations", info={"cpu_us_min": cpu})
    report.ratios.append(ratio("request + flowscope / request", samples, "request + flowscope", "request",
                               target=REQUEST_TARGET))
    report.ratios.append(ratio("INTERNAL span + flowscope / INTERNAL span", samples,
                               "INTERNAL span + flowscope", "INTERNAL span", target=SPAN_TARGET))
    report.ratios.append(ratio("CLIENT span + flowscope / CLIENT span", samples,
                               "CLIENT span + flowscope", "CLIENT span", target=SPAN_TARGET))
    report.ratios.append(ratio("request + flowscope / request (wall clock)", samples, "request + flowscope",
                               "request", clock="wall",
                               note="information: wall time includes other processes' noise"))
    print(f"\n  flowscope adds {cpu['request + flowscope'] - cpu['request']:.2f} us per request "
          f"(request alone {cpu['request']:.2f} us), {cpu['INTERNAL span + flowscope'] - cpu['INTERNAL span']:.2f} "
          f"us per INTERNAL span (bare {cpu['INTERNAL span']:.2f} us)")
    report.checks.append(Check("requests aggregated / requests made", request_stats.count / expected_requests,
                               1.0, direction="min", note="every request was an operation"))
    report.print_and_exit()


if __name__ == "__main__":
    main()
