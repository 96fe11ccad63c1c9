"""Compacting one execution's stored state, in one transaction, losslessly and reversibly.

    >>> result = compact(session, execution, MemoryPolicy(value_bytes=16_384, history_limit=100))
    >>> result.bytes_before, result.bytes_after, [m.key for m in result.moved]
    (412733, 2211, ['report', 'attachments'])
    >>> restore(session, execution)          # everything back where it was

What compaction does (each part only when the policy asks for it):
- context values of at least ``value_bytes`` (compact JSON) move to ``workflow_context_blobs``;
  a small reference takes their place in ``context_data`` (handlers still see the values);
- keys starting with ``temporary_prefix`` leave ``context_data``; their values are kept in
  the same table (kind ``removed``) so ``restore`` can put them back;
- transitions beyond the ``history_limit`` most recent move to ``workflow_transition_archive``.

Design decisions:
- One transaction on the execution's own session, committed at the end, rolled back on any
  failure, as the engine's actions are (the same caveat: other pending changes in that
  session go with it). The steps run in a fixed order, blobs, then history, then the
  execution row, whose UPDATE carries the optimistic version check: if another session
  changed the execution meanwhile, the whole compaction is undone and
  :class:`StaleExecutionError` raised, so the stored execution is exactly as it was.
- Lossless: a moved value is stored as the very object read from ``context_data`` (which
  already reads back exactly as written, see ``workflows/_json.py``), with its SHA-256; a
  reference resolves only if the blob matches it. Archived transitions keep their ids.
- ``restore`` puts back what is still current: a moved value the handlers later replaced
  (its blob already deleted by the engine) stays replaced, and a removed temporary key set
  again since keeps its newer value.
- Sizes are those of compact UTF-8 JSON (what the rows hold), not Python object sizes:
  they are what every load of the execution reads and decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, literal, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.exc import StaleDataError

from ...analysis._redaction import shown_key
from ...workflows import WorkflowExecution, WorkflowTransition
from ...workflows._context_refs import is_reference, json_size, make_reference, value_digest
from ...workflows._models import UTCDateTime, utcnow
from ...workflows._side_tables import MOVED, REMOVED, WorkflowContextBlob, WorkflowTransitionArchive
from ...workflows.errors import DetachedExecutionError, StaleExecutionError

_LIVE = cast(Table, WorkflowTransition.__table__)
_ARCHIVE = cast(Table, WorkflowTransitionArchive.__table__)
_TRANSITION_COLUMNS = ("id", "execution_id", "from_step", "to_step", "action", "user", "at", "additional_context")


@dataclass(frozen=True)
class MemoryPolicy:
    """What ``optimize_memory_usage`` may do."""

    value_bytes: int = 16 * 1024           # move context values at least this big
    temporary_prefix: str | None = None    # remove keys starting with it (None: never)
    history_limit: int | None = None       # keep this many most recent transitions (None: all)

    def __post_init__(self) -> None:
        if self.value_bytes < 1:
            raise ValueError(f"value_bytes must be at least 1, got {self.value_bytes}")
        if self.history_limit is not None and self.history_limit < 0:
            raise ValueError(f"history_limit must be >= 0 or None, got {self.history_limit}")
        if self.temporary_prefix == "":
            raise ValueError("temporary_prefix must be a non-empty string or None (an empty prefix matches every key)")


@dataclass(frozen=True)
class Footprint:
    """What loading the execution and its history reads (compact JSON bytes)."""

    context_bytes: int
    transitions: int
    history_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.context_bytes + self.history_bytes


@dataclass(frozen=True)
class MovedValue:
    key: str                                # "[redacted]" for secret-looking names
    bytes: int


@dataclass(frozen=True)
class MemoryOptimizationResult:
    execution_id: int
    before: Footprint
    after: Footprint
    moved: tuple[MovedValue, ...]           # to workflow_context_blobs, referenced from the context
    removed: tuple[MovedValue, ...]         # temporary keys taken out of the context
    archived_transitions: int

    @property
    def bytes_before(self) -> int:
        return self.before.total_bytes

    @property
    def bytes_after(self) -> int:
        return self.after.total_bytes

    @property
    def bytes_saved(self) -> int:
        return self.before.total_bytes - self.after.total_bytes

    @property
    def changed(self) -> bool:
        return bool(self.moved or self.removed or self.archived_transitions)


@dataclass(frozen=True)
class RestoreResult:
    execution_id: int
    before: Footprint
    after: Footprint
    values: int                             # moved values put back inline
    keys: int                               # removed temporary keys put back
    transitions: int                        # archived transitions put back


def footprint(session: Session, execution: WorkflowExecution) -> Footprint:
    rows = session.execute(
        select(WorkflowTransition.from_step, WorkflowTransition.to_step, WorkflowTransition.action,
               WorkflowTransition.user, WorkflowTransition.at, WorkflowTransition.additional_context)
        .where(WorkflowTransition.execution_id == execution.id)).all()
    history = sum(json_size([r[0], r[1], r[2], r[3], str(r[4]), r[5]]) for r in rows)
    return Footprint(json_size(dict(execution.context_data)), len(rows), history)


def compact(session: Session, execution: WorkflowExecution, policy: MemoryPolicy) -> MemoryOptimizationResult:
    """Apply ``policy`` to ``execution`` and commit (see the module docstring)."""
    execution_id = execution.id
    try:
        before = footprint(session, execution)
        context = dict(execution.context_data)
        compacted = dict(context)
        moved: list[WorkflowContextBlob] = []
        removed: list[WorkflowContextBlob] = []
        for key, value in context.items():
            if is_reference(value):
                continue                                     # moved already
            temporary = policy.temporary_prefix is not None and key.startswith(policy.temporary_prefix)
            size = json_size(value)
            if not temporary and size < policy.value_bytes:
                continue
            blob = WorkflowContextBlob(execution_id=execution_id, key=key, kind=REMOVED if temporary else MOVED,
                                       value=value, bytes=size, sha256=value_digest(value))
            (removed if temporary else moved).append(blob)
            del compacted[key]
        session.add_all(moved + removed)
        session.flush()                                      # 1. the blobs (their ids)
        for blob in moved:
            compacted[blob.key] = make_reference(blob.id, blob.bytes, blob.sha256)
        compacted = {key: compacted[key] for key in context if key in compacted}   # keep the key order
        archived = 0
        if policy.history_limit is not None:
            archived = _archive(session, execution, policy.history_limit)   # 2. the history
        if compacted != context:
            execution.context_data = compacted
            session.flush()                                  # 3. the row, version-checked
        after = footprint(session, execution)
        session.commit()
    except StaleDataError:
        session.rollback()
        raise StaleExecutionError(execution.workflow_class.rpartition(":")[2], execution_id,
                                  "optimize_memory_usage") from None
    except BaseException:
        session.rollback()
        raise
    return MemoryOptimizationResult(
        execution_id=execution_id, before=before, after=after,
        moved=tuple(MovedValue(shown_key(b.key), b.bytes) for b in moved),
        removed=tuple(MovedValue(shown_key(b.key), b.bytes) for b in removed),
        archived_transitions=archived)


def restore(session: Session, execution: WorkflowExecution) -> RestoreResult:
    """Put back everything ``compact`` took out of ``execution`` and commit."""
    execution_id = execution.id
    try:
        before = footprint(session, execution)
        context = dict(execution.context_data)
        restored_values = restored_keys = 0
        blobs = session.scalars(select(WorkflowContextBlob).where(WorkflowContextBlob.execution_id == execution_id)
                                .order_by(WorkflowContextBlob.id)).all()
        for blob in blobs:
            current = context.get(blob.key)
            if blob.kind == MOVED and is_reference(current) and cast(dict, current)["id"] == blob.id:
                context[blob.key] = blob.value
                restored_values += 1
            elif blob.kind == REMOVED and blob.key not in context:
                context[blob.key] = blob.value
                restored_keys += 1
        if blobs:
            session.execute(delete(WorkflowContextBlob).where(WorkflowContextBlob.execution_id == execution_id))
        transitions = _unarchive(session, execution)
        if context != execution.context_data:
            execution.context_data = context
        session.flush()
        after = footprint(session, execution)
        session.commit()
    except StaleDataError:
        session.rollback()
        raise StaleExecutionError(execution.workflow_class.rpartition(":")[2], execution_id, "restore") from None
    except BaseException:
        session.rollback()
        raise
    return RestoreResult(execution_id, before, after, restored_values, restored_keys, transitions)


def session_of(execution: WorkflowExecution) -> Session:
    session = object_session(execution)
    if session is None:
        identity = sa_inspect(execution).identity
        raise DetachedExecutionError(identity[0] if identity else None)
    return session


def _archive(session: Session, execution: WorkflowExecution, keep: int) -> int:
    live = _LIVE
    mine = live.c.execution_id == execution.id
    condition: Any = mine
    if keep > 0:
        cutoff = session.scalar(select(live.c.id).where(mine).order_by(live.c.id.desc()).offset(keep - 1).limit(1))
        if cutoff is None:
            return 0                                         # no more than ``keep`` transitions
        condition = mine & (live.c.id < cutoff)
    count = session.scalar(select(func.count()).select_from(live).where(condition)) or 0
    if count:
        columns = [live.c[name] for name in _TRANSITION_COLUMNS]
        session.execute(insert(_ARCHIVE).from_select(
            list(_TRANSITION_COLUMNS) + ["archived_at"],
            select(*columns, literal(utcnow(), UTCDateTime())).where(condition)))
        session.execute(delete(WorkflowTransition).where(
            WorkflowTransition.execution_id == execution.id,
            *([WorkflowTransition.id < cutoff] if keep > 0 else [])))
        session.expire(execution, ["transitions"])
    return int(count)


def _unarchive(session: Session, execution: WorkflowExecution) -> int:
    archive = _ARCHIVE
    mine = archive.c.execution_id == execution.id
    count = session.scalar(select(func.count()).select_from(archive).where(mine)) or 0
    if count:
        session.execute(insert(_LIVE).from_select(
            list(_TRANSITION_COLUMNS), select(*(archive.c[name] for name in _TRANSITION_COLUMNS)).where(mine)))
        session.execute(delete(archive).where(mine))
        session.expire(execution, ["transitions"])
    return int(count)

