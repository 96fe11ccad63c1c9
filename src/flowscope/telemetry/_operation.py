"""``flowscope.operation``: one span per unit of work, with memory and query attributes.

    >>> with flowscope.operation("import_rows", rows=500) as span:
    ...     import_rows()
    >>> @flowscope.operation("nightly_report")
    ... def nightly_report(): ...
    >>> @flowscope.operation("fetch")
    ... async def fetch(): ...

The span is a child of the current span and becomes the current span; it carries
``workflow.operation`` plus the caller's attributes, and at the end RSS, RSS delta, the rise of
the process high-water mark, garbage collections, the number and time of database queries
(inclusive of nested operations), and with ``FLOWSCOPE_MEMORY_PROFILE=tracemalloc`` the
allocation peak. An exception is recorded on the span, its status set to ERROR, and re-raised
unchanged. A failure inside flowscope itself is logged once and counted, never raised. The
name must be a ``str`` (anything else is a ``TypeError`` at the call: an exporter cannot encode
it, and one such span used to fail its whole batch); a name longer than the attribute value
length limit (``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` / ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``,
else 256 characters) is cut there.

Design decisions:
- ``workflow.operation`` is recorded with the end attributes, not passed to ``start_span``: a
  start attribute goes through the sampler's ``SamplingResult`` and the span's
  ``BoundedAttributes``, each cleaning and copying it (~7 us per span on opentelemetry-sdk
  1.45, measured with bench_operation_overhead: operation 43.7 -> 34.4 us). A sampler still
  sees the operation: it is the span's name. The caller's own attributes are passed at start.
- A class with ``__slots__`` and explicit ``__enter__``/``__exit__`` instead of
  ``contextlib.contextmanager`` (a generator per call costs more than the probes), and the
  context is attached directly instead of through ``trace.use_span``.
- The end attributes (the name and six numbers we produce ourselves, plus the
  ``late_attributes`` a caller such as the workflow instrumentor adds once it knows them) are
  recorded in *one* step at the end, straight into the SDK span's attribute dict
  (``_record_directly``). ``Span.set_attributes`` runs ``BoundedAttributes._set_items``: a
  recursive ``_clean_attribute_value`` over the mapping (ABC ``isinstance`` checks per value)
  and two locks, ~4.2 us for six ints (opentelemetry-sdk 1.45, measured). Our values need no
  cleaning (ints and floats; the name is checked against the length limit), so the direct
  path takes the same two locks, applies the SDK's own rules that still matter (ended span,
  count limit, string length limit, a re-set key moves to the end) and stores them; when
  nothing was recorded at start, our dict simply becomes the span's. This uses SDK internals
  (``Span._lock/_end_time/_attributes``, ``BoundedAttributes._dict/_lock/_immutable/maxlen/
  max_value_len``), so it is guarded twice: at import, probe spans must come out exactly as
  ``set_attributes`` makes them (``_DIRECT_ATTRIBUTES``; a test fails when an SDK upgrade turns
  it off), and per call anything unexpected (another Span class, a value that would need
  cleaning, a full span) falls back to ``set_attributes``.
- The span and the query frame are made current together, in one OpenTelemetry context
  (``_context.operation_context``): one attach at the start, one detach at the end, where a
  context variable of its own for the frame cost ~1 us more per operation.
- Probes: one ``memory_mark()`` call at each end (``/proc/self/statm`` and ``getrusage``); the
  start's statm line is parsed only when the end's differs (an unchanged line is an unchanged
  RSS). Writing the system calls out inline measured within the benchmark's noise, so the one
  implementation stays in ``_probes``.
- Where the time goes: benchmarks/diagnose_operation_floor.py. The four probe system calls are
  most of it (~4 us of ~5 over a bare span, in situ); operation() measures ~1.26-1.28x a bare
  span (bench_operation_overhead).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import tracemalloc
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import Span, Status, StatusCode

from .._version import __version__
from . import _attributes as attr
from ._context import FRAME_KEY, operation_context
from ._context import attach as _attach
from ._context import current_context as _current_context
from ._context import detach as _detach
from ._frames import OperationFrame, _FrameClaims, park_frame
from ._health import health
from ._probes import _GcCounter, memory_mark, rss_of
from ._scrub import scrubbed_exception

F = TypeVar("F", bound=Callable[..., Any])
_OPERATION, _RSS_BYTES, _RSS_DELTA_BYTES = attr.OPERATION, attr.RSS_BYTES, attr.RSS_DELTA_BYTES
_PEAK_INCREASE_BYTES, _GC_COLLECTIONS = attr.PEAK_INCREASE_BYTES, attr.GC_COLLECTIONS
_QUERY_COUNT, _QUERY_DURATION_MS = attr.QUERY_COUNT, attr.QUERY_DURATION_MS
_logger = logging.getLogger("flowscope")
_tracer = trace.get_tracer("flowscope", __version__)


def use_tracer(tracer: trace.Tracer) -> None:
    """Make ``tracer`` start operation spans (auto-instrumentation's first-use stand-in; see _autoinstrument)."""
    global _tracer
    _tracer = tracer


def current_tracer() -> trace.Tracer:
    return _tracer


class _Settings:
    tracemalloc = False


settings = _Settings()


class operation:  # noqa: N801 - used like a function: `with operation(...)`, `@operation(...)`
    """Measure a block or a function as one operation span (see the module docstring).

    ``late_attributes``: a dict the code inside the block may set (``op.late_attributes =
    {...}``); it is recorded on the span at the end, together with the measured attributes,
    so that attributes known only after the span opened cost no second SDK call.
    """

    __slots__ = ("name", "attributes", "late_attributes", "_span", "_frame", "_mark", "_peak", "_gc")

    def __init__(self, name: str, **attributes: Any) -> None:
        if type(name) is not str or not name.isascii():
            name = _checked_name(name)
        self.name = name if len(name) <= MAX_NAME_LENGTH else name[:MAX_NAME_LENGTH]
        self.attributes = attributes
        self.late_attributes: dict[str, Any] | None = None

    def __enter__(self) -> Span:
        context = _current_context()
        frame = self._frame = OperationFrame(context.get(FRAME_KEY), self.name)
        try:
            span = self._span = _tracer.start_span(
                self.name, context, attributes=redact_attributes(self.attributes) if self.attributes else None)
            frame.context_token = _attach(operation_context(context, span, frame))
        except Exception:
            health.failed("starting an operation span")
            span = self._span = trace.INVALID_SPAN
        if settings.tracemalloc:
            _start_tracemalloc_window(frame)
        self._gc = _GcCounter.collections
        self._mark, self._peak = memory_mark()
        return span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        mark, peak = memory_mark()
        gcs = _GcCounter.collections
        frame = self._frame
        frame.closed = True
        # Restore the enclosing context. Usually this operation is the innermost open here and
        # its token restores its parent's; see _leave_out_of_order for the other cases.
        if _current_context().get(FRAME_KEY) is frame:
            _detach(frame.context_token)
            frame.context_token = None   # only a frame closed out of order needs it later
            if frame.parent is not None and frame.parent.closed:
                _restore_context(_leave_out_of_order(frame.parent))
        try:
            span = self._span
            if span.is_recording():
                late = self.late_attributes
                name = late.get(_OPERATION, self.name) if late else self.name
                rss = rss_of(mark)
                rss_delta = 0 if mark == self._mark else rss - rss_of(self._mark)
                peak_increase = peak - self._peak
                queries = frame.query_count
                query_ms = frame.query_seconds * 1000.0
                end = {_OPERATION: name, _RSS_BYTES: rss, _RSS_DELTA_BYTES: rss_delta,
                       _PEAK_INCREASE_BYTES: peak_increase, _GC_COLLECTIONS: gcs - self._gc,
                       _QUERY_COUNT: queries, _QUERY_DURATION_MS: query_ms}
                if settings.tracemalloc:
                    end[attr.TRACEMALLOC_PEAK_BYTES] = _end_tracemalloc_window(frame)
                if late:
                    end = {**late, **end}
                if not _record_directly(span, end, check=late is not None):
                    span.set_attributes(end)
                frame.name = name
                frame.measured = (name, rss_delta, peak_increase, queries, query_ms)
                if exc is not None:
                    _record_error(span, exc)
                if _FrameClaims.active:   # park the frame for the aggregator (see _frames)
                    park_frame(span.get_span_context().span_id, frame)
            frame.close_into_parent()
            span.end()
        except Exception:
            health.failed("ending an operation span")

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: each call of ``fn`` (sync or async) is one operation."""
        name, attributes = self.name, self.attributes
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with operation(name, **attributes):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with operation(name, **attributes):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def attribute_length_limit() -> int | None:
    """The span attribute value length limit the environment sets
    (``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``, else ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, as the
    SDK reads them), or None."""
    for variable in ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        raw = os.environ.get(variable, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    return None


# Without a limit from the environment: the longest operation name kept (one unbounded name, a
# raw URL or a pasted payload, must not make every span, metric and report carry it), and the
# longest string attribute value (flowscope.operation's own attributes; and every span's on a
# provider flowscope creates, through the SDK's SpanLimits).
DEFAULT_MAX_NAME_LENGTH = 256
DEFAULT_MAX_ATTRIBUTE_LENGTH = 16384
MAX_NAME_LENGTH = attribute_length_limit() or DEFAULT_MAX_NAME_LENGTH
MAX_ATTRIBUTE_LENGTH = attribute_length_limit() or DEFAULT_MAX_ATTRIBUTE_LENGTH


def _checked_name(name: Any) -> str:
    """A ``str`` subclass as a plain ``str``, with what UTF-8 cannot encode (lone surrogates)
    escaped as ``\\udXXX``; anything else is the caller's mistake, said at the call (a name the
    exporter cannot encode would otherwise fail a whole batch of spans)."""
    if isinstance(name, str):
        return encodable(str(name))
    raise TypeError(f"flowscope.operation(name): the name must be a str such as 'checkout', "
                    f"got {type(name).__name__} {name!r:.60}")


_CLEAN_TYPES = frozenset((int, float, bool))


def _needs_cleaning(value: Any, limit: int | None) -> bool:
    """Whether the SDK would change ``value`` (sequences, other types, truncation)."""
    kind = type(value)
    return kind not in _CLEAN_TYPES and not (kind is str and (limit is None or len(value) <= limit))


def _record_directly(span: Any, attributes: dict[str, Any], check: bool) -> bool:
    """``span.set_attributes(attributes)`` without the SDK's cleaning; False if it cannot.

    ``attributes`` is a new dict the span may keep. Only the name (``workflow.operation``) is
    checked unless ``check`` (the caller's late attributes are in it too); every other value
    ``__exit__`` builds is an int or a float. False (the caller then uses ``set_attributes``)
    when the SDK's internals are not the known ones, or the SDK would clean, truncate, drop
    or warn.
    """
    if not _DIRECT_ATTRIBUTES or not isinstance(span, SdkSpan):
        return False
    try:
        bounded = span._attributes
        if type(bounded) is not BoundedAttributes:
            return False
        limit = bounded.max_value_len
        if check:
            for value in attributes.values():
                if _needs_cleaning(value, limit):
                    return False
        elif _needs_cleaning(attributes[_OPERATION], limit):
            return False
        with span._lock:
            if span._end_time is not None or bounded._immutable:
                return False       # set_attributes warns about it: let it
            with bounded._lock:
                values = bounded._dict
                maxlen = bounded.maxlen
                if maxlen is not None and len(values) + len(attributes) > maxlen:
                    return False   # the SDK drops the oldest and counts them: let it
                if not values:
                    bounded._dict = attributes   # nothing recorded at start: ours becomes the dict
                elif values.keys().isdisjoint(attributes):
                    values.update(attributes)
                else:
                    for key, value in attributes.items():
                        if key in values:   # a re-set key moves to the end, as in the SDK
                            del values[key]
                        values[key] = value
        return True
    except Exception:   # SDK internals not as expected: the supported path
        return False


def _direct_attributes_supported() -> bool:
    """Whether ``_record_directly`` gives exactly what ``set_attributes`` gives on this SDK.

    Three cases, one per way it writes: into an empty attribute dict, next to disjoint start
    attributes, and over start attributes it re-sets (which move to the end).
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import _Span
        from opentelemetry.trace import SpanContext

        def probe(start: dict[str, Any] | None) -> Any:
            return _Span("probe", SpanContext(1, 1, is_remote=False), resource=Resource.get_empty(),
                         attributes=start)

        end = {attr.OPERATION: "final", "b": 2, "c": 0.5}
        cases = ((None, end, False), ({"a": 1}, end, False),
                 ({attr.OPERATION: "probe", "a": 1}, {attr.OPERATION: "renamed", "s": "text", **end}, True))
        for start, attributes, check in cases:
            direct, supported = probe(start), probe(start)
            if not _record_directly(direct, dict(attributes), check):
                return False
            supported.set_attributes(attributes)
            if (list(direct.attributes.items()) != list(supported.attributes.items())
                    or direct.dropped_attributes != 0 or supported.dropped_attributes != 0):
                return False
        return True
    except Exception:
        return False


_DIRECT_ATTRIBUTES = True   # for the check just below, which decides
_DIRECT_ATTRIBUTES = _direct_attributes_supported()


def _leave_out_of_order(enclosing: OperationFrame) -> Any:
    """The context token of the outermost of the enclosing operations that already ended.

    Operations normally end innermost first. Ending out of order (``start a, start b, end a,
    end b`` with Monitor.start_operation/end_operation) leaves ``a``'s context current until
    ``b`` ends; then the context from before the outermost such operation is restored (it
    holds the first enclosing operation still open, if any). Ending in another context
    (another thread) ends the span and leaves the starting context alone: it cannot be
    reached from there.
    """
    outermost_closed = enclosing
    while enclosing is not None and enclosing.closed:
        outermost_closed = enclosing
        enclosing = enclosing.parent
    return outermost_closed.context_token


def _restore_context(token: Any) -> None:
    """Make current the OpenTelemetry context from before ``token``'s span started."""
    if token is None:   # that operation's span never started: nothing of it was made current
        return
    old = getattr(token, "old_value", None)
    otel_context.attach(old if isinstance(old, otel_context.Context) else otel_context.Context())


_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|auth|credential|private[_-]?key|session[_-]?id",
                         re.IGNORECASE)
