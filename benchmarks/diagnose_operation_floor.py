"""Where ``flowscope.operation``'s cost over a bare span goes: the required work vs the machinery.

Not a target (``make bench`` runs only ``bench_*.py``): a diagnosis for whoever works on
bench_operation_overhead's 1.3x target. Same provider and processors as that benchmark; each
variant is a loop written out by hand, cumulative from the required work up to what
operation() adds:

- bare: ``with tracer.start_as_current_span(name): pass``
- required: an SDK span made current, the four probe system calls (statm and getrusage, at
  start and end; one statm line parsed), the seven end attributes written straight into the
  span's attribute dict, the aggregator's work (no query frame, no class, no guards);
- + frame: the same with the query frame made current in the same context as the span;
- + parked: the same with the frame's measures kept and the frame parked for the aggregator
  (the aggregator then reads the frame, as for operation());
- operation: ``with flowscope.operation(name): pass`` as shipped.

Uses SDK and flowscope internals on purpose (it measures them). Ratios are CPU-time min/min
over interleaved rounds, as in every benchmark here.

    .venv/bin/python benchmarks/diagnose_operation_floor.py
"""

from __future__ import annotations

import os
import resource

from _harness import DiscardingExporter, env_int, interleave, print_samples
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

CHUNK = env_int("BENCH_CHUNK", 2000)
ROUNDS = env_int("BENCH_ROUNDS", 21)

provider = TracerProvider()
trace.set_tracer_provider(provider)

import flowscope  # noqa: E402  (after the provider is global)
from flowscope.telemetry import BottleneckSpanProcessor, SpanStore  # noqa: E402
from flowscope.telemetry import _attributes as attr  # noqa: E402
from flowscope.telemetry._context import FRAME_KEY, current_context, operation_context  # noqa: E402
from flowscope.telemetry._frames import OperationFrame, pending_frames  # noqa: E402

aggregator = BottleneckSpanProcessor()
store = SpanStore()
provider.add_span_processor(aggregator)
provider.add_span_processor(store)
provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
tracer = provider.get_tracer("diagnosis")

STATM = os.open("/proc/self/statm", os.O_RDONLY)
WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
KEYS = (attr.OPERATION, attr.RSS_BYTES, attr.RSS_DELTA_BYTES, attr.PEAK_INCREASE_BYTES,
        attr.GC_COLLECTIONS, attr.QUERY_COUNT, attr.QUERY_DURATION_MS)


def _hand_written(frame_stage: int) -> int:
    """The required work; ``frame_stage`` 1 adds the query frame, 2 also parks it."""
    start_span, attach, detach, in_context = tracer.start_span, otel_context.attach, otel_context.detach, \
        trace.set_span_in_context
    pread, getrusage = os.pread, resource.getrusage
    for _ in range(CHUNK):
        context = current_context()
        span = start_span("op", context)
        if frame_stage:
            frame = OperationFrame(context.get(FRAME_KEY))
            token = attach(operation_context(context, span, frame))
        else:
            token = attach(in_context(span, context))
        peak0 = getrusage(WHO).ru_maxrss
        rss0 = pread(STATM, 64, 0)
        rss1 = pread(STATM, 64, 0)
        peak1 = getrusage(WHO).ru_maxrss
        rss = int(rss1.split()[1])
        delta = 0 if rss0 == rss1 else rss - int(rss0.split()[1])   # start parsed only if it differs
        if frame_stage:
            frame.closed = True
        bounded = span._attributes
        with span._lock, bounded._lock:
            bounded._dict.update(zip(KEYS, ("op", rss, delta, peak1 - peak0, 0, 0, 0.0)))
        if frame_stage == 2:
            frame.measured = ("op", delta, peak1 - peak0, 0, 0.0)
            pending_frames[span.get_span_context().span_id] = frame
        detach(token)
        span.end()
    aggregator.operation_names()
    return CHUNK


def run_bare() -> int:
    start_span = tracer.start_as_current_span
    for _ in range(CHUNK):
        with start_span("op"):
            pass
    aggregator.operation_names()
    return CHUNK


def run_operation() -> int:
    operation = flowscope.operation
    for _ in range(CHUNK):
        with operation("op"):
            pass
    aggregator.operation_names()
    return CHUNK


def between() -> None:
    provider.force_flush()
    store.clear()


def main() -> None:
    print(__doc__.split("\n\n")[0])
    samples = interleave({"bare": run_bare, "required": lambda: _hand_written(0),
                          "+ frame": lambda: _hand_written(1), "+ parked": lambda: _hand_written(2),
                          "operation": run_operation}, rounds=ROUNDS, between=between)
    print_samples(samples, "span")
    bare = min(samples.cpu["bare"])
    print("\n  CPU min per span, and over the bare span:")
    for name, values in samples.cpu.items():
        print(f"    {name:<10} {min(values) * 1e6:6.2f} us   {min(values) / bare:5.3f}x")


if __name__ == "__main__":
    main()
