"""``BottleneckSpanProcessor``: per-operation statistics and bottlenecks from finished spans.

    >>> processor = BottleneckSpanProcessor()
    >>> provider.add_span_processor(processor)
    >>> processor.operation("DocumentApproval.approve").duration_ms.p95
    >>> processor.bottlenecks().slowest

Design decisions:
- Durations go into a DDSketch (the ``ddsketch`` package, Datadog's implementation) with a
  relative accuracy of ``RELATIVE_ACCURACY`` (1%): every reported quantile is within 1% of
  the exact value of the same rank, in bounded memory (bins grow with the logarithm of the
  value range, not with the number of spans), and ~1 us per value.
- Memory per operation (benchmarks/bench_aggregator_memory.py: 1,000,000 spans over 10,000
  operations, lognormal durations): ``DDSketch()`` as ddsketch builds it took 5.4 KB per
  operation (54 MB RSS), a third of it float objects, one per non-empty bin (float weights:
  24 B each), plus each sketch's own copy of the key mapping and 128-bin growth steps. Here
  every sketch shares one (constant) ``LogarithmicMapping``, its positive store counts in ints
  (counts up to 256 are CPython's shared small ints: a bin costs its 8-byte list slot only),
  and stores grow by 32 bins: 3.2 KB per operation (32 MB), at the same 1% accuracy.
- Memory and query statistics keep count/sum/min/max only: constant size.
- Statement fingerprints (normalized SQL) are kept per operation, capped; overflow lands in an
  ``OTHER`` bucket and is counted, as do operations beyond the operation cap.
- Deferred aggregation: ``on_end`` runs on the application's thread for every span, so it
  only appends the span to a deque (atomic under the GIL, no lock); every ``DRAIN_BATCH``
  spans, and before every read (``operation()``, ``operations()``, ``bottlenecks()``,
  ``force_flush``), the queued spans are aggregated in one pass under one lock. The work per
  span stays constant (amortized); the span that fills the batch pays for the batch (~0.6 ms
  for 256). Spans are grouped by operation name into columns (``_Columns``: no new object per
  span) and each measure is updated once per group with C-level ``sum``/``min``/``max``; the
  sketch keys of a group are counted with ``Counter`` and each bin updated once, written out
  inline (``DDSketch.add`` -> ``mapping.key`` -> ``_log_gamma`` -> ``store.add`` ->
  ``_get_index`` would be five Python calls per value) when the key function equals
  ``mapping.key`` at import (``_INLINE_KEY``) and the sketch has the fields ddsketch 3.x
  updates (``_INLINE_SKETCH``). The SDK's ``ReadableSpan`` fields are read directly when they
  are what its properties return (``_READABLE_FIELDS``). A test compares these paths with the
  library's own on the same spans; another fails when an upgrade turns one off.
- An operation span made by ``flowscope.operation`` carries its measures on its frame too
  (``OperationFrame.measured``, the same values as its attributes), so the aggregator reads a
  tuple instead of copying the attribute mapping; other spans with ``workflow.operation``
  (replayed, or made by other code) are read from their attributes. A test checks both ways
  give the same statistics.
- Measured (CPU per span): aggregating one operation span cost 5.8-6.3 us inline in
  ``on_end`` (bench_operation_overhead); deferred and batched, ~1.5-1.8 us per operation span
  and ~1.1 us per other span (a batch of 256 drained alone). bench_operation_overhead charges
  it to its timed loop (each chunk ends with a read).
  Per-span inline updates cost ~4.5 us between span creations but ~3 us back to back over
  stored spans: most of the difference was cache misses, which batching avoids.
"""

from __future__ import annotations

import pickle
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import ceil, log
from typing import Any

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from . import _attributes as attr
from ._frames import MAX_ENCLOSING_NAMES, claim_frames, pending_frames, unmeasured
from ._health import health
from .sql._tallies import is_per_row_read, tallies_by_fingerprint