REDACTED = "[REDACTED]"


@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    """Keys that look like they hold secrets; their values are never recorded."""
    return _SECRET_KEY.search(key) is not None


def encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) escaped as ``\\udXXX``.

    >>> encodable("caf\\xe9 \\ud800")
    'café \\\\ud800'
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def redact_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Secret-looking keys redacted, string values cut at ``MAX_ATTRIBUTE_LENGTH`` characters."""
    limit = MAX_ATTRIBUTE_LENGTH
    if not any(is_secret_key(key) or (type(value) is str and len(value) > limit)
               for key, value in attributes.items()):
        return attributes
    return {key: REDACTED if is_secret_key(key) else
            value[:limit] if type(value) is str and len(value) > limit else value
            for key, value in attributes.items()}


def _record_error(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` without SQL parameter values (see _scrub): the message and the
    whole traceback, chained causes and contexts included, scrubbed of bound parameters, driver
    detail lines and literal-bearing SQL."""
    message, stacktrace = scrubbed_exception(exc)
    span.record_exception(exc, attributes={"exception.message": message, "exception.stacktrace": stacktrace})
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))


def _start_tracemalloc_window(frame: OperationFrame) -> None:
    if not tracemalloc.is_tracing():
        return
    current, peak = tracemalloc.get_traced_memory()
    if frame.parent is not None:  # keep the parent's peak before resetting the global one
        frame.parent.tracemalloc_peak = max(frame.parent.tracemalloc_peak, peak)
    tracemalloc.reset_peak()
    frame.tracemalloc_baseline = current


def _end_tracemalloc_window(frame: OperationFrame) -> int:
    if not tracemalloc.is_tracing():
        return 0
    peak = max(tracemalloc.get_traced_memory()[1], frame.tracemalloc_peak)
    return max(0, peak - frame.tracemalloc_baseline)
