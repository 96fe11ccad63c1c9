"""Workflowable records for load tests: the defaults of flowscope's example workflows.

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
- Registered when ``flowscope.examples`` is imported (``benchmark/_workloads.py``'s registry):
  the load-test machinery knows no example.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..benchmark._workloads import WorkloadDefaults, register_workload
from .document_approval import DocumentApproval, seed_documents
from .employee_onboarding import EmployeeOnboarding, Staff, seed_employees, seed_staff
from .order_fulfillment import OrderFulfillment, Product, seed_orders, seed_products

LOAD_TEST_STOCK = 1_000_000


def register_example_workloads() -> None:
    """Register the three example workflows' defaults with the load tests."""
    register_workload(DocumentApproval, WorkloadDefaults(create_example_tables, None, document_for))
    register_workload(OrderFulfillment, WorkloadDefaults(create_example_tables, stock_catalog, order_for))
    register_workload(EmployeeOnboarding, WorkloadDefaults(create_example_tables, hire_staff, employee_for))


def create_example_tables(engine: Engine) -> None:
    from . import create_example_schema  # defined by the package, which imports this module

    create_example_schema(engine)


def document_for(session: Session, index: int) -> Any:
    return seed_documents(session, 1, random.Random(index))[0]


def stock_catalog(session: Session) -> None:
    if session.scalar(select(Product.id).limit(1)) is None:
        seed_products(session, stock=LOAD_TEST_STOCK)


def order_for(session: Session, index: int) -> Any:
    return seed_orders(session, 1, random.Random(index))[0]


def hire_staff(session: Session) -> None:
    if session.scalar(select(Staff.id).limit(1)) is None:
        seed_staff(session)


def employee_for(session: Session, index: int) -> Any:
    return seed_employees(session, 1, random.Random(index))[0]