_OPERATION = attr.OPERATION
_RSS_DELTA_BYTES = attr.RSS_DELTA_BYTES
_PEAK_INCREASE_BYTES = attr.PEAK_INCREASE_BYTES
_QUERY_COUNT = attr.QUERY_COUNT
_QUERY_DURATION_MS = attr.QUERY_DURATION_MS
_ERROR = StatusCode.ERROR

RELATIVE_ACCURACY = 0.01
OTHER = "<other>"
DEFAULT_MAX_OPERATIONS = 2_000
DEFAULT_MAX_FINGERPRINTS = 100
DRAIN_BATCH = 256   # spans queued by on_end before one of them aggregates the batch

# Shared by every sketch: a mapping holds only constants derived from the accuracy.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_STORE_CHUNK = 32   # bins a store grows by (ddsketch's default, 128, leaves ~100 unused per sketch)


class _CountStore(DenseStore):
    """A ``DenseStore`` whose non-empty bins hold int counts (see the module docstring).

    ddsketch's own ``add`` does ``bins[i] += weight`` on float bins, allocating a float object
    per non-empty bin; with integer weights this keeps ints, which are shared up to 256.
    """

    def add(self, key: int, weight: float = 1) -> None:
        index = self._get_index(key)
        bins = self.bins
        count = bins[index]
        bins[index] = count + weight if count else weight
        self.count += weight


def _inline_key_constants(mapping: LogarithmicMapping) -> tuple[float, float] | None:
    """``(multiplier, offset)`` if ``mapping.key(v)`` is ``int(ceil(log(v, 2) * multiplier) +
    offset)``, so that the key can be computed inline (two method calls fewer per value).

    The inline form is used only when it gives the same key as the mapping itself over the
    range of durations (1 ns to ~8 days, in ms, 5% apart), so a ddsketch release that computes
    keys otherwise falls back to ``mapping.key``.
    """
    try:
        multiplier, offset = mapping._multiplier, mapping._offset
        samples = [1e-6 * 1.05 ** i for i in range(700)]
        if type(mapping) is LogarithmicMapping and all(
                int(ceil(log(v, 2) * multiplier) + offset) == mapping.key(v) for v in samples):
            return multiplier, offset
    except Exception:
        pass
    return None


_INLINE_KEY = _inline_key_constants(_MAPPING)


def _sketch_internals_known() -> bool:
    """Whether on_end may update a sketch's fields itself (the ones ``BaseDDSketch.add`` and
    ``DenseStore.add`` update, in ddsketch 3.x); otherwise it calls ``sketch.add``."""
    sketch = BaseDDSketch(mapping=_MAPPING, store=_CountStore(_STORE_CHUNK),
                          negative_store=DenseStore(_STORE_CHUNK), zero_count=0)
    store = sketch._store
    return (all(hasattr(sketch, a) for a in ("_count", "_sum", "_min", "_max"))
            and all(hasattr(store, a) for a in ("min_key", "max_key", "offset", "bins", "count")))


_INLINE_SKETCH = _sketch_internals_known()


def _readable_fields_known() -> bool:
    """Whether a ``ReadableSpan``'s ``_start_time``/``_end_time``/``_context``/``_status._status_code``
    are what its properties return (opentelemetry-sdk 1.x): reading the fields saves four property
    calls per span in ``_aggregate``; otherwise it uses the properties."""
    try:
        from opentelemetry.trace import SpanContext, Status

        span = ReadableSpan("probe", context=SpanContext(1, 2, is_remote=False), status=Status(),
                            start_time=1, end_time=2)
        return ((span._start_time, span._end_time, span._context, span._status._status_code) ==
                (span.start_time, span.end_time, span.context, span.status.status_code))
    except Exception:
        return False


_READABLE_FIELDS = _readable_fields_known()


def _new_sketch() -> BaseDDSketch:
    return BaseDDSketch(mapping=_MAPPING, store=_CountStore(_STORE_CHUNK),
                        negative_store=DenseStore(_STORE_CHUNK), zero_count=0)


