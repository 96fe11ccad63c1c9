"""Memory findings of one execution: ``large_context``, ``history_growth``, ``memory_growth``.

    >>> large_context("DocumentApproval execution 7", context, Thresholds(), movable_bytes=16 * 1024)
    >>> history_growth("DocumentApproval execution 7", transitions=250, thresholds=Thresholds())
    >>> memory_trend("DocumentApproval execution 7", spans, Thresholds())

Each reads a measurement: the stored size of ``context_data`` (compact JSON bytes, what every
load of the execution reads), the number of stored transitions, and the resident memory
recorded at the end of each of the execution's operation spans.

Design decisions:
- Messages name context keys (so the user can find them) with their sizes, never values;
  secret-looking key names are redacted (``_redaction``).
- The memory trend looks at the execution's outermost operations in time order: RSS before
  the first, after each. It fires when the total growth reaches ``memory_growth_bytes`` over
  at least ``memory_trend_operations`` operations and at least two thirds of the operations
  grew it: memory retained from one operation to the next. One large, freed allocation per
  operation (RSS back down afterwards) is not a trend, and a single operation that grows
  memory a lot is already the per-operation ``memory_growth`` finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from ..telemetry import _attributes as attr
from ..workflows._context_refs import is_reference, json_size
from . import _findings
from ._recommendation import Evidence, Recommendation
from ._redaction import shown_key
from ._severity import severity
from ._sources import number, outermost

KiB = 1024


def large_context(subject: str, context: Mapping[str, Any], thresholds: _findings.Thresholds,
                  movable_bytes: int) -> Recommendation | None:
    size = json_size(dict(context))
    if size < thresholds.large_context_bytes:
        return None
    sizes = sorted(((key, json_size(value)) for key, value in context.items() if not is_reference(value)),
                   key=lambda kv: kv[1], reverse=True)
    movable = [(key, n) for key, n in sizes if n >= movable_bytes]
    largest = ", ".join(f"{shown_key(key)} ({_kib(n)})" for key, n in sizes[:3])
    if movable:
        suggestion = (f"MemoryOptimizer(execution).optimize_memory_usage() moves the {len(movable)} values of at "
                      f"least {_kib(movable_bytes)} ({_kib(sum(n for _, n in movable))}) to "
                      "workflow_context_blobs; handlers still see them, and restore() undoes it.")
    else:
        suggestion = ("Keep references (ids, URLs) in the context instead of the data itself, or lower "
                      "MemoryPolicy.value_bytes so optimize_memory_usage() moves these values.")
    return Recommendation(
        kind="large_context", severity=severity(size, thresholds.large_context_bytes), operation=subject,
        message=f"{subject} stores {_kib(size)} of context data; largest values: {largest}",
        suggestion=suggestion,
        evidence=Evidence(value=size, unit="bytes", threshold=thresholds.large_context_bytes))


def history_growth(subject: str, transitions: int, thresholds: _findings.Thresholds) -> Recommendation | None:
    if transitions < thresholds.history_length:
        return None
    keep = thresholds.history_length
    return Recommendation(
        kind="history_growth", severity=severity(transitions, thresholds.history_length), operation=subject,
        message=(f"{subject} has {transitions} transitions; every read of execution.transitions loads "
                 "all of them"),
        suggestion=(f"MemoryOptimizer(execution, policy=MemoryPolicy(history_limit={keep})).optimize_memory_usage() "
                    f"moves all but the {keep} most recent to workflow_transition_archive (restore() brings "
                    "them back)."),
        evidence=Evidence(value=transitions, unit="transitions", threshold=thresholds.history_length))


def memory_trend(subject: str, spans: list[ReadableSpan], thresholds: _findings.Thresholds) -> Recommendation | None:
    operations = sorted((s for s in outermost(spans) if s.start_time is not None), key=lambda s: s.start_time or 0)
    if len(operations) < thresholds.memory_trend_operations:
        return None
    first = operations[0]
    level = int(number(first, attr.RSS_BYTES) - number(first, attr.RSS_DELTA_BYTES))
    start, grew = level, 0
    for span in operations:
        rss = int(number(span, attr.RSS_BYTES))
        grew += rss > level
        level = rss
    growth = level - start
    if growth < thresholds.memory_growth_bytes or grew < math.ceil(2 * len(operations) / 3):
        return None
    return Recommendation(
        kind="memory_growth", severity=severity(growth, thresholds.memory_growth_bytes), operation=subject,
        message=(f"Resident memory grew by {growth / (1024 * 1024):.1f} MiB over {len(operations)} operations "
                 f"of {subject} ({grew} of them grew it): memory is kept from one operation to the next"),
        suggestion=("Find what keeps data alive between operations (a module-level cache or list, a session "
                    "that is never closed, large values in the context): run with "
                    "FLOWSCOPE_MEMORY_PROFILE=tracemalloc, and keep large values out of the workflow context "
                    "(MemoryOptimizer.optimize_memory_usage())."),
        evidence=Evidence(value=growth, unit="bytes", threshold=thresholds.memory_growth_bytes,
                          spans=len(operations)))


def _kib(n: float) -> str:
    return f"{n / KiB:.1f} KiB"
