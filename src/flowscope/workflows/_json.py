"""JSON checks done before anything is written.

Design decision: a round trip (``json.loads(json.dumps(v)) == v``) instead of a bare
``json.dumps``, because ``json.dumps`` silently turns int keys into strings and tuples into lists,
and stored context must read back exactly as it was written. It costs two passes over the value.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ContextSerializationError


def checked_json_object(value: Any, where: str) -> dict[str, Any]:
    """Return ``value`` (``None`` -> ``{}``) if it is a JSON object, else raise before any write."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContextSerializationError(where, f"expected a dict, got {type(value).__name__}")
    try:
        round_trip = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ContextSerializationError(where, str(err)) from None
    except RecursionError:   # nested deeper than the interpreter's recursion limit
        raise ContextSerializationError(where, "it is nested too deeply to store (keep it under a few hundred "
                                               "levels, or store the deep part elsewhere)") from None
    try:
        same = round_trip == value
    except RecursionError:
        raise ContextSerializationError(where, "it is nested too deeply to compare after a round trip") from None
    if not same:
        raise ContextSerializationError(
            where, "it would not read back unchanged (non-string keys or tuples?); use str keys and lists")
    return value