def _sketch_all(sketch: BaseDDSketch, values: list[float]) -> None:
    """``sketch.add(v)`` for each of ``values`` (all > 0), with the updates written out inline
    when the key computation and the sketch's fields are the known ones (see "Deferred
    aggregation" in the module docstring)."""
    if not _INLINE_SKETCH or _INLINE_KEY is None:
        for value in values:
            sketch.add(value, 1)
        return
    multiplier, offset = _INLINE_KEY
    store = sketch._store
    keys = [int(ceil(log(value, 2) * multiplier) + offset) for value in values]   # _MAPPING.key
    # Many durations of one operation fall into few bins: count the keys at C speed, then update
    # each bin once.
    for key, n in (Counter(keys).items() if len(keys) > 1 else ((keys[0], 1),)):
        if store.min_key <= key <= store.max_key:
            bins = store.bins
            index = key - store.offset
            count = bins[index]
            bins[index] = count + n if count else n      # int counts: _CountStore
            store.count += n
        else:
            store.add(key, n)                            # grows the bins
    sketch._count += len(values)
    sketch._sum += sum(values)
    low, high = min(values), max(values)
    if low < sketch._min:
        sketch._min = low
    if high > sketch._max:
        sketch._max = high


@dataclass(frozen=True)
class Quantiles:
    """Duration statistics in milliseconds (quantiles within ``RELATIVE_ACCURACY``)."""

    p50: float
    p95: float
    p99: float
    max: float
    mean: float


@dataclass(frozen=True)
class MinMaxMean:
    minimum: float
    maximum: float
    mean: float
    total: float


@dataclass(frozen=True)
class FingerprintStats:
    """One normalized statement inside one operation."""

    fingerprint: str
    executions: int
    total_ms: float
    spans: int                          # operation spans that ran it
    max_repeats_in_span: int            # most executions inside one span
    max_distinct_parameters_in_span: int
    max_identical_in_span: int          # most executions with identical parameters in one span
    example_trace_id: str               # the span with the most repeats
    example_span_id: str
    relationship: str | None = None     # "Class.attribute" when ORM lazy loads ran it
    call_site: str | None = None        # application code that ran it repeatedly
    enclosing: tuple[str, ...] = ()     # operations that the spans running it ran inside (nesting)
    max_loader_in_span: int = 0         # most executions run by the relationship's lazy loader in one span
    values_per_execution: float = 1.0   # rows or values one execution handles (> 1: a batch)
    from_flush: bool = False            # run by the ORM's unit of work (Session.flush)


@dataclass(frozen=True)
class EagerLoadStats:
    """One relationship that an operation eagerly loaded (the eager-load audit's verdicts)."""

    relationship: str                # "Class.attribute"
    spans: int                       # operation spans that loaded it
    unused_spans: int                # ... whose trace never read it
    max_parents: int                 # most instances it was loaded for in one span
    max_objects: int                 # most related objects it loaded in one span
    max_queries: int                 # most extra SELECTs it ran in one span (0: a JOIN)
    call_site: str | None
    example_trace_id: str            # a span where it went unread (else one where it was read)
    example_span_id: str


@dataclass(frozen=True)
class OperationStats:
    """Everything aggregated for one operation name."""

    name: str
    count: int
    errors: int
    duration_ms: Quantiles
    total_ms: float
    rss_delta_bytes: MinMaxMean
    peak_increase_bytes: MinMaxMean
    query_count: MinMaxMean             # inclusive of nested operations (the span attribute)
    query_ms: MinMaxMean
    fingerprints: tuple[FingerprintStats, ...]
    overflow_fingerprints: int
    eager_loads: tuple[EagerLoadStats, ...] = ()
    own_query_count: MinMaxMean | None = None   # run outside its nested operations (None: as query_count)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bottlenecks:
    slowest: tuple[OperationStats, ...]
    most_memory: tuple[OperationStats, ...]
    most_queries: tuple[OperationStats, ...]
    n_plus_one: tuple[tuple[str, FingerprintStats], ...]   # (operation, fingerprint)


