"""Span-based operations: every request and task the application's instrumentations trace is an operation.

    $ FLOWSCOPE_AUTO_INSTRUMENT=true python app.py           # Flask, FastAPI, Django, Celery, ...
    >>> configure(operation_span_kinds="server,consumer")    # the default; "none" switches it off

A span of one of the configured kinds (``SERVER`` and ``CONSUMER`` by default:
``FLOWSCOPE_OPERATION_SPAN_KINDS``), whoever starts it (opentelemetry-instrumentation-flask,
-fastapi/-asgi, -django, -wsgi, -celery, ...), gets what :func:`flowscope.operation` gives its
own spans: a query frame from its start (count, time, fingerprints, N+1 and repeated-query
evidence), the memory probes, flowscope's attributes on that same span, and statistics under
the span's name (the instrumentations name it by route template, ``GET /users/{id}``, or task,
``run/send_invoice``). A ``flowscope.operation`` inside a request is a nested operation, and a
request inside a ``flowscope.operation`` (a test, a ``flowscope check`` scenario) nests in it.

Design decisions:
- The frame is made current at ``on_start``, which the SDK calls on the thread starting the
  span, before the instrumentation makes its span current: every instrumentation derives that
  context from the current one (``use_span``/``set_span_in_context``), so the request's context
  and every child of it carry the frame, and the query path stays one context lookup. At the
  end (``_on_ending``, the SDK's OnEnding callback: the span's attributes can still be written
  and no ``on_end`` has run yet) the frame's context is detached when it is still current; a
  span ended in another context leaves that context alone (as an operation ended on another
  thread does).
- Instrumentations demote a request span to ``INTERNAL`` when a span is already current
  (``_start_internal_or_server_span``: a test client called inside a test's operation). With
  ``SERVER`` configured, an ``INTERNAL`` span of an ``opentelemetry.instrumentation.*`` scope that
  carries an HTTP request method is such a request, and is an operation too.
- A span whose direct parent is itself a span-based operation is not another one: stacked
  instrumentations (WSGI middleware under Flask's) trace one request twice.
- Other spans pay one kind comparison at start and one dict lookup at the end while a
  span-based operation is open; flowscope's processors are registered as one
  (:mod:`._processor_chain`), and the aggregator leaves such spans out at ``on_end``: an
  INTERNAL or CLIENT span costs within noise of a bare one, a request ~1.1x the framework's
  instrumentation alone (benchmarks/bench_span_operations.py).
- The end attributes are written straight into the span's attribute dict (the SDK has made it
  immutable by then; ``set_attributes`` would refuse). Checked at import against a real SDK
  span (``ENDING_ATTRIBUTES``); where it does not hold, the statistics still come from the frame
  and the spans lack flowscope's attributes, said once as a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from . import _attributes as attr
from ._context import FRAME_KEY
from ._context import attach as _attach
from ._context import current_context as _current_context
from ._context import detach as _detach
from ._frames import OperationFrame, park_frame
from ._health import health
from ._operation import MAX_NAME_LENGTH, _leave_out_of_order, _restore_context, encodable
from ._probes import _GcCounter, memory_mark, rss_of

DEFAULT_KINDS = frozenset((SpanKind.SERVER, SpanKind.CONSUMER))
KIND_NAMES = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER, "producer": SpanKind.PRODUCER,
              "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
OFF = ("none", "off", "false", "0")
_HTTP_METHOD_KEYS = ("http.request.method", "http.method")
_INSTRUMENTATION_SCOPE = "opentelemetry.instrumentation."
_INTERNAL = SpanKind.INTERNAL
_logger = logging.getLogger("flowscope")


def parse_kinds(value: str) -> frozenset[SpanKind]:
    """``"server,consumer"`` -> the span kinds; ``"none"`` -> no span is an operation.

    Raises ``ValueError`` naming the unknown kind and the known ones.
    """
    text = value.strip().lower()
    if text in OFF:
        return frozenset()
    kinds = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part not in KIND_NAMES:
            raise ValueError(f"unknown span kind {part!r}: use a comma-separated list of "
                             f"{', '.join(KIND_NAMES)}, or 'none'")
        kinds.add(KIND_NAMES[part])
    return frozenset(kinds)


class _Open:
    """What a span-based operation read at its start."""

    __slots__ = ("frame", "mark", "peak", "gc")

    def __init__(self, frame: OperationFrame, mark: Any, peak: int, gc: int) -> None:
        self.frame, self.mark, self.peak, self.gc = frame, mark, peak, gc


class SpanOperationProcessor(SpanProcessor):
    """Makes spans of ``kinds`` operations (see the module docstring). Add it to the provider
    before the aggregating processor (an SDK without OnEnding falls back to ``on_end``)."""

    def __init__(self, kinds: frozenset[SpanKind] = DEFAULT_KINDS) -> None:
        self.kinds = frozenset(kinds)
        self._kinds = tuple(self.kinds)   # membership by identity: no Enum.__hash__ call per span
        self._server = SpanKind.SERVER in self.kinds
        self._open: dict[int, _Open] = {}
        self._warned = False

    # -- start ---------------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        kind = span.kind
        if kind not in self._kinds and not (kind is _INTERNAL and self._server and _is_demoted_request(span)):
            return
        try:
            parent = span.parent
            if parent is not None and not parent.is_remote and parent.span_id in self._open:
                return   # the same request traced again by a stacked instrumentation
            context = _current_context()
            frame = OperationFrame(context.get(FRAME_KEY), span.name)
            frame.context_token = _attach(_with_frame(context, frame))
            mark, peak = memory_mark()
            self._open[span.context.span_id] = _Open(frame, mark, peak, _GcCounter.collections)
        except Exception:
            health.failed("starting a span-based operation")

    # -- end -----------------------------------------------------------------------------------

    def _on_ending(self, span: Span) -> None:
        if self._open:
            self._finish(span)

    def on_end(self, span: ReadableSpan) -> None:
        if self._open and not ON_ENDING:   # an SDK without OnEnding: the first on_end does it
            self._finish(span)

    def _finish(self, span: Any) -> None:
        context = span.context
        opened = self._open.pop(context.span_id, None) if context is not None else None
        if opened is None:
            return
        try:
            mark, peak = memory_mark()
            frame = opened.frame
            frame.closed = True
            if _current_context().get(FRAME_KEY) is frame:
                _detach(frame.context_token)
                frame.context_token = None
                if frame.parent is not None and frame.parent.closed:
                    _restore_context(_leave_out_of_order(frame.parent))
            name = span.name
            if len(name) > MAX_NAME_LENGTH:   # a raw URL as a span name, say: bounded as operation names are
                name = name[:MAX_NAME_LENGTH]
            if not name.isascii():
                name = encodable(name)
            rss = rss_of(mark)
            rss_delta = 0 if mark == opened.mark else rss - rss_of(opened.mark)
            peak_increase = peak - opened.peak
            queries = frame.query_count
            query_ms = frame.query_seconds * 1000.0
            end = {attr.OPERATION: name, attr.RSS_BYTES: rss, attr.RSS_DELTA_BYTES: rss_delta,
                   attr.PEAK_INCREASE_BYTES: peak_increase, attr.GC_COLLECTIONS: _GcCounter.collections - opened.gc,
                   attr.QUERY_COUNT: queries, attr.QUERY_DURATION_MS: query_ms}
            if not write_ending_attributes(span, end) and not self._warned:
                self._warned = True
                _logger.warning("flowscope: cannot record attributes on request and task spans with this "
                                "opentelemetry-sdk; their statistics are still aggregated")
            frame.name = name
            frame.measured = (name, rss_delta, peak_increase, queries, query_ms)
            park_frame(context.span_id, frame)   # for the aggregator (see _frames)
            frame.close_into_parent()
        except Exception:
            health.failed("ending a span-based operation")

    def open_operations(self) -> int:
        """How many span-based operations are open now (all threads)."""
        return len(self._open)

    def shutdown(self) -> None:
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _is_demoted_request(span: Span) -> bool:
    """An instrumentation's request span, started as INTERNAL under a current span."""
    scope = getattr(span, "_instrumentation_scope", None) or span.instrumentation_scope   # field: no property call
    if scope is None or not scope.name.startswith(_INSTRUMENTATION_SCOPE):
        return False
    attributes = span.attributes or {}
    return any(key in attributes for key in _HTTP_METHOD_KEYS)


