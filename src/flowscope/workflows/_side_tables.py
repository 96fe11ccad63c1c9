"""Side tables: context values moved out of ``context_data``, and archived transitions.

Written by :class:`flowscope.performance.optimizations.MemoryOptimizer`, read by the engine
(moved values are resolved for handlers) and by ``MemoryOptimizer.restore()``, which puts
everything back.

Design decisions:
- Both tables hang off ``workflow_executions`` with ``ON DELETE CASCADE`` and are part of
  flowscope's own metadata, so ``create_schema`` creates them and deleting an execution
  deletes its side rows (on SQLite only with ``PRAGMA foreign_keys=ON``, as for transitions).
- ``workflow_context_blobs.kind`` is ``moved`` (a reference was left in the context) or
  ``removed`` (a temporary key taken out of the context; kept only so ``restore()`` can put
  it back). Keys are ``Text``: context keys have no length limit.
- An archived transition keeps its id, so restoring it puts the history back exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ._models import Base, UTCDateTime, utcnow

MOVED = "moved"
REMOVED = "removed"


class WorkflowContextBlob(Base):
    """A context value stored outside ``context_data`` (see the module docstring)."""

    __tablename__ = "workflow_context_blobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("workflow_executions.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default=MOVED)
    value: Mapped[Any] = mapped_column(JSON(none_as_null=False))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<WorkflowContextBlob {self.kind} key={self.key!r} bytes={self.bytes}>"


class WorkflowTransitionArchive(Base):
    """A transition moved out of ``workflow_transitions`` (same id and columns)."""

    __tablename__ = "workflow_transition_archive"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("workflow_executions.id", ondelete="CASCADE"), index=True)
    from_step: Mapped[str] = mapped_column(String(100))
    to_step: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    user: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    additional_context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<WorkflowTransitionArchive {self.from_step} --{self.action}--> {self.to_step}>"
