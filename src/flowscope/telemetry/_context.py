"""The OpenTelemetry context an open operation makes current: its span *and* its query frame.

    >>> context = current_context()
    >>> frame = context.get(FRAME_KEY)            # the innermost open operation's frame, or None
    >>> token = attach(operation_context(context, span, OperationFrame(frame)))

Design decision: the frame that tallies an operation's queries rides in the same OpenTelemetry
context as the operation's span, under its own key, so one ``attach`` makes both current and
one ``detach`` restores both. A separate ``contextvars.ContextVar`` for the frame cost a second
set and reset per operation (~1 us in situ, benchmarks/diagnose_operation_floor.py), and two
context stacks to keep in step when operations end out of order. Every child context inherits
the frame: a query under a user's own span, or an instrumentation's query span, still counts
in the operation around it; threads start empty and asyncio tasks copy their creator's
context, as before.

Two fast paths, each checked at import against the public API it stands in for, with the
public API as the fallback (tests say when a fast path is off):
- ``current_context``/``attach``/``detach``: the runtime context's own ``ContextVar`` (one C
  call each) instead of ``opentelemetry.context.get_current/attach/detach`` (three Python
  calls; the context read runs on every query). ``detach`` ignores a token from another
  context quietly (the public one logs an error);
- ``operation_context``: one copy of the context with both keys set, using the span key of
  ``opentelemetry.trace.propagation`` (private), instead of ``set_span_in_context`` then
  ``set_value`` (two copies; ~0.5 us more per operation, measured).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext

FRAME_KEY = otel_context.create_key("flowscope-operation-frame")


def _runtime_context_variable() -> contextvars.ContextVar[Context] | None:
    """The runtime context's ContextVar, if attach sets it and get_current reads it."""
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if not isinstance(variable, contextvars.ContextVar):
        return None   # another runtime context (OTEL_PYTHON_CONTEXT): the public API

    def agrees() -> bool:
        probe, ours = otel_context.set_value(FRAME_KEY, "probe"), otel_context.set_value(FRAME_KEY, "ours")
        token = otel_context.attach(probe)
        try:
            if variable.get() is not probe or otel_context.get_current() is not probe:
                return False
            own_token = variable.set(ours)     # what our attach does: the public API must see it
            seen = otel_context.get_current() is ours
            variable.reset(own_token)
            return seen and otel_context.get_current() is probe
        finally:
            otel_context.detach(token)

    try:
        return variable if contextvars.copy_context().run(agrees) else None
    except Exception:
        return None


def _private_span_key() -> str | None:
    """The key ``set_span_in_context`` stores the span under, if reading it back gives the span."""
    try:
        from opentelemetry.trace.propagation import _SPAN_KEY

        probe = NonRecordingSpan(SpanContext(1, 1, is_remote=False))
        made = Context({_SPAN_KEY: probe})
        if trace.get_current_span(made) is probe and trace.set_span_in_context(probe, Context()) == made:
            return _SPAN_KEY
    except Exception:
        pass
    return None


_VARIABLE = _runtime_context_variable()
_fast_current_context: Callable[[], Context] | None = _VARIABLE.get if _VARIABLE is not None else None
current_context: Callable[[], Context] = _fast_current_context or otel_context.get_current
attach: Callable[[Context], Any] = _VARIABLE.set if _VARIABLE is not None else otel_context.attach
_SPAN_KEY = _private_span_key()


def detach(token: Any) -> None:
    """Restore the context from before ``token``'s attach.

    A token attached in another context (an operation ended inside an asyncio task its block
    started) cannot restore anything there: ignored quietly, where the public ``detach`` logs
    an error with a traceback.
    """
    if _VARIABLE is None:
        otel_context.detach(token)
        return
    try:
        _VARIABLE.reset(token)
    except ValueError:
        pass


def operation_context(context: Context, span: Span, frame: Any) -> Context:
    """``context`` with ``span`` as the current span and ``frame`` as the innermost frame."""
    if _SPAN_KEY is None:
        return otel_context.set_value(FRAME_KEY, frame, trace.set_span_in_context(span, context))
    values = context.copy()
    values[_SPAN_KEY] = span
    values[FRAME_KEY] = frame
    return Context(values)
