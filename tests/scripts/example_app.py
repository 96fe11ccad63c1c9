"""Subprocess target: an application running the three example workflows on a SQLite file.

    python tests/scripts/example_app.py DATABASE_PATH MODE

MODE ``configure``: the application calls ``flowscope.configure()`` itself and
``telemetry.force_flush()`` at the end (tests/test_otlp_export.py). MODE ``plain``: the
application has no telemetry code at all apart from one ``flowscope.operation`` block around
its batch (that is its API, not set-up); whatever instruments it comes from outside:
FLOWSCOPE_AUTO_INSTRUMENT or opentelemetry-instrument (tests/test_auto_instrument_e2e.py).

Inside one ``flowscope.operation("nightly_batch")`` it starts one execution of each example
workflow and walks it to a final step (EmployeeOnboarding's complete_orientation is the
planted N+1). Prints one JSON line: the operation span names expected below the batch, the
execution ids, and what telemetry was set up (read, not configured, in plain mode).
"""

from __future__ import annotations

import json
import sys

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import flowscope
from flowscope.examples import (
    Document,
    DocumentApproval,
    Employee,
    EmployeeOnboarding,
    Order,
    OrderFulfillment,
    create_example_schema,
    seed_documents,
    seed_employees,
    seed_orders,
)
from flowscope.workflows import start_workflow

PATHS = {
    DocumentApproval: (Document, [("submit_for_review", None), ("approve", "rita")]),
    OrderFulfillment: (Order, [("pay", "customer"), ("pick", "warehouse"), ("ship", "warehouse"),
                               ("deliver", "courier")]),
    EmployeeOnboarding: (Employee, [("order_equipment", "hr"), ("create_accounts", "it"),
                                    ("start_orientation", "trainer"), ("complete_orientation", "trainer")]),
}


def main() -> None:
    database, mode = sys.argv[1], sys.argv[2]
    telemetry = flowscope.configure() if mode == "configure" else None
    engine = create_engine(f"sqlite:///{database}")
    create_example_schema(engine)
    with Session(engine) as session:
        records = {DocumentApproval: seed_documents(session, 1)[0].id, OrderFulfillment: seed_orders(session, 1)[0].id,
                   EmployeeOnboarding: seed_employees(session, 1, role="engineer")[0].id}
        session.commit()

    spans, executions = [], {}
    with flowscope.operation("nightly_batch", batch="e2e") as batch:
        for workflow, (model, path) in PATHS.items():
            with Session(engine) as session:
                record = session.get(model, records[workflow])
                execution = start_workflow(session, workflow, workflowable=record)
                spans.append(f"{workflow.__name__}.start")
                for action, user in path:
                    execution.perform_action(action, user=user or getattr(record, "author", None))
                    spans.append(f"{workflow.__name__}.{action}")
                executions[workflow.__name__] = execution.id
    engine.dispose()

    flushed = telemetry.force_flush() if telemetry is not None else None
    current = flowscope.telemetry.current_telemetry()
    print(json.dumps({
        "batch_trace_id": format(batch.get_span_context().trace_id, "032x"),
        "batch_span_id": format(batch.get_span_context().span_id, "016x"),
        "spans": spans, "executions": executions, "flushed": flushed,
        "exporter": current.exporter if current else None,
        "owns_provider": current.owns_provider if current else None,
        "metrics_exporter": current.metrics_exporter if current else None,
        "warnings": current.warnings if current else None,
    }), flush=True)


if __name__ == "__main__":
    main()
