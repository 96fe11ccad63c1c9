"""What the engine does: start executions, list and perform actions, resolve stored references.

Transactions: :func:`start_workflow` and :func:`perform_action` are units of work that COMMIT
the session on success. On any failure they roll the session back (so pending changes the
caller had in the same session are discarded too; keep unrelated work in another session),
and the in-memory execution is expired, reading back exactly what is stored.

    >>> execution = start_workflow(session, DocumentApproval, context={"priority": "high"})
    >>> execution.available_actions()
    ['submit_for_review', 'save_draft']
    >>> execution.perform_action("submit_for_review", user="alice")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from . import _context_refs, _models
from ._definition import Workflow
from ._json import checked_json_object
from .errors import (
    ActionFailure,
    DetachedExecutionError,
    InvalidActionError,
    NotAWorkflowError,
    StaleExecutionError,
    WorkflowClassNotFoundError,
    WorkflowInputError,
    WorkflowStorageError,
)

if TYPE_CHECKING:
    from ._models import WorkflowExecution, WorkflowTransition

# Instrumentation seam. An instrumentor (flowscope.telemetry.FlowscopeInstrumentor) sets these
# to wrap every start and action: ``wrapper(implementation, *args)`` must call
# ``implementation(*args)`` and return its result. Module globals, read at call time, so names
# imported before instrumentation (``from flowscope.workflows import start_workflow``) are
# instrumented too; ``None`` costs one global lookup.
start_wrapper: Callable[..., Any] | None = None
action_wrapper: Callable[..., Any] | None = None

# Caching seam. flowscope.performance.optimizations (QueryOptimizer.enable_caching) sets these
# to caches with ``get(key)`` (``None`` on a miss) and ``cache[key] = value``; ``None`` (the
# default) costs one global lookup. Keys: an import path -> its Workflow subclass;
# (Workflow subclass, step) -> that step's actions; (execution id, version, step, user) -> the
# actions its guards allow. ``version`` changes with every transition and status change, so a
# transition invalidates the cached actions of its execution. perform_action never reads the
# actions cache: it always runs the guards before acting.
workflow_class_cache: Any = None
step_actions_cache: Any = None
available_actions_cache: Any = None


MAX_USER_LENGTH = 255   # workflow_transitions.user and workflow_executions.assigned_to are String(255)


def _checked_user(value: Any, where: str) -> str | None:
    """``value`` if it is ``None`` or a string every supported database stores as given; a
    :class:`WorkflowInputError` otherwise (a user id as an int is the caller's to format)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WorkflowInputError(where, value, "must be a str (a user name or id) or None")
    if len(value) > MAX_USER_LENGTH or "\x00" in value or not _encodable(value):
        raise WorkflowInputError(where, value, f"must be at most {MAX_USER_LENGTH} characters of valid "
                                               f"Unicode (no NUL, no lone surrogate)")
    return str(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:   # a lone surrogate: no database driver can send it
        return False


def start_workflow(session: Session, workflow: type[Workflow], workflowable: Any = None,
                   context: dict[str, Any] | None = None, assigned_to: str | None = None) -> WorkflowExecution:
    """Create and commit a new execution of ``workflow`` at its initial step."""
    if start_wrapper is not None:
        return start_wrapper(_start_workflow, session, workflow, workflowable, context, assigned_to)
    return _start_workflow(session, workflow, workflowable, context, assigned_to)


def _start_workflow(session: Session, workflow: type[Workflow], workflowable: Any,
                    context: dict[str, Any] | None, assigned_to: str | None) -> WorkflowExecution:
    if not (isinstance(workflow, type) and issubclass(workflow, Workflow) and workflow is not Workflow):
        raise NotAWorkflowError(workflow)
    context = checked_json_object(context, "context")
    assigned_to = _checked_user(assigned_to, "start_workflow(assigned_to=...)")
    execution = _models.WorkflowExecution(
        workflow_class=workflow.import_path(),
        current_step=workflow.initial_step,
        status="completed" if workflow.steps[workflow.initial_step].is_final else "active",
        context_data=dict(context),
        assigned_to=assigned_to,
    )
    try:
        if workflowable is not None:
            execution.workflowable_type, execution.workflowable_id = _reference_to(session, workflowable)
        session.add(execution)
        _commit(session, f"start_workflow({workflow.__qualname__})")
    except BaseException:
        session.rollback()
        raise
    return execution


def _commit(session: Session, operation: str) -> None:
    """Commit the engine's writes; the database refusing them is a :class:`WorkflowStorageError`
    (after the rollback), other errors pass through unchanged."""
    try:
        session.commit()
    except DBAPIError as err:
        session.rollback()
        raise WorkflowStorageError(operation, err) from err


def resolve_import_path(path: str, execution_id: int | None = None) -> Any:
    """Import ``module:QualName``; a clear :class:`WorkflowClassNotFoundError` if it is gone."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise WorkflowClassNotFoundError(path, "expected 'module:QualName'", execution_id)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise WorkflowClassNotFoundError(path, f"module {module_name!r} cannot be imported ({err})",
                                         execution_id) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise WorkflowClassNotFoundError(path, f"module {module_name!r} has no {qualname!r}",
                                             execution_id) from None
    return target


def resolve_workflow_class(path: str, execution_id: int | None = None) -> type[Workflow]:
    cache = workflow_class_cache
    if cache is not None:
        cached = cache.get(path)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
    workflow = resolve_import_path(path, execution_id)
    if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
        raise WorkflowClassNotFoundError(path, "it is no longer a Workflow subclass", execution_id)
    if cache is not None:
        cache[path] = workflow
    return workflow


def load_workflowable(execution: WorkflowExecution) -> Any:
    # The session first: reading the columns of a detached, expired execution would raise
    # SQLAlchemy's DetachedInstanceError instead of the engine's DetachedExecutionError.
    session = _session_of(execution)
    if execution.workflowable_type is None:
        return None
    cls = resolve_import_path(execution.workflowable_type, execution.id)
    pk_type = sa_inspect(cls).primary_key[0].type.python_type
    return session.get(cls, pk_type(execution.workflowable_id))


def available_actions(execution: WorkflowExecution, user: str | None = None) -> list[str]:
    return _available_actions(execution, user, available_actions_cache)


def _available_actions(execution: WorkflowExecution, user: str | None, cache: Any) -> list[str]:
    if execution.status != "active":
        return []
    definition = execution.workflow_definition
    step = execution.current_step
    actions = _actions_at(definition, step)
    if not definition.guards:
        return actions
    key = None
    if cache is not None and execution.id is not None:
        key = (execution.id, execution.version, step, user)
        cached = cache.get(key)
        if cached is not None:
            return list(cached)
    instance = definition()
    allowed = [a for a in actions
               if all(getattr(instance, g)(execution, user) for g in definition.guards.get(a, ()))]
    if key is not None:
        cache[key] = tuple(allowed)
    return allowed


def _actions_at(definition: type[Workflow], step: str) -> list[str]:
    cache = step_actions_cache
    if cache is None:
        return definition.actions_at(step)
    key = (definition, step)
    actions = cache.get(key)
    if actions is None:
        actions = cache[key] = tuple(definition.actions_at(step))
    return list(actions)


def perform_action(execution: WorkflowExecution, action: str, user: str | None = None,
                   additional_context: dict[str, Any] | None = None) -> WorkflowTransition:
    """Run ``action``'s handlers, move to its target step, record the transition, commit.

    Raises :class:`InvalidActionError` (nothing written) when the action is unknown or not
    available, :class:`StaleExecutionError` when another session changed the execution first,
    and re-raises a handler's exception (with ``err.workflow_action`` attached) after rolling
    the whole action back.
    """
    if action_wrapper is not None:
        return action_wrapper(_perform_action, execution, action, user, additional_context)
    return _perform_action(execution, action, user, additional_context)


def _perform_action(execution: WorkflowExecution, action: str, user: str | None,
                    additional_context: dict[str, Any] | None) -> WorkflowTransition:
    user = _checked_user(user, "perform_action(user=...)")
    session = _session_of(execution)
    definition = execution.workflow_definition
    from_step = execution.current_step
    available = _available_actions(execution, user, None)   # guards always run before acting
    if action not in available:
        raise InvalidActionError(definition.__qualname__, execution.id, action, from_step, available,
                                 _why_unavailable(definition, execution, action))
    context = checked_json_object(additional_context, "additional_context")
    to_step = definition.steps[from_step].actions[action]
    try:
        instance = definition()
        handlers = definition.handlers.get(action, ())
        moved = _moved_values_in(session, execution) if handlers else None
        for handler in handlers:
            getattr(instance, handler)(execution, user, context)
        if moved:
            _moved_values_out(session, execution, moved)
        checked_json_object(execution.context_data, "context_data (as changed by the handlers)")
        if handlers:
            # MutableDict sees only top-level changes; a handler may have changed a nested
            # value in place (context_data["log"].append(...)), which would be silently lost.
            flag_modified(execution, "context_data")
        now = _models.utcnow()
        execution.current_step = to_step
        execution.updated_at = now
        if definition.steps[to_step].is_final:
            execution.status = "completed"
        transition = _models.WorkflowTransition(
            execution=execution, from_step=from_step, to_step=to_step, action=action,
            user=user, at=now, additional_context=dict(context))
        session.add(transition)
        _commit(session, f"{definition.__qualname__} execution {execution.id}: {action!r}")
    except StaleDataError:
        session.rollback()
        raise StaleExecutionError(definition.__qualname__, execution.id, action) from None
    except BaseException as err:
        session.rollback()
        failure = ActionFailure(definition.__qualname__, execution.id, action, from_step)
        if not hasattr(err, "workflow_action"):
            err.workflow_action = failure  # type: ignore[attr-defined]
            if hasattr(err, "add_note"):  # Python >= 3.11
                err.add_note(failure.describe())
        raise
    return transition


def set_status(execution: WorkflowExecution, operation: str, status: str, expected: str) -> None:
    """``pause``/``resume``: move status from ``expected`` to ``status`` and commit."""
    session = _session_of(execution)
    if execution.status != expected:
        raise InvalidActionError(execution.workflow_definition.__qualname__, execution.id, operation,
                                 execution.current_step, available_actions(execution),
                                 f"the execution is {execution.status}, not {expected}")
    try:
        execution.status = status
        execution.updated_at = _models.utcnow()
        _commit(session, f"{execution.workflow_definition.__qualname__} execution {execution.id}: {operation}")
    except StaleDataError:
        session.rollback()
        raise StaleExecutionError(execution.workflow_definition.__qualname__, execution.id, operation) from None
    except BaseException:
        session.rollback()
        raise


def _moved_values_in(session: Session, execution: WorkflowExecution) -> dict[str, Any] | None:
    """Give handlers the context values a MemoryOptimizer moved out (see _context_resolution).

    Nothing moved (the usual case) costs one scan of the context's top-level values.
    """
    if not _context_refs.has_references(execution.context_data):
        return None
    # Imported here: it declares tables on Base, which _models (importing this module) has
    # not defined yet when this module is first imported.
    from ._context_resolution import swap_in

    return swap_in(session, execution)


def _moved_values_out(session: Session, execution: WorkflowExecution, moved: dict[str, Any]) -> None:
    from ._context_resolution import swap_back

    swap_back(session, execution, moved)


def _why_unavailable(definition: type[Workflow], execution: WorkflowExecution, action: str) -> str:
    if action not in definition.all_actions():
        return f"{definition.__qualname__} has no action {action!r}"
    if execution.status != "active":
        return f"the execution is {execution.status}"
    if action in definition.actions_at(execution.current_step):
        return "a guard refused it"
    return f"step {execution.current_step!r} does not offer it"


def _reference_to(session: Session, record: Any) -> tuple[str, str]:
    try:
        mapper = sa_inspect(type(record))
    except Exception:
        raise TypeError(f"workflowable must be a mapped SQLAlchemy instance, got {type(record).__name__}") from None
    if len(mapper.primary_key) != 1:
        raise TypeError(f"workflowable {type(record).__name__} must have a single-column primary key")
    identity = mapper.primary_key_from_instance(record)[0]
    if identity is None:
        session.add(record)
        session.flush()
        identity = mapper.primary_key_from_instance(record)[0]
    cls = type(record)
    return f"{cls.__module__}:{cls.__qualname__}", str(identity)


def _session_of(execution: WorkflowExecution) -> Session:
    session = object_session(execution)
    if session is None:
        identity = sa_inspect(execution).identity
        raise DetachedExecutionError(identity[0] if identity else None)
    return session
