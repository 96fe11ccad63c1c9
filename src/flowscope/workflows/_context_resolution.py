"""Reading moved context values back: for handlers (by the engine) and for everyone else.

    >>> execution.context_data["report"]          # the stored form: a small reference
    {'$flowscope_context_blob': 1, 'id': 7, 'bytes': 184320, 'sha256': '...'}
    >>> execution.resolved_context()["report"]    # the value, read from workflow_context_blobs
    {...}

Design decision (what "transparent" means here, and why not more):
- ``execution.context_data`` is, as before, exactly what is stored in the row: small values
  inline, moved values as references (``_context_refs``). Making the mapped attribute itself
  return resolved values would need ORM load/flush hooks that query in the middle of loading
  rows and rewrite values during flush: fragile, and a cost paid by every load.
- Handlers see resolved values: before the handlers of an action run, the engine swaps the
  moved values in (one query for all of them); after the handlers it swaps every value the
  handlers left unchanged (same SHA-256) back to its reference, and deletes the blob of a
  value they replaced or removed, inside the action's transaction. A failed action rolls all
  of it back with the rest. An execution with nothing moved pays one scan of its top-level
  values per action and never queries.
- Guards and application code read :meth:`WorkflowExecution.resolved_context` (one query when
  something was moved, none otherwise). Guards are not given resolved values, because doing
  that outside a transaction would either dirty the execution or risk committing a caller's
  pending change; they rarely need a value large enough to have been moved.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, object_session

from ._context_refs import references, value_digest
from ._side_tables import MOVED, WorkflowContextBlob
from .errors import DetachedExecutionError


def load_moved_values(session: Session, execution_id: int, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Key -> stored value for every reference that matches its blob (others are left out)."""
    if not refs:
        return {}
    blob = WorkflowContextBlob
    with session.no_autoflush:
        rows = session.execute(
            select(blob.id, blob.key, blob.value, blob.sha256)
            .where(blob.id.in_([ref["id"] for ref in refs.values()]), blob.execution_id == execution_id,
                   blob.kind == MOVED)).all()
    by_id = {row.id: row for row in rows}
    values: dict[str, Any] = {}
    for key, ref in refs.items():
        row = by_id.get(ref["id"])
        if row is not None and row.key == key and row.sha256 == ref["sha256"]:
            values[key] = row.value
    return values


def resolved_context(execution: Any) -> dict[str, Any]:
    """A new dict: ``execution.context_data`` with every moved value read back in."""
    context = execution.context_data
    refs = references(context)
    if not refs:
        return dict(context)
    session = object_session(execution)
    if session is None:
        identity = sa_inspect(execution).identity
        raise DetachedExecutionError(identity[0] if identity else None)
    values = load_moved_values(session, execution.id, refs)
    return {key: values.get(key, value) if key in refs else value for key, value in context.items()}


def swap_in(session: Session, execution: Any) -> dict[str, dict[str, Any]]:
    """Put moved values into ``execution.context_data`` for the handlers; return key -> reference."""
    context = execution.context_data
    refs = references(context)
    values = load_moved_values(session, execution.id, refs)
    for key, value in values.items():
        context[key] = value
    return {key: refs[key] for key in values}


def swap_back(session: Session, execution: Any, swapped: dict[str, dict[str, Any]]) -> None:
    """After the handlers: unchanged values become references again; replaced ones lose their blob."""
    context = execution.context_data
    superseded = []
    for key, ref in swapped.items():
        if key in context and value_digest(context[key]) == ref["sha256"]:
            context[key] = ref
        else:
            superseded.append(ref["id"])
    if superseded:
        session.execute(delete(WorkflowContextBlob).where(WorkflowContextBlob.id.in_(superseded)))

