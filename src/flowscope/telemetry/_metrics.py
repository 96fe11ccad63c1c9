"""Metrics next to the spans: operation latency, queries, N+1 findings, memory, dropped spans.

    $ OTEL_METRICS_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 python app.py

    >>> from flowscope.telemetry import METRICS
    >>> [m.name for m in METRICS]
    ['workflow.operation.duration', 'workflow.db.queries', 'workflow.db.n_plus_one', ...]

=============================== ========== ======== ==============================================
OpenTelemetry name              kind       unit     Prometheus (collector's prometheus exporter)
=============================== ========== ======== ==============================================
workflow.operation.duration     histogram  s        workflow_operation_duration_seconds_bucket/
                                                    _sum/_count  (label workflow_operation)
workflow.db.queries             counter    {query}  workflow_db_queries_total (workflow_operation)
workflow.db.n_plus_one          counter    {span}   workflow_db_n_plus_one_total (workflow_operation)
workflow.memory.rss             gauge      By       workflow_memory_rss_bytes
flowscope.spans.dropped         counter    {span}   flowscope_spans_dropped_total
=============================== ========== ======== ==============================================

``workflow.db.n_plus_one`` counts operation spans in which a read statement ran at least
``N_PLUS_ONE_THRESHOLD`` times with as many distinct parameter sets (the aggregator's N+1 rule,
judged per span), labelled with the operation.

When metrics are on: a MeterProvider someone else installed (opentelemetry-instrument with
opentelemetry-distro) is used as it is; otherwise flowscope creates one only when
``OTEL_METRICS_EXPORTER`` is ``otlp`` or ``console`` (OTLP: ``OTEL_EXPORTER_OTLP_[METRICS_]
ENDPOINT`` / ``_PROTOCOL`` / ``_HEADERS`` / ``_TIMEOUT``, ``OTEL_METRIC_EXPORT_INTERVAL``). Unlike
traces, an OTLP endpoint alone does not switch metrics on: Jaeger, Tempo and Phoenix receive
OTLP traces but not metrics, and a process pointed straight at one of them must not log a
failed metric export every minute. Point it at an OpenTelemetry Collector and set
``OTEL_METRICS_EXPORTER=otlp`` (docker-compose.yml's walkthrough does).

Design decisions (measured here, CPython 3.11, opentelemetry-sdk 1.45):
- One ``Histogram.record`` or ``Counter.add`` of the SDK costs ~7 us with one attribute, half an
  SDK span. Recording two or three per operation on the application's thread would more than
  double flowscope's overhead, so ``on_end`` only appends a 4-tuple to a deque (~0.5 us with
  the attribute reads); the SDK instruments are fed on the metric reader's thread, from the
  observable instruments' callbacks, which the SDK runs at the start of every collection,
  before it reads the synchronous instruments' storage. Queries and N+1 counts are summed per
  operation in plain dicts and reported as observable counters; only the latency histogram is
  recorded value by value (it must be: the API takes no pre-aggregated histogram).
- The deque is bounded (``MAX_PENDING``): when a collection is late and it fills up, the
  operation that finds it full drains it on the spot: a rare pause, no data lost.
- Operation names are capped (``MAX_OPERATIONS``, as the aggregator's); beyond that the label
  is ``<other>``, so a caller that puts ids into operation names cannot explode the series.
- RSS and dropped spans are observed at collection time only: free between collections.
- Nothing is set up (no processor, no cost at all) while metrics are off.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .._version import __version__
from . import _attributes as attr
from ._export import CountingMetricExporter, destination_of, quiet_exporter_logs
from ._health import health
from ._probes import rss_bytes
from ._span_store import frame_of
from .sql._tallies import is_per_row_read, tallies_by_fingerprint

OPERATION_DURATION = "workflow.operation.duration"
DB_QUERIES = "workflow.db.queries"
N_PLUS_ONE = "workflow.db.n_plus_one"
MEMORY_RSS = "workflow.memory.rss"
SPANS_DROPPED = "flowscope.spans.dropped"

N_PLUS_ONE_THRESHOLD = 5
MAX_PENDING = 65_536
MAX_OPERATIONS = 2_000
OTHER = "<other>"
# Workflow actions take ~1-50 ms, batch operations seconds: finer than the OTel default
# boundaries (made for milliseconds) and the HTTP semantic conventions' (from 5 ms).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
                    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)
_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("grpc", "http/protobuf")


@dataclass(frozen=True)
class MetricSpec:
    """One metric flowscope exports: OpenTelemetry name, instrument kind, unit, meaning."""

    name: str
    kind: str            # "histogram" | "counter" | "gauge"
    unit: str
    description: str
    attributes: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(OPERATION_DURATION, "histogram", "s", "Duration of workflow operations (actions, starts, "
               "flowscope.operation blocks).", (attr.OPERATION,)),
    MetricSpec(DB_QUERIES, "counter", "{query}", "Database queries run inside operations (inclusive of "
               "nested operations).", (attr.OPERATION,)),
    MetricSpec(N_PLUS_ONE, "counter", "{span}", "Operation spans with an N+1 query pattern: a read "
               f"statement run at least {N_PLUS_ONE_THRESHOLD} times with distinct parameters.", (attr.OPERATION,)),
    MetricSpec(MEMORY_RSS, "gauge", "By", "Resident set size of the process."),
    MetricSpec(SPANS_DROPPED, "counter", "{span}", "Spans that could not be exported."),
)
_SPEC = {m.name: m for m in METRICS}


class MetricsSpanProcessor(SpanProcessor):
    """Turns finished operation spans into metrics (see the module docstring for the costs)."""

    def __init__(self, meter: Meter, *, max_pending: int = MAX_PENDING,
                 max_operations: int = MAX_OPERATIONS) -> None:
        self.max_pending = max_pending
        self.max_operations = max_operations
        self._pending: deque[tuple[str, float, int, Any]] = deque()
        self._drain_lock = threading.Lock()
        self._queries: dict[str, int] = {}
        self._n_plus_one: dict[str, int] = {}
        self._labels: dict[str, dict[str, str]] = {}
        spec = _SPEC[OPERATION_DURATION]
        self._duration = meter.create_histogram(spec.name, spec.unit, spec.description,
                                                explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        for name, callback in ((DB_QUERIES, self._observe_queries), (N_PLUS_ONE, self._observe_n_plus_one),
                               (SPANS_DROPPED, _observe_dropped_spans)):
            spec = _SPEC[name]
            meter.create_observable_counter(spec.name, [callback], spec.unit, spec.description)
        spec = _SPEC[MEMORY_RSS]
        meter.create_observable_gauge(spec.name, [_observe_rss], spec.unit, spec.description)

    # -- SpanProcessor (the application's thread) --------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes
        if not attributes:
            return
        name = attributes.get(attr.OPERATION)
        start, end = span.start_time, span.end_time
        if name is None or start is None or end is None:
            return
        if len(self._pending) >= self.max_pending:
            self._drain()
        self._pending.append((name, (end - start) / 1e9, attributes.get(attr.QUERY_COUNT, 0),
                              frame_of(span)))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- the metric reader's thread ------------------------------------------------------------
    def _drain(self) -> None:
        pending, record = self._pending, self._duration.record
        with self._drain_lock:
            while pending:
                try:
                    name, seconds, queries, frame = pending.popleft()
                except IndexError:
                    break
                try:
                    label = self._label(name)
                    record(seconds, self._labels[label])
                    if queries:
                        self._queries[label] = self._queries.get(label, 0) + queries
                        if frame is not None and queries >= N_PLUS_ONE_THRESHOLD and _has_n_plus_one(frame):
                            self._n_plus_one[label] = self._n_plus_one.get(label, 0) + 1
                except Exception:
                    health.failed("recording operation metrics")

    def _label(self, name: Any) -> str:
        name = str(name)
        if name not in self._labels:
            if len(self._labels) >= self.max_operations:
                name = OTHER
            self._labels.setdefault(name, {attr.OPERATION: name})
        return name

    def _observe_queries(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(self._queries)

    def _observe_n_plus_one(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(self._n_plus_one)

    def _observe(self, totals: dict[str, int]) -> list[Observation]:
        self._drain()
        with self._drain_lock:
            return [Observation(value, self._labels[name]) for name, value in totals.items()]


def _has_n_plus_one(frame: Any) -> bool:
    """The N+1 rule of the findings (by fingerprint: batches and page walks are none), at the
    default threshold."""
    for key, tally in tallies_by_fingerprint(frame.statements).items():
        if (tally.count >= N_PLUS_ONE_THRESHOLD and tally.distinct_parameter_sets >= N_PLUS_ONE_THRESHOLD
                and is_per_row_read(key, tally.values_per_execution, tally.relationship)):
            return True
    return False


def _observe_rss(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(rss_bytes())]


def _observe_dropped_spans(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(health.dropped_spans)]


@dataclass
class MetricsSetup:
    """What :func:`setup_metrics` did: the provider used, and how it exports."""

    processor: MetricsSpanProcessor | None
    meter_provider: MeterProvider | None
    exporter: str           # otlp | console | none | "owner's"
    owns_provider: bool = False


def setup_metrics(resource: Resource, endpoint: str | None, protocol: str | None,
                  headers: dict[str, str] | None, timeout: float | None,
                  warn: Callable[[str], None]) -> MetricsSetup:
    """Find or create the MeterProvider (module docstring) and the processor that feeds it."""
    existing = metrics.get_meter_provider()
    if isinstance(existing, MeterProvider):
        provider, exporter_name, owns = existing, "owner's", False
    else:
        exporter_name, exporter = _exporter(endpoint, protocol, headers, timeout, warn)
        if exporter is None:
            return MetricsSetup(None, None, exporter_name)
        provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)])
        metrics.set_meter_provider(provider)
        owns = True
    processor = MetricsSpanProcessor(provider.get_meter("flowscope", __version__))
    return MetricsSetup(processor, provider, exporter_name, owns)


def _exporter(endpoint: str | None, protocol: str | None, headers: dict[str, str] | None,
              timeout: float | None, warn: Callable[[str], None]) -> tuple[str, MetricExporter | None]:
    raw = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    name = raw.split(",")[0].strip() if raw else "none"
    if name not in _EXPORTERS:
        warn(f"OTEL_METRICS_EXPORTER={raw!r} is not one of {', '.join(_EXPORTERS)}; "
             "metrics will not be exported (spans are not affected)")
        return "none", None
    if name == "none":
        return "none", None
    if name == "console":
        return "console", ConsoleMetricExporter()
    source, proto = "protocol", protocol
    for variable in ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if not proto:
            source, proto = variable, os.environ.get(variable)
    proto = proto or "grpc"
    if proto not in _PROTOCOLS:   # same words as configure()'s for spans: one variable, one warning
        warn(f"{source}={proto!r} is not an OTLP protocol ({', '.join(_PROTOCOLS)}); using grpc")
        proto = "grpc"
    kwargs: dict[str, Any] = {}
    if endpoint:
        kwargs["endpoint"] = endpoint if proto == "grpc" else _http_url(endpoint, "/v1/metrics")
    if headers:
        kwargs["headers"] = headers
    if timeout is not None:
        kwargs["timeout"] = timeout
    try:
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
        inner = OTLPMetricExporter(**kwargs)
    except Exception as err:
        warn(f"cannot create the OTLP {proto} metric exporter ({type(err).__name__}: {err}); "
             "metrics will not be exported (check OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT)")
        return "none", None
    quiet_exporter_logs()
    return "otlp", CountingMetricExporter(inner, destination_of(inner))


def _http_url(endpoint: str, path: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(path) else endpoint + path
