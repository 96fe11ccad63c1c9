"""SQL parameter values out of exception text: what a span, a log line or a report may say about an error.

    >>> scrub_text("IntegrityError: UNIQUE constraint failed\\n[SQL: INSERT INTO u VALUES (?, ?)]\\n"
    ...            "[parameters: ('dup@x.io', 'the-password')]")
    'IntegrityError: UNIQUE constraint failed\\n[SQL: INSERT INTO u VALUES (?)]\\n[parameters: redacted]'
    >>> scrub_text('duplicate key value violates unique constraint "u_email_key"\\n'
    ...            'DETAIL:  Key (email)=(dup@x.io) already exists.')
    'duplicate key value violates unique constraint "u_email_key"\\nDETAIL: redacted'

What is removed, wherever it appears (an exception's message, its traceback, the causes and
contexts chained to it, a span status): SQLAlchemy's ``[parameters: ...]`` line; the SQL of its
``[SQL: ...]`` block, replaced by its fingerprint (literals inlined in the statement are values
too); a driver's ``DETAIL:`` line (PostgreSQL quotes the row or key there: ``Key (email)=(...)``,
``Failing row contains (...)``). The error's type, its constraint and table names, and the
traceback's file names and lines stay: they are what a reader needs to find the bug.

:func:`scrub_exception_events` applies it to the exception events and status that any
instrumentation recorded on a span, as the span ends (see _processor_chain).
"""

from __future__ import annotations

import re
import traceback
from typing import Any

from opentelemetry.trace import Status

from .sql._text import fingerprint

REDACTED = "redacted"
_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
_SQL_BLOCK = re.compile(r"\[SQL: (.*?)\](?=\n\[parameters:|\n\(Background|\n|$)", re.DOTALL)
_DETAIL = re.compile(r"^(\s*)DETAIL:[^\n]*", re.MULTILINE)
_MARKERS = ("[parameters:", "[SQL:", "DETAIL:")


def scrub_text(text: str) -> str:
    """``text`` without bound parameter values, driver detail lines or literal-bearing SQL."""
    if not any(marker in text for marker in _MARKERS):
        return text
    text = _PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    text = _SQL_BLOCK.sub(lambda m: f"[SQL: {fingerprint(m.group(1))}]", text)
    return _DETAIL.sub(rf"\1DETAIL: {REDACTED}", text)


def scrubbed_exception(exc: BaseException) -> tuple[str, str]:
    """The message and the full traceback (with every chained cause and context) of ``exc``, scrubbed."""
    message = scrub_text(str(exc))
    stacktrace = scrub_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return message, stacktrace


def _scrub_attributes(attributes: Any) -> dict[str, Any] | None:
    """A scrubbed copy of an event's attributes, or None when nothing needed scrubbing."""
    changed = None
    for key, value in attributes.items():
        if type(value) is str:
            clean = scrub_text(value)
            if clean is not value and clean != value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = clean
    return changed


def scrub_exception_events(span: Any) -> None:
    """Scrub the exception events and the error status an instrumentation recorded on ``span``.

    Called as the span ends, before any processor or exporter reads it. Uses the SDK span's
    fields (``_events``, a BoundedList, and ``_status``); a span without them is left as it is.
    """
    events = getattr(span, "_events", None)
    if events:
        store = getattr(events, "_dq", None)
        if store is not None:
            for index, event in enumerate(store):
                if event.name != "exception" or not event.attributes:
                    continue
                clean = _scrub_attributes(event.attributes)
                if clean is not None:
                    store[index] = type(event)(event.name, clean, event.timestamp)
    status = getattr(span, "_status", None)
    description = getattr(status, "description", None)
    if description:
        clean = scrub_text(description)
        if clean != description:
            span._status = Status(status.status_code, clean)
