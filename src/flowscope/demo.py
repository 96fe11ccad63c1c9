"""The demo: run the example workflows against a real database and time every action.

    >>> from rich.console import Console
    >>> from flowscope.demo import run_demo, print_demo
    >>> result = run_demo("sqlite:///flowscope.db", executions_per_workflow=20)
    >>> print_demo(result, Console())
    >>> result.workflows[0].actions[0].mean_seconds

Design decisions:
- Data (:class:`DemoResult`, durations kept as samples) is separate from printing, so reports
  and benchmarks can build on the same run.
- A clean slate for demo data without destroying anyone else's: the ``example_*`` tables are
  dropped and recreated, executions of the example workflows left by an earlier demo are
  deleted, and flowscope's tables are only created if missing; other executions in the same
  database are never touched.
- Paths are deterministic per execution index (most documents approved, some sent back or
  rejected and resubmitted; most orders delivered, some cancelled); ``seed`` only varies the
  generated data. Every execution ends at a final step.
- One Session per execution, as a web request would have; ``time.perf_counter`` around each
  ``start_workflow`` and ``perform_action`` (handlers, flush and commit included).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from .examples import (
    EXAMPLE_WORKFLOWS,
    Document,
    DocumentApproval,
    Employee,
    EmployeeOnboarding,
    OnboardingTask,
    Order,
    OrderFulfillment,
    reset_example_tables,
    seed_documents,
    seed_employees,
    seed_orders,
    seed_products,
)
from .performance import ProcessReport, print_process_report, process_report
from .performance.optimizations import AutoOptimizationResult, PerformanceOptimizer
from .telemetry import configure
from .workflows import (
    DEFAULT_DATABASE_URL,
    Workflow,
    WorkflowExecution,
    WorkflowTransition,
    create_schema,
    start_workflow,
)

__all__ = ["ActionTiming", "DatabaseURLError", "DemoResult", "WorkflowRun", "open_database", "print_demo",
           "representative_operation", "run_demo"]


OPTIMIZATION_RUN_EXECUTIONS = 20   # onboardings per before/after measurement of the optimization loop


class DatabaseURLError(ValueError):
    """The database URL cannot be parsed, needs a driver that is not installed, or does not connect."""


@dataclass(frozen=True)
class ActionTiming:
    """Every timed call of one action (or of ``start_workflow``): the samples, in seconds."""

    action: str
    durations: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.durations)

    @property
    def total_seconds(self) -> float:
        return sum(self.durations)

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.count if self.durations else 0.0

    @property
    def max_seconds(self) -> float:
        return max(self.durations, default=0.0)


@dataclass(frozen=True)
class WorkflowRun:
    """One example workflow's share of the demo."""

    workflow: str                      # class name, e.g. "DocumentApproval"
    import_path: str                   # as stored in WorkflowExecution.workflow_class
    executions: int
    completed: int                     # executions whose status is "completed"
    final_steps: Mapping[str, int]     # step the executions ended at -> how many
    starts: ActionTiming               # the start_workflow calls
    actions: tuple[ActionTiming, ...]  # per action, in the order first performed
    total_seconds: float               # wall time of all executions (seeding excluded)
    execution_ids: tuple[int, ...] = ()

    @property
    def transitions(self) -> int:
        return sum(a.count for a in self.actions)

    @property
    def action_seconds(self) -> float:
        return sum(a.total_seconds for a in self.actions)

    @property
    def mean_action_seconds(self) -> float:
        return self.action_seconds / self.transitions if self.transitions else 0.0


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` did and how long it took."""

    database_url: str                  # password hidden
    dialect: str                       # "sqlite", "postgresql", ...
    executions_per_workflow: int
    seed: int
    removed_executions: int            # executions of the examples left by an earlier run, deleted
    setup_seconds: float               # schema reset and seeding
    total_seconds: float
    workflows: tuple[WorkflowRun, ...] = field(default_factory=tuple)
    report: ProcessReport | None = None   # flowscope's measurements of this run
    # the optimization loop: auto_optimize() on ``report``'s findings, onboarding run again
    optimization: AutoOptimizationResult | None = None

    def workflow(self, name: str) -> WorkflowRun:
        """The run of the workflow class called ``name``."""
        for run in self.workflows:
            if run.workflow == name:
                return run
        raise KeyError(name)


@dataclass(frozen=True)
class _Step:
    action: str
    user: str | None = None
    context: dict[str, Any] | None = None


def open_database(database_url: str) -> Engine:
    """An engine on ``database_url`` that has connected once, or :class:`DatabaseURLError`."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise DatabaseURLError(
            f"{database_url!r} is not a database URL; expected e.g. {DEFAULT_DATABASE_URL} "
            "or postgresql+psycopg://user:password@host/dbname") from None
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url)
    except NoSuchModuleError:
        raise DatabaseURLError(f"{shown}: unknown database dialect or driver {url.drivername!r}") from None
    except ImportError as err:
        raise DatabaseURLError(f"{shown}: the database driver is not installed ({err})") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as err:
        engine.dispose()
        reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
        raise DatabaseURLError(f"cannot connect to {shown}: {reason}") from None
    return engine


def run_demo(database_url: str = DEFAULT_DATABASE_URL, executions_per_workflow: int = 20,
             seed: int = 0) -> DemoResult:
    """Reset the demo data, run every example workflow ``executions_per_workflow`` times, time it."""
    if executions_per_workflow < 1:
        raise ValueError(f"executions_per_workflow must be at least 1, got {executions_per_workflow}")
    started = time.perf_counter()
    engine = open_database(database_url)
    telemetry = configure()            # instruments the engine; spans go where OTEL_* says
    try:
        removed = _reset(engine)
        rng = random.Random(seed)
        n = executions_per_workflow
        with Session(engine) as session:
            authors = {d.id: d.author for d in seed_documents(session, n, rng)}
            seed_products(session, stock=max(1000, 3 * n))   # an order takes at most 3 of a product
            order_ids = [o.id for o in seed_orders(session, n, rng)]
            employee_ids = [e.id for e in seed_employees(session, n, rng)]
            session.commit()
        setup_seconds = time.perf_counter() - started
        telemetry.aggregator.reset()   # the report covers the workflow runs, not the set-up
        runs = (
            _run(engine, DocumentApproval, Document,
                 [(i, _document_path(index, author)) for index, (i, author) in enumerate(authors.items())]),
            _run(engine, OrderFulfillment, Order, [(i, _order_path(index)) for index, i in enumerate(order_ids)]),
            _run(engine, EmployeeOnboarding, Employee,
                 [(i, _onboarding_path(index)) for index, i in enumerate(employee_ids)]),
        )
        total_seconds = time.perf_counter() - started
        report = process_report(telemetry.aggregator, span_store=telemetry.span_store)
        optimization = _optimize(engine, min(n, OPTIMIZATION_RUN_EXECUTIONS), seed)
    finally:
        engine.dispose()
    return DemoResult(
        database_url=engine.url.render_as_string(hide_password=True), dialect=engine.dialect.name,
        executions_per_workflow=n, seed=seed, removed_executions=removed, setup_seconds=setup_seconds,
        total_seconds=total_seconds, workflows=runs, report=report, optimization=optimization)


def representative_operation(engine: Engine, workflow: type[Workflow] = EmployeeOnboarding,
                             executions: int = 1, seed: int = 0) -> Callable[[], WorkflowRun]:
    """A callable that runs ``executions`` new executions of an example workflow along the demo's
    paths, each on a freshly seeded record in its own session, as the demo does.

    The optimizers measure it before and after a fix. Every call seeds new records with the
    same ``seed``, so two calls do the same work (same roles, same order sizes) on cold
    sessions: the difference between their measurements is the fix, not a warm identity map.
    The example tables must exist (``create_example_schema``).
    """
    if workflow not in EXAMPLE_WORKFLOWS:
        raise ValueError(f"{getattr(workflow, '__qualname__', workflow)!r} is not one of the example workflows "
                         f"({', '.join(w.__qualname__ for w in EXAMPLE_WORKFLOWS)})")

    def run() -> WorkflowRun:
        rng = random.Random(seed)
        with Session(engine) as session:
            if workflow is EmployeeOnboarding:
                model: type[Any] = Employee
                plans = [(e.id, _onboarding_path(i)) for i, e in enumerate(seed_employees(session, executions, rng))]
            elif workflow is OrderFulfillment:
                model = Order
                plans = [(o.id, _order_path(i)) for i, o in enumerate(seed_orders(session, executions, rng))]
            else:
                model = Document
                plans = [(d.id, _document_path(i, d.author))
                         for i, d in enumerate(seed_documents(session, executions, rng))]
            session.commit()
        return _run(engine, workflow, model, plans)

    return run


def _optimize(engine: Engine, executions: int, seed: int) -> AutoOptimizationResult:
    """The optimization loop: auto_optimize on the demo's measurements, the onboarding workflow
    run again before and after. Afterwards the fixes are turned off and the loop's executions
    and employees deleted, so the process and the database hold what the demo ran, as before
    (tests run the demo and then look for the N+1 themselves; a second demo counts what the
    first left)."""
    with Session(engine) as session:
        last_id = session.scalar(select(func.max(WorkflowExecution.id))) or 0
    optimizer = PerformanceOptimizer()
    try:
        return optimizer.auto_optimize(representative_operation(engine, EmployeeOnboarding, executions, seed))
    finally:
        optimizer.revert()
        _delete_onboardings_after(engine, last_id)


def _delete_onboardings_after(engine: Engine, last_id: int) -> None:
    loop = select(WorkflowExecution.id).where(WorkflowExecution.id > last_id,
                                              WorkflowExecution.workflow_class == EmployeeOnboarding.import_path())
    with Session(engine) as session, session.begin():
        employee_ids = [int(i) for i in session.scalars(
            select(WorkflowExecution.workflowable_id).where(WorkflowExecution.id.in_(loop))) if i is not None]
        session.execute(delete(WorkflowTransition).where(WorkflowTransition.execution_id.in_(loop)))
        session.execute(delete(WorkflowExecution).where(WorkflowExecution.id.in_(loop)))
        if employee_ids:
            session.execute(delete(OnboardingTask).where(OnboardingTask.employee_id.in_(employee_ids)))
            session.execute(delete(Employee).where(Employee.id.in_(employee_ids)))


def _reset(engine: Engine) -> int:
    """Recreate the example tables, delete earlier demo executions; return how many were deleted."""
    create_schema(engine)
    reset_example_tables(engine)
    paths = [w.import_path() for w in EXAMPLE_WORKFLOWS]
    earlier = select(WorkflowExecution.id).where(WorkflowExecution.workflow_class.in_(paths))
    with Session(engine) as session, session.begin():
        removed = session.scalar(select(func.count()).select_from(earlier.subquery())) or 0
        # Transitions first: SQLite enforces ON DELETE CASCADE only with PRAGMA foreign_keys=ON.
        session.execute(delete(WorkflowTransition).where(WorkflowTransition.execution_id.in_(earlier)))
        session.execute(delete(WorkflowExecution).where(WorkflowExecution.workflow_class.in_(paths)))
    return removed


def _run(engine: Engine, workflow: type[Workflow], model: type[Any],
         plans: Sequence[tuple[int, Sequence[_Step]]]) -> WorkflowRun:
    starts: list[float] = []
    durations: dict[str, list[float]] = {}
    final_steps: Counter[str] = Counter()
    completed = 0
    ids = []
    began = time.perf_counter()
    for record_id, path in plans:
        with Session(engine) as session:
            record = session.get(model, record_id)
            t = time.perf_counter()
            execution = start_workflow(session, workflow, workflowable=record)
            starts.append(time.perf_counter() - t)
            for s in path:
                t = time.perf_counter()
                execution.perform_action(s.action, user=s.user, additional_context=s.context)
                durations.setdefault(s.action, []).append(time.perf_counter() - t)
            final_steps[execution.current_step] += 1
            completed += execution.status == "completed"
            ids.append(execution.id)
    return WorkflowRun(
        workflow=workflow.__qualname__, import_path=workflow.import_path(), executions=len(plans),
        completed=completed, final_steps=dict(final_steps), starts=ActionTiming("start_workflow", tuple(starts)),
        actions=tuple(ActionTiming(a, tuple(d)) for a, d in durations.items()),
        total_seconds=time.perf_counter() - began, execution_ids=tuple(ids))


_REVIEWERS = ("rita", "sam")


def _document_path(index: int, author: str) -> list[_Step]:
    """Most approved at once; every 5th sent back for changes; every 7th rejected and resubmitted."""
    reviewer = _REVIEWERS[index % len(_REVIEWERS)]
    submit = _Step("submit_for_review", author)
    approve = _Step("approve", reviewer, {"comment": "looks good"})
    if index % 7 == 6:
        return [submit, _Step("reject", reviewer, {"reason": "out of scope"}), _Step("resubmit", author),
                _Step("save_draft", author, {"body": "A shorter, focused version of the report. " * 5}),
                submit, approve]
    if index % 5 == 4:
        return [_Step("save_draft", author), submit, _Step("request_changes", reviewer, {"comment": "add numbers"}),
                _Step("save_draft", author, {"body": "The revised report, now with numbers: 1 2 3. " * 8}),
                submit, approve]
    return [submit, approve]


def _order_path(index: int) -> list[_Step]:
    """Most delivered; of every ten, one cancelled before payment and one after it."""
    if index % 10 == 9:
        return [_Step("cancel", "customer", {"reason": "changed my mind"})]
    if index % 10 == 8:
        return [_Step("pay", "customer"), _Step("cancel", "support", {"reason": "address undeliverable"})]
    return [_Step("pay", "customer"), _Step("pick", "warehouse"), _Step("ship", "warehouse"),
            _Step("deliver", "courier")]


def _onboarding_path(index: int) -> list[_Step]:
    return [_Step("order_equipment", "hr"), _Step("create_accounts", "it"), _Step("start_orientation", "trainer"),
            _Step("complete_orientation", "trainer")]


def print_demo(result: DemoResult, console: Console) -> None:
    """Print ``result``: a header naming the database, a summary table, the performance report."""
    console.print(f"[bold]flowscope demo[/bold] on [cyan]{result.database_url}[/cyan] ({result.dialect})",
                  soft_wrap=True)
    removed = (f"{result.removed_executions} executions left by an earlier demo deleted"
               if result.removed_executions else "no earlier demo executions found")
    console.print(f"Fresh start: example tables (example_*) dropped and recreated, {removed}; "
                  "other executions untouched.", style="dim", soft_wrap=True)
    longest = max((len(run.workflow) for run in result.workflows), default=8)
    summary = Table(title="Workflows", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    summary.add_column("Workflow", no_wrap=True, min_width=longest)
    for header in ("Executions", "Completed", "Transitions", "Total ms", "Mean ms/action"):
        summary.add_column(header, justify="right")
    summary.add_column("Final steps")
    for run in result.workflows:
        ended = ", ".join(f"{step} {n}" for step, n in sorted(run.final_steps.items()))
        summary.add_row(run.workflow, str(run.executions), str(run.completed), str(run.transitions),
                        _ms(run.total_seconds), _ms(run.mean_action_seconds), ended)
    console.print(summary)
    if result.report is not None:
        print_process_report(result.report, console)
    if result.optimization is not None:
        _print_optimization(result.optimization, console)
    console.print(f"{sum(r.executions for r in result.workflows)} executions, "
                  f"{sum(r.transitions for r in result.workflows)} transitions in "
                  f"{result.total_seconds:.2f} s (setup {result.setup_seconds:.2f} s).")


def _print_optimization(result: AutoOptimizationResult, console: Console) -> None:
    """The optimization loop: what auto_optimize applied, then the same workflow measured again."""
    console.print("[bold]Optimization loop[/bold] (PerformanceOptimizer().auto_optimize(), "
                  "then the same workflow run again)")
    if not result.applied:
        console.print(f"  nothing applied: {result.note or 'no finding justified a fix'}", style="dim")
    for fix in result.applied:
        console.print(f"  applied: {fix.kind} {fix.target}: {fix.detail} (because of {fix.because})", soft_wrap=True)
    for skipped in result.not_applied:
        console.print(f"  not applied: {skipped.kind} in {skipped.operation}: {skipped.reason}", style="dim",
                      soft_wrap=True)
    if result.before is None or result.after is None:
        return
    table = Table(title="Measured before and after the fixes: the same workflow run again on new records "
                        "(means per operation)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Operation", no_wrap=True)
    for header in ("Count", "Queries/op before", "Queries/op after", "ms/op before", "ms/op after"):
        table.add_column(header, justify="right")
    for before in result.before.operations:
        after = result.after.operation(before.operation)
        table.add_row(before.operation, str(before.count), f"{before.queries_per_operation:.1f}",
                      f"{after.queries_per_operation:.1f}" if after else "-", f"{before.ms_per_operation:.2f}",
                      f"{after.ms_per_operation:.2f}" if after else "-")
    console.print(table)
    for fix in result.applied:
        if fix.kind != "eager_loading":
            continue
        operation = fix.because.removeprefix("n_plus_one in ")
        before_q, after_q = result.queries_per_operation(operation)
        if before_q is not None and after_q is not None:
            console.print(f"  {operation}: {before_q:.1f} queries/op before, {after_q:.1f} after "
                          f"(eager loading {fix.target}); whole run {result.before.queries} -> "
                          f"{result.after.queries} queries.", soft_wrap=True)
    console.print("  (the fixes are turned off again at the end of the demo)", style="dim")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"

