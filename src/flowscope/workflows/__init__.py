"""The workflow engine: definitions, executions persisted with SQLAlchemy, transition history.

    >>> from sqlalchemy import create_engine
    >>> from sqlalchemy.orm import Session
    >>> from flowscope.workflows import Workflow, step, on, start_workflow, create_schema
    >>> class DocumentApproval(Workflow):
    ...     draft = step(submit_for_review="pending_review")
    ...     pending_review = step(approve="approved", reject="draft")
    ...     approved = step()
    >>> engine = create_engine("sqlite:///flowscope.db")
    >>> create_schema(engine)
    >>> with Session(engine) as session:
    ...     execution = start_workflow(session, DocumentApproval)
    ...     execution.perform_action("submit_for_review", user="alice")   # commits
    ...     execution.current_step
    'pending_review'

This package knows nothing of telemetry; :mod:`flowscope.telemetry` instruments it.
"""

from ._definition import StepDefinition, Workflow, guard, on, step
from ._models import Base, WorkflowExecution, WorkflowTransition, create_schema
from ._runtime import perform_action, start_workflow
from .errors import (
    ActionFailure,
    ContextSerializationError,
    DetachedExecutionError,
    InvalidActionError,
    NotAWorkflowError,
    StaleExecutionError,
    WorkflowClassNotFoundError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowInputError,
    WorkflowStorageError,
)

DEFAULT_DATABASE_URL = "sqlite:///flowscope.db"

__all__ = [
    "ActionFailure", "Base", "ContextSerializationError", "DEFAULT_DATABASE_URL", "DetachedExecutionError",
    "InvalidActionError", "NotAWorkflowError", "StaleExecutionError", "StepDefinition", "Workflow",
    "WorkflowClassNotFoundError", "WorkflowDefinitionError", "WorkflowError", "WorkflowExecution", "WorkflowInputError",
    "WorkflowStorageError", "WorkflowTransition", "create_schema", "guard", "on", "perform_action", "start_workflow",
    "step",
]
