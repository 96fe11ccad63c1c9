"""What a workflow needs before it can be load-tested: its tables, shared data, one record per execution.

    >>> register_workload(Invoicing, WorkloadDefaults(create_tables=create_invoice_tables,
    ...                                               prepare=None, factory=invoice_for))
    >>> load_test(Invoicing)             # each execution gets invoice_for(session, index)
    >>> load_test(MyWorkflow, workflowable_factory=lambda session, index: Invoice(number=index))

A ``workflowable_factory(session, index)`` returns the record execution ``index`` is about
(added to the session, or at least addable), or ``None``; it runs before the clock starts, in
the worker that runs the execution, and its records are committed together.

Design decision: a registry keyed by workflow class, filled by the code that owns the workflow
(``flowscope.examples`` registers its three when imported), so the load-test machinery knows no
workflow in particular. Factories and ``prepare`` functions should be module-level functions,
so worker processes (``mode="processes"``) can import them by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

WorkflowableFactory = Callable[[Session, int], Any]


@dataclass(frozen=True)
class WorkloadDefaults:
    """What a workflow needs before it can be load-tested: tables, shared data, records."""

    create_tables: Callable[[Engine], None]
    prepare: Callable[[Session], None] | None
    factory: WorkflowableFactory


_registry: dict[type, WorkloadDefaults] = {}
_lock = threading.Lock()


def register_workload(workflow: type, defaults: WorkloadDefaults) -> None:
    """Make ``defaults`` what ``load_test(workflow)`` uses when not told otherwise."""
    if not isinstance(defaults, WorkloadDefaults):
        raise TypeError(f"defaults must be a WorkloadDefaults, got {type(defaults).__name__}")
    with _lock:
        _registry[workflow] = defaults


def defaults_for(workflow: type) -> WorkloadDefaults | None:
    """The registered defaults of ``workflow``, or ``None``."""
    with _lock:
        return _registry.get(workflow)