class _Running:
    """count/sum/min/max of one measure."""

    __slots__ = ("n", "total", "low", "high")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.low = float("inf")
        self.high = float("-inf")

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value

    def add_all(self, values: Sequence[float]) -> None:
        self.n += len(values)
        self.total += sum(values)
        low, high = min(values), max(values)
        if low < self.low:
            self.low = low
        if high > self.high:
            self.high = high

    def merge(self, other: _Running) -> None:
        self.n += other.n
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def freeze(self) -> MinMaxMean:
        if not self.n:
            return MinMaxMean(0.0, 0.0, 0.0, 0.0)
        return MinMaxMean(self.low, self.high, self.total / self.n, self.total)


class _FingerprintAccumulator:
    __slots__ = ("executions", "seconds", "spans", "max_repeats", "max_distinct", "max_identical",
                 "example_trace_id", "example_span_id", "relationship", "call_site", "example_statement",
                 "enclosing", "max_loader", "bound_values", "from_flush")

    def __init__(self) -> None:
        self.executions = 0
        self.seconds = 0.0
        self.spans = 0
        self.max_repeats = 0
        self.max_distinct = 0
        self.max_identical = 0
        self.example_trace_id = 0
        self.example_span_id = 0
        self.relationship: str | None = None
        self.call_site: str | None = None
        self.example_statement: str | None = None   # see example_statements()
        self.enclosing: set[str] = set()   # operations the spans that ran it ran inside
        self.max_loader = 0                # most lazy-loader executions in one span
        self.bound_values = 0              # rows or values handled, over all executions
        self.from_flush = False

    def merge(self, other: _FingerprintAccumulator) -> None:
        self.executions += other.executions
        self.seconds += other.seconds
        self.spans += other.spans
        if other.max_repeats > self.max_repeats:
            self.max_repeats = other.max_repeats
            self.example_trace_id, self.example_span_id = other.example_trace_id, other.example_span_id
        self.max_distinct = max(self.max_distinct, other.max_distinct)
        self.max_identical = max(self.max_identical, other.max_identical)
        self.relationship = self.relationship or other.relationship
        self.call_site = self.call_site or other.call_site
        self.example_statement = self.example_statement or other.example_statement
        self.enclosing |= other.enclosing
        self.max_loader = max(self.max_loader, other.max_loader)
        self.bound_values += other.bound_values
        self.from_flush = self.from_flush or other.from_flush


class _EagerLoadAccumulator:
    __slots__ = ("spans", "unused_spans", "max_parents", "max_objects", "max_queries", "call_site",
                 "example_trace_id", "example_span_id")

    def __init__(self) -> None:
        self.spans = self.unused_spans = self.max_parents = self.max_objects = self.max_queries = 0
        self.call_site: str | None = None
        self.example_trace_id = self.example_span_id = 0

    def add(self, verdict: Any, context: Any) -> None:
        self.spans += 1
        if not verdict.used:
            self.unused_spans += 1
        self.max_parents = max(self.max_parents, verdict.parents)
        self.max_objects = max(self.max_objects, verdict.objects)
        self.max_queries = max(self.max_queries, verdict.queries)
        if self.call_site is None:
            self.call_site = verdict.call_site
        if context is not None and (not self.example_span_id or (not verdict.used and self.unused_spans == 1)):
            self.example_trace_id, self.example_span_id = context.trace_id, context.span_id

    def merge(self, other: _EagerLoadAccumulator) -> None:
        if other.unused_spans and not self.unused_spans or not self.example_span_id:
            self.example_trace_id, self.example_span_id = other.example_trace_id, other.example_span_id
        self.spans += other.spans
        self.unused_spans += other.unused_spans
        self.max_parents = max(self.max_parents, other.max_parents)
        self.max_objects = max(self.max_objects, other.max_objects)
        self.max_queries = max(self.max_queries, other.max_queries)
        self.call_site = self.call_site or other.call_site


class _Columns:
    """One operation's spans from one batch: durations, and each span's measures tuple (the
    frame's own, no new object: a tuple per span made every drain a young-generation garbage
    collection)."""

    __slots__ = ("durations", "measured", "errors", "with_statements", "own_queries")

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.own_queries: list[int] = []   # queries minus those of nested operations, per span
        self.measured: list[tuple[str, float, float, float, float]] = []   # see OperationFrame.measured
        self.errors = 0
        self.with_statements: list[tuple[Any, ReadableSpan]] = []


