"""Typed errors raised by the workflow engine.

Every error says what was wrong and what to do about it; none of them is raised after
anything was written (the engine validates first and rolls back on failure).

    >>> from flowscope.workflows import InvalidActionError
    >>> try:
    ...     execution.perform_action("publish")
    ... except InvalidActionError as err:
    ...     print(err.available_actions)
"""

from __future__ import annotations

from dataclasses import dataclass


class WorkflowError(Exception):
    """Base class of every error the workflow engine raises."""


class WorkflowDefinitionError(WorkflowError):
    """A workflow class is malformed (raised when the class statement runs)."""

    def __init__(self, workflow: str, message: str, step: str | None = None, target: str | None = None):
        self.workflow = workflow
        self.step = step
        self.target = target
        super().__init__(f"workflow {workflow}: {message}")


class WorkflowInputError(WorkflowError, ValueError):
    """A value the engine would store is not one every supported database can store (a user or
    assignee that is not a short string); raised before anything is written."""

    def __init__(self, where: str, value: object, reason: str):
        self.where = where
        super().__init__(f"{where} {reason}, got {type(value).__name__} {value!r:.80}")


class InvalidActionError(WorkflowError):
    """The action does not exist, or is not available at the execution's current step."""

    def __init__(self, workflow: str, execution_id: int | None, action: str, current_step: str,
                 available_actions: list[str], reason: str):
        self.workflow = workflow
        self.execution_id = execution_id
        self.action = action
        self.current_step = current_step
        self.available_actions = list(available_actions)
        choices = ", ".join(available_actions) if available_actions else "none"
        super().__init__(
            f"{workflow} execution {execution_id}: cannot perform {action!r} at step "
            f"{current_step!r}: {reason}. Available actions: {choices}."
        )


class StaleExecutionError(WorkflowError):
    """Another session changed the execution since this one loaded it (optimistic locking)."""

    def __init__(self, workflow: str, execution_id: int | None, action: str):
        self.workflow = workflow
        self.execution_id = execution_id
        self.action = action
        super().__init__(
            f"{workflow} execution {execution_id}: {action!r} was not applied because another "
            "session changed this execution first. Reload it (session.refresh(execution)) and retry."
        )


class WorkflowClassNotFoundError(WorkflowError):
    """A stored import path (workflow class or workflowable type) can no longer be imported."""

    def __init__(self, path: str, reason: str, execution_id: int | None = None):
        self.path = path
        self.execution_id = execution_id
        where = f" (execution {execution_id})" if execution_id is not None else ""
        super().__init__(
            f"cannot import {path!r}{where}: {reason}. Was the class renamed or moved? "
            "Restore it, or update the stored path."
        )


class ContextSerializationError(WorkflowError, TypeError):
    """Context data that cannot be stored as JSON; raised before anything is written."""

    def __init__(self, where: str, reason: str):
        self.where = where
        super().__init__(f"{where} must be JSON-serializable (dicts, lists, str, int, float, bool, None): {reason}")


class WorkflowStorageError(WorkflowError):
    """The database did not store an engine write (locked, read-only, full, unreachable, a
    constraint): the transaction was rolled back, nothing was written. ``original`` is the
    driver-level SQLAlchemy error (also the ``__cause__``), for code that tells them apart.

    The message keeps the first line of the driver's own message only: the rest of a
    SQLAlchemy error carries the statement and its parameter values.
    """

    def __init__(self, operation: str, original: BaseException):
        self.operation = operation
        self.original = original
        driver = getattr(original, "orig", None) or original
        reason = (str(driver).strip().splitlines() or [type(driver).__name__])[0][:200]
        super().__init__(
            f"{operation}: the database did not store it ({type(driver).__name__}: {reason}); the "
            "transaction was rolled back and nothing was written. Check that the database is reachable "
            "and writable (locks, permissions, disk space, constraints), then retry."
        )


@dataclass(frozen=True)
class ActionFailure:
    """What was being done when an action handler raised.

    The engine rolls the action back and re-raises the handler's own exception unchanged in
    type, with this record attached as ``err.workflow_action`` and a note added to it:

        >>> try:
        ...     execution.perform_action("ship")
        ... except ValueError as err:
        ...     err.workflow_action.execution_id
    """

    workflow: str
    execution_id: int | None
    action: str
    step: str

    def describe(self) -> str:
        return (f"while performing {self.action!r} at step {self.step!r} of {self.workflow} "
                f"execution {self.execution_id} (rolled back, nothing was written)")


class NotAWorkflowError(WorkflowError, TypeError):
    """Something that is not a :class:`~flowscope.workflows.Workflow` subclass was given as one."""

    def __init__(self, value: object):
        self.value = value
        super().__init__(
            f"{value!r} is not a workflow definition: pass a subclass of flowscope.workflows.Workflow"
        )


class DetachedExecutionError(WorkflowError):
    """The execution is not attached to a session, so the engine cannot load or save it."""

    def __init__(self, execution_id: int | None):
        super().__init__(
            f"workflow execution {execution_id} is not attached to a session: load it with "
            "session.get(WorkflowExecution, id) or add it with session.add(execution) first"
        )
