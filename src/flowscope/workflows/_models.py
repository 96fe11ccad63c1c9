"""SQLAlchemy 2 typed models: workflow executions and their transition history.

    >>> engine = create_engine("sqlite:///flowscope.db")
    >>> create_schema(engine)

Design decisions:
- ``version`` is SQLAlchemy's ``version_id_col``: every UPDATE says ``WHERE version = :seen``,
  so of two sessions acting on the same execution exactly one wins; the other's flush matches
  no row and becomes :class:`StaleExecutionError` (no lock held while handlers run).
- ``transitions`` is a plain lazy relationship, as ORMs default to. That is deliberate: it is
  where N+1 patterns come from in real applications, and what flowscope's optimizer finds.
  New transitions are added through the many-to-one side, which never loads the history.
- The workflowable record is a polymorphic reference (``module:Class`` + primary key as text),
  resolved with ``Session.get`` (identity-map first).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, TypeDecorator
from sqlalchemy.engine import Engine
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from . import _runtime

if TYPE_CHECKING:
    from ._definition import Workflow


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    SQLite has no timezone type and hands back naive datetimes; PostgreSQL hands back aware
    ones. Values are stored in UTC and always read back aware, so they compare everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    """Declarative base of flowscope's own tables."""


class WorkflowExecution(Base):
    """One run of a workflow definition, persisted."""

    __tablename__ = "workflow_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_class: Mapped[str] = mapped_column(String(255), index=True)
    current_step: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    context_data: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON), default=dict)
    workflowable_type: Mapped[str | None] = mapped_column(String(255))
    workflowable_id: Mapped[str | None] = mapped_column(String(64))
    assigned_to: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    transitions: Mapped[list[WorkflowTransition]] = relationship(
        back_populates="execution",
        order_by="WorkflowTransition.id",
        cascade="all, delete-orphan",
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (Index("ix_workflow_executions_workflowable", "workflowable_type", "workflowable_id"),)

    # Behaviour lives in _runtime.py; these thin methods keep the model readable.
    @property
    def workflow_definition(self) -> type[Workflow]:
        """The :class:`Workflow` subclass named by ``workflow_class``."""
        return _runtime.resolve_workflow_class(self.workflow_class, self.id)

    @property
    def workflowable(self) -> Any:
        """The record this execution is about, or ``None``."""
        return _runtime.load_workflowable(self)

    def resolved_context(self) -> dict[str, Any]:
        """A new dict: ``context_data`` with the values a MemoryOptimizer moved to the
        ``workflow_context_blobs`` side table read back in (one query if any, none otherwise).

        ``context_data`` itself is the stored form; handlers are given resolved values.
        """
        from ._context_resolution import resolved_context

        return resolved_context(self)

    def available_actions(self, user: str | None = None) -> list[str]:
        """Actions that can be performed now (declared at the current step, guards passed)."""
        return _runtime.available_actions(self, user)

    def perform_action(self, action: str, user: str | None = None,
                       additional_context: dict[str, Any] | None = None) -> WorkflowTransition:
        """Perform ``action`` and commit; see :func:`flowscope.workflows.perform_action`."""
        return _runtime.perform_action(self, action, user, additional_context)

    def pause(self) -> None:
        """Set status to paused (no action is available until :meth:`resume`) and commit."""
        _runtime.set_status(self, "pause", "paused", expected="active")

    def resume(self) -> None:
        """Set a paused execution back to active and commit."""
        _runtime.set_status(self, "resume", "active", expected="paused")

    def __repr__(self) -> str:
        return (f"<WorkflowExecution id={self.id} {self.workflow_class} step={self.current_step!r} "
                f"status={self.status!r}>")


class WorkflowTransition(Base):
    """One performed action: from_step -> to_step, who, when, and the action's extra context."""

    __tablename__ = "workflow_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("workflow_executions.id", ondelete="CASCADE"), index=True)
    from_step: Mapped[str] = mapped_column(String(100))
    to_step: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    user: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    additional_context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    execution: Mapped[WorkflowExecution] = relationship(back_populates="transitions")

    def __repr__(self) -> str:
        return f"<WorkflowTransition {self.from_step} --{self.action}--> {self.to_step}>"


def create_schema(engine: Engine) -> None:
    """Create flowscope's tables on ``engine`` if they do not exist (safe to call twice)."""
    Base.metadata.create_all(engine)


# The side tables of moved context values and archived transitions (MemoryOptimizer) belong
# to the same metadata; imported last because they are declared on ``Base``.
from . import _side_tables  # noqa: E402,F401