class _OperationAccumulator:
    __slots__ = ("count", "errors", "sketch", "duration", "rss_delta", "peak_increase", "queries",
                 "query_ms", "fingerprints", "overflow_fingerprints", "eager_loads", "own_queries")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.sketch = _new_sketch()
        self.duration = _Running()
        self.rss_delta = _Running()
        self.peak_increase = _Running()
        self.queries = _Running()
        self.own_queries = _Running()
        self.query_ms = _Running()
        self.fingerprints: dict[str, _FingerprintAccumulator] = {}
        self.overflow_fingerprints = 0
        self.eager_loads: dict[str, _EagerLoadAccumulator] = {}

    def merge(self, other: _OperationAccumulator) -> None:
        """Add another process's accumulator of the same operation (sketches merged, not quantiles)."""
        self.count += other.count
        self.errors += other.errors
        self.sketch.merge(other.sketch)
        for mine, theirs in ((self.duration, other.duration), (self.rss_delta, other.rss_delta),
                             (self.peak_increase, other.peak_increase), (self.queries, other.queries),
                             (self.own_queries, other.own_queries), (self.query_ms, other.query_ms)):
            mine.merge(theirs)
        self.overflow_fingerprints += other.overflow_fingerprints
        for table, incoming in ((self.fingerprints, other.fingerprints), (self.eager_loads, other.eager_loads)):
            for key, accumulator in incoming.items():
                if key in table:
                    table[key].merge(accumulator)
                else:
                    table[key] = accumulator


