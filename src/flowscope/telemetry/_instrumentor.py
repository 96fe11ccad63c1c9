"""``FlowscopeInstrumentor``: every workflow start and action becomes an operation span.

    >>> from flowscope.telemetry import FlowscopeInstrumentor
    >>> FlowscopeInstrumentor().instrument()
    >>> execution.perform_action("approve")   # span "DocumentApproval.approve", queries counted
    >>> FlowscopeInstrumentor().uninstrument()  # everything restored

Registered as the ``flowscope`` ``opentelemetry_instrumentor`` entry point, so
``opentelemetry-instrument python app.py`` picks it up. Supported versions: see package.py.

Spans: ``<Workflow>.start`` and ``<Workflow>.<action>``, with ``workflow.class``,
``workflow.execution.id``, ``workflow.step`` (before), ``workflow.action``, ``workflow.step.to``
and the memory and query attributes of :func:`flowscope.operation`. The span opens before the
execution is read, so the queries that load it are counted in the action.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from sqlalchemy import inspect as sa_inspect

from ..workflows import _runtime
from . import _attributes as attr
from ._autoinstrument import join_provider, undo_join
from ._operation import operation
from .package import _instruments
from .sql._listeners import install_query_listeners, uninstall_query_listeners


def _traced_start(implementation: Callable[..., Any], session: Any, workflow: Any, *args: Any) -> Any:
    name = f"{getattr(workflow, '__qualname__', workflow)}.start"
    measured = operation(name, **{attr.WORKFLOW_CLASS: _import_path(workflow), attr.ACTION: "start"})
    with measured as span:
        execution = implementation(session, workflow, *args)
        if span.is_recording():
            # Read from the identity key and the class: execution.id / .current_step would
            # reload the row that the commit just expired (one more query per start).
            identity = sa_inspect(execution).identity
            late = {} if identity is None else {attr.EXECUTION_ID: identity[0]}
            late[attr.STEP_TO] = workflow.initial_step
            measured.late_attributes = late   # recorded with the end attributes, one SDK call
        return execution


def _traced_action(implementation: Callable[..., Any], execution: Any, action: str, *args: Any) -> Any:
    measured = operation("workflow.action", **{attr.ACTION: action})
    with measured as span:
        if span.is_recording():
            measured.late_attributes = _describe_action(span, execution, action)
        return implementation(execution, action, *args)


def _describe_action(span: Any, execution: Any, action: str) -> dict[str, Any] | None:
    """Name the span now; return its workflow attributes, recorded when it ends.

    Design decision: the attributes ride on the operation's single end-of-span recording
    (``operation.late_attributes``) instead of a ``set_attributes`` call of their own: one
    SDK call per action instead of two (bench_end_to_end: ~12 us per action before).
    """
    try:
        workflow_class = execution.workflow_class
        step = execution.current_step
        class_name = workflow_class.rpartition(":")[2]
        name = f"{class_name}.{action}"
        attributes = {attr.OPERATION: name, attr.WORKFLOW_CLASS: workflow_class,
                      attr.EXECUTION_ID: execution.id, attr.STEP: step}
        target = execution.workflow_definition.steps.get(step)
        if target is not None and action in target.actions:
            attributes[attr.STEP_TO] = target.actions[action]
        span.update_name(name)
        return attributes
    except Exception:  # e.g. a detached execution: the action itself reports that, typed
        return None


def _import_path(workflow: Any) -> str:
    return f"{getattr(workflow, '__module__', '?')}:{getattr(workflow, '__qualname__', workflow)}"


class FlowscopeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument flowscope's workflow engine and count queries of every SQLAlchemy engine."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        _runtime.start_wrapper = _traced_start
        _runtime.action_wrapper = _traced_action
        install_query_listeners()
        join_provider(kwargs.get("tracer_provider"))   # now, or at the first span (see _autoinstrument)

    def _uninstrument(self, **kwargs: Any) -> None:
        _runtime.start_wrapper = None
        _runtime.action_wrapper = None
        uninstall_query_listeners()
        undo_join()
