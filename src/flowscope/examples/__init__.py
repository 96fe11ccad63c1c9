"""Three example workflows doing real database work, for the demo, benchmarks and tests.

    >>> from sqlalchemy import create_engine
    >>> from sqlalchemy.orm import Session
    >>> from flowscope.examples import DocumentApproval, create_example_schema, seed_documents
    >>> from flowscope.workflows import start_workflow
    >>> engine = create_engine("sqlite:///flowscope.db")
    >>> create_example_schema(engine)       # flowscope's tables and the example_* tables
    >>> with Session(engine) as session:
    ...     [document] = seed_documents(session, 1)
    ...     session.commit()
    ...     execution = start_workflow(session, DocumentApproval, workflowable=document)
    ...     execution.perform_action("submit_for_review", user=document.author)

- :mod:`.document_approval`: ``DocumentApproval`` over ``Document`` (guards, context data).
- :mod:`.order_fulfillment`: ``OrderFulfillment`` over ``Order``/``OrderLine``/``Product``; its
  pick handler is the clean twin (one query for all lines, whatever their number).
- :mod:`.employee_onboarding`: ``EmployeeOnboarding`` over ``Employee``/``OnboardingTask``/``Staff``;
  its ``complete_orientation`` handler is deliberately N+1 (``OnboardingTask.assignee``).

Handlers get their session with ``sqlalchemy.orm.object_session(execution)``; the engine
commits after them (or rolls everything back if one raises). Seed helpers add and flush, and
leave committing to the caller.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from flowscope.workflows import create_schema

from ._base import ExampleBase
from .document_approval import Document, DocumentApproval, EmptyDocumentError, seed_documents
from .employee_onboarding import (
    CHECKLIST,
    ENGINEERING_CHECKLIST,
    Employee,
    EmployeeOnboarding,
    OnboardingTask,
    Staff,
    seed_employees,
    seed_staff,
)
from .order_fulfillment import Order, OrderFulfillment, OrderLine, OutOfStockError, Product, seed_orders, seed_products

EXAMPLE_WORKFLOWS = (DocumentApproval, OrderFulfillment, EmployeeOnboarding)


def create_example_schema(engine: Engine) -> None:
    """Create flowscope's tables and the example tables if they do not exist (safe to call twice)."""
    create_schema(engine)
    ExampleBase.metadata.create_all(engine)


def reset_example_tables(engine: Engine) -> None:
    """Drop and recreate the example tables (``example_*``) only; flowscope's tables are untouched."""
    ExampleBase.metadata.drop_all(engine)
    ExampleBase.metadata.create_all(engine)


from ._load_defaults import register_example_workloads  # noqa: E402  (after the package's names)

register_example_workloads()

__all__ = [
    "CHECKLIST", "Document", "DocumentApproval", "ENGINEERING_CHECKLIST", "EXAMPLE_WORKFLOWS", "Employee",
    "EmployeeOnboarding", "EmptyDocumentError", "ExampleBase", "OnboardingTask", "Order", "OrderFulfillment",
    "OrderLine", "OutOfStockError", "Product", "Staff", "create_example_schema", "reset_example_tables",
    "seed_documents", "seed_employees", "seed_orders", "seed_products", "seed_staff",
]