class BottleneckSpanProcessor(SpanProcessor):
    """Aggregate finished operation spans (those with ``workflow.operation``)."""

    def __init__(self, max_operations: int = DEFAULT_MAX_OPERATIONS,
                 max_fingerprints_per_operation: int = DEFAULT_MAX_FINGERPRINTS) -> None:
        if max_operations < 1 or max_fingerprints_per_operation < 1:
            raise ValueError("BottleneckSpanProcessor caps must be at least 1")
        self.max_operations = max_operations
        self.max_fingerprints = max_fingerprints_per_operation
        self._lock = threading.Lock()
        self._operations: dict[str, _OperationAccumulator] = {}
        self.overflow_operations = 0   # spans whose operation name went to OTHER
        self.batch_size = DRAIN_BATCH
        self._ended: deque[ReadableSpan] = deque()
        claim_frames()

    # -- SpanProcessor ---------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        # The application's thread: one append (atomic under the GIL); the aggregation runs in
        # batches (see "Deferred aggregation" in the module docstring). An SDK span that is no
        # operation (no workflow.operation, no parked frame) is left out here, with two dict
        # lookups, instead of being read in the batch (bench_span_operations.py).
        if _READABLE_FIELDS and type(span) is ReadableSpan:
            try:
                if _OPERATION not in span._attributes._dict and span._context.span_id not in pending_frames:
                    return
            except AttributeError:   # attributes not a BoundedAttributes, or no context
                pass
        ended = self._ended
        ended.append(span)
        if len(ended) >= self.batch_size:
            self._drain()

    def _drain(self) -> None:
        """Aggregate every span handed to ``on_end`` so far."""
        ended = self._ended
        if not ended:
            return
        with self._lock:
            popleft = ended.popleft
            batch = [popleft() for _ in range(len(ended))]   # only drainers pop, under the lock
            try:
                self._aggregate(batch)
            except Exception:
                health.failed("aggregating operation spans")

    def _aggregate(self, batch: list[ReadableSpan]) -> None:
        # Called with the lock held. First one pass over the spans: each operation span's
        # measures, read from its frame when flowscope.operation left them there (``measured``),
        # else from its attributes, appended to its operation's columns. Then per operation,
        # one update per measure over the whole column (C-level sum/min/max).
        groups: dict[str, _Columns] = {}
        audited: list[tuple[Any, Any]] = []   # (verdicts, span context) of outermost operations
        pop_frame = pending_frames.pop
        for span in batch:
            if _READABLE_FIELDS and type(span) is ReadableSpan:   # its fields, not its properties
                start = span._start_time
                end = span._end_time
                context = span._context
                failed = span._status._status_code is _ERROR
            else:
                start = span.start_time
                end = span.end_time
                context = span.context
                failed = span.status.status_code is _ERROR
            if start is None or end is None:
                continue
            frame = None
            if context is not None:
                span_id = context.span_id
                frame = pop_frame(span_id, None)
                if frame is not None:
                    span._flowscope_frame = frame  # type: ignore[attr-defined]  # for SpanStore readers
            if frame is None:
                frame = getattr(span, "_flowscope_frame", None)   # replayed, or another aggregator's
            measured = frame.measured if frame is not None else None
            if measured is None:
                attributes = _plain_dict(span.attributes)
                name = attributes.get(_OPERATION)
                if name is None:
                    continue
                get = attributes.get
                measured = (name, get(_RSS_DELTA_BYTES, 0), get(_PEAK_INCREASE_BYTES, 0),
                            get(_QUERY_COUNT, 0), get(_QUERY_DURATION_MS, 0.0))
            else:
                name = measured[0]
            columns = groups.get(name)
            if columns is None:
                columns = groups[name] = _Columns()
            columns.durations.append((end - start) / 1e6)
            columns.measured.append(measured)
            columns.own_queries.append(measured[3] - frame.nested_query_count if frame is not None else measured[3])
            if failed:
                columns.errors += 1
            if frame is not None and frame.statements:
                columns.with_statements.append((frame, span))
                if frame.eager_audit is not None and frame.eager_audit.verdicts:
                    audited.append((frame.eager_audit.verdicts, context))
        for name, columns in groups.items():
            self._add_columns(name, columns)
        for verdicts, context in audited:
            self._add_eager_loads(verdicts, context)

    def _add_eager_loads(self, verdicts: Any, context: Any) -> None:
        # Each verdict belongs to the operation that loaded it, often one nested in this span.
        for verdict in verdicts:
            acc = self._operations.get(verdict.operation)
            if acc is None:
                continue
            load = acc.eager_loads.get(verdict.relationship)
            if load is None:
                if len(acc.eager_loads) >= self.max_fingerprints:
                    continue
                load = acc.eager_loads[verdict.relationship] = _EagerLoadAccumulator()
            load.add(verdict, context)

    def _add_columns(self, name: str, columns: _Columns) -> None:
        acc = self._operations.get(name)
        count = len(columns.durations)
        if acc is None:
            if len(self._operations) >= self.max_operations:
                self.overflow_operations += count
                name = OTHER
                acc = self._operations.get(OTHER)
            if acc is None:
                acc = self._operations[name] = _OperationAccumulator()
        acc.count += count
        acc.errors += columns.errors
        durations = columns.durations
        _sketch_all(acc.sketch, [d if d > 1e-6 else 1e-6 for d in durations])
        if count == 1:   # many operation names: most groups hold one span
            _, rss_delta, peak_increase, queries, query_ms = columns.measured[0]
            acc.duration.add(durations[0])
            acc.rss_delta.add(rss_delta)
            acc.peak_increase.add(peak_increase)
            acc.queries.add(queries)
            acc.own_queries.add(columns.own_queries[0])
            acc.query_ms.add(query_ms)
        else:
            _, rss_delta, peak_increase, queries, query_ms = zip(*columns.measured)   # one column each
            acc.duration.add_all(durations)
            acc.rss_delta.add_all(rss_delta)
            acc.peak_increase.add_all(peak_increase)
            acc.queries.add_all(queries)
            acc.own_queries.add_all(columns.own_queries)
            acc.query_ms.add_all(query_ms)
        for frame, span in columns.with_statements:
            self._add_statements(acc, frame.statements, span, frame.enclosing_names() if frame.parent else ())

    def _add_statements(self, acc: _OperationAccumulator, statements: dict, span: ReadableSpan,
                        enclosing: tuple[str, ...]) -> None:
        # One fingerprint per span first (see sql/_tallies), then each into the
        # operation's accumulator of that fingerprint.
        fingerprints = acc.fingerprints
        for key, group in tallies_by_fingerprint(statements).items():
            fp = fingerprints.get(key)
            if fp is None:
                if len(fingerprints) >= self.max_fingerprints:
                    acc.overflow_fingerprints += 1
                    key = OTHER
                    fp = fingerprints.get(OTHER)
                if fp is None:
                    fp = fingerprints[key] = _FingerprintAccumulator()
                    if key != OTHER:
                        fp.example_statement = group.example_statement
            count = group.count
            fp.seconds += group.seconds
            if group.relationship is not None:
                fp.relationship = group.relationship
            if group.call_site is not None and fp.call_site is None:
                fp.call_site = group.call_site
            fp.executions += count
            fp.bound_values += group.bound_values
            fp.from_flush = fp.from_flush or group.from_flush
            fp.spans += 1
            if enclosing and len(fp.enclosing) < MAX_ENCLOSING_NAMES:
                fp.enclosing.update(enclosing)
            if count > fp.max_repeats:
                fp.max_repeats = count
                context = span.context
                fp.example_trace_id = context.trace_id if context else 0
                fp.example_span_id = context.span_id if context else 0
            if group.distinct_parameter_sets > fp.max_distinct:
                fp.max_distinct = group.distinct_parameter_sets
            if group.most_identical > fp.max_identical:
                fp.max_identical = group.most_identical
            if group.loader_count > fp.max_loader:
                fp.max_loader = group.loader_count

    def shutdown(self) -> None:
        self._drain()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._drain()
        return True

    # -- reading (each read first aggregates what on_end has queued) -------------------------
    def operation_names(self) -> list[str]:
        self._drain()
        with self._lock:
            return list(self._operations)

    def operation(self, name: str) -> OperationStats | None:
        self._drain()
        with self._lock:
            acc = self._operations.get(name)
            return None if acc is None else _freeze(name, acc)

    def operations(self) -> list[OperationStats]:
        self._drain()
        with self._lock:
            return [_freeze(name, acc) for name, acc in self._operations.items()]

    def example_statements(self) -> dict[str, str]:
        """Fingerprint -> one raw statement seen with it, as the driver received it.

        For plan commands (EXPLAIN) only, never for display: a statement that inlined its
        literals carries them, where reports show fingerprints. One reference per fingerprint,
        within the fingerprint caps.
        """
        self._drain()
        with self._lock:
            return {key: fp.example_statement for acc in self._operations.values()
                    for key, fp in acc.fingerprints.items() if fp.example_statement is not None}

    def bottlenecks(self, limit: int = 5, n_plus_one_threshold: int = 5) -> Bottlenecks:
        ops = self.operations()
        return Bottlenecks(
            slowest=tuple(sorted(ops, key=lambda o: o.duration_ms.p95, reverse=True)[:limit]),
            most_memory=tuple(sorted(ops, key=lambda o: o.rss_delta_bytes.maximum, reverse=True)[:limit]),
            most_queries=tuple(sorted(ops, key=lambda o: o.query_count.mean, reverse=True)[:limit]),
            n_plus_one=tuple(
                (o.name, f) for o in ops for f in o.fingerprints
                if f.max_repeats_in_span >= n_plus_one_threshold
                and f.max_distinct_parameters_in_span >= n_plus_one_threshold
                and is_per_row_read(f.fingerprint, f.values_per_execution, f.relationship)
            ),
        )

    def export_state(self) -> bytes:
        """Everything aggregated so far, for :meth:`merge_state` in another process (pytest-xdist
        workers to their controller). A pickle: read it only from processes you started."""
        self._drain()
        with self._lock:
            return pickle.dumps((self._operations, self.overflow_operations), protocol=pickle.HIGHEST_PROTOCOL)

    def merge_state(self, state: bytes) -> None:
        """Add what another process aggregated (its :meth:`export_state`): per operation the
        duration sketches are merged (so quantiles stay within the sketch's accuracy over both),
        counts and totals added, minimums and maximums kept."""
        operations, overflow = pickle.loads(state)  # noqa: S301 - our own worker processes' data
        self._drain()
        with self._lock:
            self.overflow_operations += overflow
            for name, incoming in operations.items():
                mine = self._operations.get(name)
                if mine is not None:
                    mine.merge(incoming)
                elif len(self._operations) < self.max_operations:
                    self._operations[name] = incoming
                else:
                    self.overflow_operations += incoming.count

    def reset(self) -> None:
        """Forget everything aggregated, and the queries counted outside any operation."""
        self._drain()   # pops the queued spans' frames from pending_frames
        with self._lock:
            self._operations.clear()
            self.overflow_operations = 0
        unmeasured.clear()


