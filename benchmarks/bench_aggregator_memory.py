"""Memory and accuracy of the BottleneckSpanProcessor after 1,000,000 spans over 10,000
operation names, and its per-span ``on_end`` cost.

What:
1. RSS growth of the process while one processor (``max_operations=10_000``, so every name
   is tracked, none lands in the overflow bucket) aggregates 1,000,000 finished operation
   spans spread uniformly at random over 10,000 names: target <= 50 MB (and the MB per
   operation it implies).
2. Quantile accuracy: for 20 names sampled across the population, the exact durations are kept
   beside the processor; its p50/p95/p99 must be within ``RELATIVE_ACCURACY`` (relative) of the
   exact value of the same rank, ``sorted(values)[floor(q * (n - 1))]`` (ddsketch's rank
   definition). Counts must be exact.
3. ``on_end`` per span, in microseconds, on real SDK ``ReadableSpan`` objects (attributes in the
   SDK's ``BoundedAttributes``) for names already tracked; no target, printed.

How: the spans of (1) are lightweight stand-ins with the attributes an operation span carries
(``workflow.operation`` and the memory and query attributes, behind a ``MappingProxyType`` as
the SDK hands them out), made one at a time and dropped at once, so the generator holds nothing.
Durations per operation are lognormal: a median drawn log-uniformly between 0.2 ms and 2 s, a
sigma between 0.3 and 1.2 (p99/p50 from 2x to 16x), so sketches have realistic bin spreads.
Everything the generator keeps (names, per-name parameters, the sampled exact durations: about
1 MB) is created before the first RSS reading; a throw-away processor warms every code path
first; ``gc.collect()`` runs before each reading. RSS is psutil's.

Targets: RSS growth <= 50 MB; every sampled quantile within RELATIVE_ACCURACY; every name
tracked (no overflow).

    .venv/bin/python benchmarks/bench_aggregator_memory.py     # BENCH_SPANS=N to change
"""

from __future__ import annotations

import gc
import math
import random
import time
from types import MappingProxyType

import _harness  # noqa: F401  (puts src/ on sys.path)
from _harness import Check, Report, env_int

import psutil
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, TraceFlags

from flowscope.telemetry import RELATIVE_ACCURACY, BottleneckSpanProcessor
from flowscope.telemetry import _attributes as attr

SPANS = env_int("BENCH_SPANS", 1_000_000)
OPERATIONS = env_int("BENCH_OPERATIONS", 10_000)
SAMPLED = 20
RSS_TARGET_MB = 50.0
QUANTILES = (0.50, 0.95, 0.99)
START_NS = 1_700_000_000_000_000_000

OPERATION, RSS, RSS_DELTA, PEAK = attr.OPERATION, attr.RSS_BYTES, attr.RSS_DELTA_BYTES, attr.PEAK_INCREASE_BYTES
GCS, QUERIES, QUERY_MS = attr.GC_COLLECTIONS, attr.QUERY_COUNT, attr.QUERY_DURATION_MS


class FinishedSpan:
    """What ``on_end`` reads of a finished span, and nothing else."""

    __slots__ = ("attributes", "start_time", "end_time", "status", "context", "_flowscope_frame")

    def __init__(self, attributes, start_time, end_time, status, context):  # type: ignore[no-untyped-def]
        self.attributes = attributes
        self.start_time = start_time
        self.end_time = end_time
        self.status = status
        self.context = context


