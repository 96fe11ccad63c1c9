"""Workflowable records for load tests: the defaults for flowscope's example workflows.

    >>> load_test(DocumentApproval)          # each execution gets its own generated Document
    >>> load_test(MyWorkflow, workflowable_factory=lambda session, index: Invoice(number=index))

A ``workflowable_factory(session, index)`` returns the record execution ``index`` is about
(added to the session, or at least addable), or ``None``; it runs before the clock starts, in
the worker that runs the execution, and its records are committed together.

Design decisions:
- The examples' seed helpers already generate realistic records; the defaults call them with
  one ``random.Random(index)`` each, so execution ``index`` always gets the same record.
- Shared data an example needs (the product catalog, the staff) is created once, before any
  worker starts (``prepare``): created concurrently, it would race on unique keys. Products
  get a stock of 1,000,000 so that a long load test measures picking, not running out.
- Factories and ``prepare`` functions are module-level functions, so worker processes
  (``mode="processes"``) can import them by name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

WorkflowableFactory = Callable[[Session, int], Any]
LOAD_TEST_STOCK = 1_000_000


@dataclass(frozen=True)
class WorkloadDefaults:
    """What a workflow needs before it can be load-tested: tables, shared data, records."""

    create_tables: Callable[[Engine], None]
    prepare: Callable[[Session], None] | None
    factory: WorkflowableFactory


def defaults_for(workflow: type) -> WorkloadDefaults | None:
    """The defaults of one of flowscope's example workflows, or ``None`` for any other class."""
    from ..examples import DocumentApproval, EmployeeOnboarding, OrderFulfillment

    table: dict[type, WorkloadDefaults] = {
        DocumentApproval: WorkloadDefaults(create_example_tables, None, document_for),
        OrderFulfillment: WorkloadDefaults(create_example_tables, stock_catalog, order_for),
        EmployeeOnboarding: WorkloadDefaults(create_example_tables, hire_staff, employee_for),
    }
    return table.get(workflow)


def create_example_tables(engine: Engine) -> None:
    from ..examples import create_example_schema

    create_example_schema(engine)


def document_for(session: Session, index: int) -> Any:
    from ..examples import seed_documents

    return seed_documents(session, 1, random.Random(index))[0]


def stock_catalog(session: Session) -> None:
    from ..examples import Product, seed_products

    if session.scalar(select(Product.id).limit(1)) is None:
        seed_products(session, stock=LOAD_TEST_STOCK)


def order_for(session: Session, index: int) -> Any:
    from ..examples import seed_orders

    return seed_orders(session, 1, random.Random(index))[0]


def hire_staff(session: Session) -> None:
    from ..examples import Staff, seed_staff

    if session.scalar(select(Staff.id).limit(1)) is None:
        seed_staff(session)


def employee_for(session: Session, index: int) -> Any:
    from ..examples import seed_employees

    return seed_employees(session, 1, random.Random(index))[0]