def _with_frame(context: Context, frame: OperationFrame) -> Context:
    values = context.copy()
    values[FRAME_KEY] = frame
    return Context(values)


def write_ending_attributes(span: Any, attributes: dict[str, Any]) -> bool:
    """Add ``attributes`` to a span that is ending (its attribute dict is already immutable).

    The SDK's own rules that matter are kept: a string longer than the value-length limit is
    cut, a re-set key moves to the end, and when the count limit would be passed nothing is
    written (False), as nothing may be dropped silently.
    """
    bounded = getattr(span, "_attributes", None)
    if type(bounded) is not BoundedAttributes:
        return False
    try:
        with bounded._lock:
            values = bounded._dict
            limit = bounded.max_value_len
            if bounded.maxlen is not None and len(values) + len(attributes) > bounded.maxlen:
                return False
            for key, value in attributes.items():
                if limit is not None and type(value) is str and len(value) > limit:
                    value = value[:limit]
                if key in values:
                    del values[key]
                values[key] = value
        return True
    except Exception:
        return False


def _ending_attributes_supported() -> tuple[bool, bool]:
    """``(on_ending, attributes)``: whether this SDK calls ``_on_ending`` and whether the
    attributes written there reach the span every ``on_end`` sees (a probe on a real provider)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        seen: dict[str, Any] = {}

        class _Probe(SpanProcessor):
            def _on_ending(self, span: Span) -> None:
                seen["ending"] = write_ending_attributes(span, {"flowscope.probe": 1})

            def on_end(self, span: ReadableSpan) -> None:
                seen["end"] = dict(span.attributes or {})

        # Everything explicit: a probe must not read (and warn about) the application's OTEL_* variables.
        provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.get_empty(), shutdown_on_exit=False,
                                  span_limits=SpanLimits(max_attributes=128, max_attribute_length=None))
        provider.add_span_processor(_Probe())
        provider.get_tracer("flowscope.probe").start_span("probe", kind=SpanKind.SERVER).end()
        provider.shutdown()
        on_ending = "ending" in seen
        return on_ending, on_ending and seen.get("end", {}).get("flowscope.probe") == 1
    except Exception:
        return False, False


ON_ENDING, ENDING_ATTRIBUTES = _ending_attributes_supported()