class Population:
    """10,000 operation names with their duration distributions, and a seeded generator."""

    def __init__(self, operations: int, seed: int = 20240611) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.names = [f"Workflow{i // 20:04d}.action_{i % 20:02d}" for i in range(operations)]
        self.mu = [rng.uniform(math.log(0.2), math.log(2000.0)) for _ in self.names]   # log of the median
        self.sigma = [rng.uniform(0.3, 1.2) for _ in self.names]
        step = operations // SAMPLED
        self.sampled = {self.names[i * step + step // 2]: [] for i in range(SAMPLED)}
        self.status = Status()
        self.context = SpanContext(trace_id=1, span_id=1, is_remote=False, trace_flags=TraceFlags(1))

    def feed(self, processor: BottleneckSpanProcessor, spans: int, keep_exact: bool) -> None:
        rng, names, mu, sigma = self.rng, self.names, self.mu, self.sigma
        randrange, lognormvariate = rng.randrange, rng.lognormvariate
        n, sampled, status, context = len(names), self.sampled, self.status, self.context
        on_end = processor.on_end
        for _ in range(spans):
            k = randrange(n)
            name = names[k]
            duration_ns = max(1, round(lognormvariate(mu[k], sigma[k]) * 1e6))
            on_end(FinishedSpan(MappingProxyType({
                OPERATION: name, RSS: 80_000_000, RSS_DELTA: randrange(-4096, 65536), PEAK: 0, GCS: 0,
                QUERIES: randrange(1, 12), QUERY_MS: 0.25}), START_NS, START_NS + duration_ns, status, context))
            if keep_exact:
                exact = sampled.get(name)
                if exact is not None:
                    exact.append(duration_ns / 1e6)   # what on_end computes from the timestamps


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def sdk_spans(population: Population, count: int) -> list[ReadableSpan]:
    """Real SDK finished spans, built as the SDK builds them (BoundedAttributes, immutable)."""
    rng = random.Random(7)
    resource = Resource({"service.name": "bench"})
    spans = []
    for i in range(count):
        k = rng.randrange(len(population.names))
        attributes = BoundedAttributes(128, {
            OPERATION: population.names[k], RSS: 80_000_000, RSS_DELTA: rng.randrange(-4096, 65536), PEAK: 0,
            GCS: 0, QUERIES: rng.randrange(1, 12), QUERY_MS: 0.25}, immutable=True)
        duration_ns = max(1, round(rng.lognormvariate(population.mu[k], population.sigma[k]) * 1e6))
        spans.append(ReadableSpan(
            name=population.names[k], context=SpanContext(1, i + 2, False, TraceFlags(1)), resource=resource,
            attributes=attributes, status=Status(), start_time=START_NS, end_time=START_NS + duration_ns))
    return spans


def main() -> None:
    print(__doc__.split("\n\n")[0])
    population = Population(OPERATIONS)

    warm = BottleneckSpanProcessor(max_operations=OPERATIONS)
    population.feed(warm, 20_000, keep_exact=False)
    del warm

    before = rss()
    processor = BottleneckSpanProcessor(max_operations=OPERATIONS)
    t0 = time.perf_counter()
    population.feed(processor, SPANS, keep_exact=True)
    feed_seconds = time.perf_counter() - t0
    after = rss()
    growth_mb = (after - before) / 1e6
    tracked = len(processor.operation_names())
    print(f"\n  {SPANS:,} spans over {OPERATIONS:,} names fed in {feed_seconds:.1f} s "
          f"(generator included); names tracked {tracked:,}, overflow spans {processor.overflow_operations}")
    print(f"  RSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB: +{growth_mb:.1f} MB, "
          f"{(after - before) / max(tracked, 1) / 1e3:.2f} KB per operation")

    worst = 0.0
    count_errors = 0
    print(f"\n  quantiles of {SAMPLED} sampled operations vs exact values of the same rank "
          f"(stated relative accuracy {RELATIVE_ACCURACY:.0%}):")
    for name, exact_values in population.sampled.items():
        stats = processor.operation(name)
        if stats is None or stats.count != len(exact_values):
            count_errors += 1
            continue
        ordered = sorted(exact_values)
        row = []
        for q, value in zip(QUANTILES, (stats.duration_ms.p50, stats.duration_ms.p95, stats.duration_ms.p99)):
            exact = ordered[math.floor(q * (len(ordered) - 1))]
            error = max(0.0, abs(value - exact) - 1e-9) / exact   # 1e-9: float rounding, as in the tests
            worst = max(worst, error)
            row.append(f"p{round(q * 100)} {value:9.3f}/{exact:9.3f} ({error:.3%})")
        print(f"    {name:<24} n={len(ordered):4d}  " + "  ".join(row))

    spans = sdk_spans(population, 50_000)
    timings = []
    for _ in range(7):
        gc.collect()
        c0 = time.process_time()
        for span in spans:
            processor.on_end(span)
        timings.append((time.process_time() - c0) / len(spans))
    on_end_us = min(timings) * 1e6
    print(f"\n  on_end on real SDK spans, tracked names: min {on_end_us:.2f} us, "
          f"median {sorted(timings)[3] * 1e6:.2f} us per span (CPU, 7 rounds of {len(spans):,})")

    report = Report("aggregator_memory", info={
        "rss_growth_mb": growth_mb, "kb_per_operation": (after - before) / max(tracked, 1) / 1e3,
        "on_end_us": on_end_us, "worst_relative_error": worst, "operations_tracked": tracked})
    report.checks.append(Check("RSS growth, 1M spans / 10k operations", growth_mb, RSS_TARGET_MB, "MB"))
    report.checks.append(Check("worst sampled quantile relative error", worst, RELATIVE_ACCURACY,
                               note=f"p50/p95/p99 of {SAMPLED} operations, ~{SPANS // OPERATIONS} spans each"))
    report.checks.append(Check("operations tracked", tracked, OPERATIONS, direction="min"))
    report.checks.append(Check("sampled operations with a wrong count", count_errors, 0))
    report.print_and_exit()


if __name__ == "__main__":
    main()