def _plain_dict(attributes: Any) -> dict[str, Any]:
    """A plain-dict copy of a span's attributes.

    The SDK hands out a ``MappingProxyType`` over its ``BoundedAttributes``, whose ``.get``
    runs two Python-level calls (``Mapping.get`` then ``__getitem__``): ~0.45 us each, ~2.8 us
    for the six reads of a span. ``.copy()`` delegates to ``BoundedAttributes.copy()``, a C
    dict copy (~0.3 us), after which each read is a dict lookup. With the other changes of this
    module, ``on_end`` on real SDK spans went from 8.4 to 6.0 us (bench_aggregator_memory.py).
    """
    if not attributes:
        return {}
    try:
        return attributes.copy()
    except AttributeError:   # some other Mapping
        return dict(attributes)


def _freeze(name: str, acc: _OperationAccumulator) -> OperationStats:
    sketch = acc.sketch
    if acc.count:
        low, high = acc.duration.low, acc.duration.high

        def quantile(q: float) -> float:
            # A sketch's value is its bin's midpoint, up to 1% off: never outside what was measured.
            return min(max(sketch.get_quantile_value(q) or 0.0, low), high)

        duration = Quantiles(p50=quantile(0.50), p95=quantile(0.95), p99=quantile(0.99), max=high,
                             mean=acc.duration.total / acc.count)
    else:
        duration = Quantiles(0.0, 0.0, 0.0, 0.0, 0.0)
    fingerprints = tuple(sorted(
        (FingerprintStats(
            fingerprint=key, executions=fp.executions, total_ms=fp.seconds * 1000.0, spans=fp.spans,
            max_repeats_in_span=fp.max_repeats, max_distinct_parameters_in_span=fp.max_distinct,
            max_identical_in_span=fp.max_identical,
            example_trace_id=f"{fp.example_trace_id:032x}", example_span_id=f"{fp.example_span_id:016x}",
            relationship=fp.relationship, call_site=fp.call_site, enclosing=tuple(sorted(fp.enclosing)),
            max_loader_in_span=fp.max_loader,
            values_per_execution=fp.bound_values / fp.executions if fp.executions else 1.0,
            from_flush=fp.from_flush)
         for key, fp in acc.fingerprints.items()),
        key=lambda f: f.total_ms, reverse=True))
    return OperationStats(
        name=name, count=acc.count, errors=acc.errors, duration_ms=duration,
        total_ms=acc.duration.total, rss_delta_bytes=acc.rss_delta.freeze(),
        peak_increase_bytes=acc.peak_increase.freeze(), query_count=acc.queries.freeze(),
        query_ms=acc.query_ms.freeze(), fingerprints=fingerprints,
        overflow_fingerprints=acc.overflow_fingerprints, own_query_count=acc.own_queries.freeze(),
        eager_loads=tuple(EagerLoadStats(
            relationship=relationship, spans=load.spans, unused_spans=load.unused_spans,
            max_parents=load.max_parents, max_objects=load.max_objects, max_queries=load.max_queries,
            call_site=load.call_site, example_trace_id=f"{load.example_trace_id:032x}",
            example_span_id=f"{load.example_span_id:016x}")
            for relationship, load in sorted(acc.eager_loads.items())))
