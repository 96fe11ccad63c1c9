"""References to context values stored outside ``context_data`` (in ``workflow_context_blobs``).

    >>> ref = make_reference(blob_id=17, size=120_000, digest=value_digest(value))
    >>> is_reference(ref), has_references({"report": ref, "step": 3})
    (True, True)

:class:`flowscope.performance.optimizations.MemoryOptimizer` moves large context values to a
side table and leaves one of these small dicts in their place. The engine resolves them for
handlers (see ``_context_resolution``); :meth:`WorkflowExecution.resolved_context` does it for
everyone else.

Design decisions:
- A reference is a plain JSON object, so ``context_data`` stays valid JSON on every database
  and a process that never imports the optimizer still reads it. Its shape is exact (a marker
  key plus ``id``, ``bytes``, ``sha256`` and nothing else), and resolution also checks that a
  blob with that id, execution, key and digest exists: a user value that merely looks like a
  reference is left alone, so compaction stays lossless even then.
- Detecting references is one pass over the top-level values (no database access): about a
  microsecond for a context of ten keys, which is what the engine pays per action when
  nothing was ever moved.
- Sizes are the bytes of compact UTF-8 JSON, the form a value takes in the row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MARKER = "$flowscope_context_blob"
_FIELDS = frozenset((MARKER, "id", "bytes", "sha256"))


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal text."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def value_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()


def make_reference(blob_id: int, size: int, digest: str) -> dict[str, Any]:
    return {MARKER: 1, "id": blob_id, "bytes": size, "sha256": digest}


def is_reference(value: Any) -> bool:
    return (type(value) is dict and MARKER in value and value.keys() == _FIELDS
            and type(value["id"]) is int and type(value["sha256"]) is str)


def has_references(context: Mapping[str, Any] | None) -> bool:
    """True when some top-level value of ``context`` is a reference (no database access)."""
    if not context:
        return False
    for value in context.values():
        if type(value) is dict and MARKER in value and is_reference(value):
            return True
    return False


def references(context: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Key -> reference, for every top-level reference in ``context``."""
    if not context:
        return {}
    return {key: value for key, value in context.items() if is_reference(value)}
