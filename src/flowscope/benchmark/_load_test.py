"""``load_test()``: many executions of one workflow class at once, measured.

    >>> result = load_test(DocumentApproval, concurrent_executions=10, operations_per_execution=5)
    >>> print(f"{result.throughput:.1f} workflows/s, approve p95 {result.latency_of('approve').p95_ms:.1f} ms")
    >>> load_test("flowscope.examples:OrderFulfillment", mode="processes", workers=2,
    ...           database_url="postgresql+psycopg://user:pw@localhost/db")

Each of ``concurrent_executions`` executions is started and then performs up to
``operations_per_execution`` actions chosen by the ``action_policy`` from those available to
``user``; they all run at once (threads, or worker processes each running threads). See
:mod:`._load_result` for what is reported and how every operation is accounted for, and
:mod:`._load_database` for SQLite's write lock and what it does to throughput.

Design decisions:
- **Threads or processes.** Threads share one interpreter, so CPU-bound handlers are
  serialized by the GIL; ``mode="processes"`` starts ``workers`` processes (default: one per
  CPU, at most one per execution), each running its share of the executions on threads.
  Workers come from a ``forkserver`` (``spawn`` where there is none), never a plain ``fork``:
  this process runs other threads (span export, connection pools) whose locks a fork would
  copy in whatever state they were in. The fork server starts once, preloads flowscope, and
  then forks each worker in milliseconds (a spawned worker imports flowscope, SQLAlchemy and
  OpenTelemetry again: ~0.5 s). Either way it happens before the clock starts.
- **Merging workers.** Workers return plain data: counts, every latency sample, errors grouped
  by type, their peak RSS, and a record of each operation span; the parent sums the counts,
  concatenates the samples and replays the span records into one dedicated aggregating
  processor (:mod:`._load_spans`), so counts are exact and one set of statistics covers all.
- **The clock** starts when every execution in every worker is ready (records created and
  loaded, threads started, a barrier passed) and stops when the last execution finishes.
- **Ctrl-C** (``KeyboardInterrupt`` in the calling thread) stops the test early: executions
  finish the action they are in and stop, and the partial result comes back with
  ``interrupted=True`` (a second Ctrl-C aborts at once).
- **Bad input fails before anything runs**, with a typed error (:mod:`._errors`).
- ``database_url=None`` means a temporary SQLite file, created with the schema, removed at
  the end, and named in the result (``temporary_database=True``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..telemetry import configure
from ..telemetry._probes import rss_bytes
from ..workflows import Workflow, create_schema
from ..workflows._runtime import resolve_import_path
from . import _statistics
from ._errors import (
    InvalidLoadParameterError,
    LoadTestSetupError,
    NoInitialActionError,
    NotPicklableError,
)
from ._load_database import SQLITE_NOTE, LoadDatabase, create_load_engine, open_load_database
from ._load_result import ErrorGroup, LatencyStats, LoadProgress, LoadTestResult, WorkerSummary
from ._load_spans import ScopedAggregation, replay
from ._load_worker import LocalProgress, ShareResult, ShareRunner, ShareSpec, process_main
from ._policies import ActionPolicy, PolicyFunction, resolve_policy
from ._targets import workflow_class
from ._workloads import WorkflowableFactory, defaults_for

MODES = ("threads", "processes")
PROGRESS_INTERVAL_SECONDS = 0.1
ProgressCallback = Callable[[LoadProgress], None]


def load_test(workflow: type[Workflow] | str, concurrent_executions: int = 10, operations_per_execution: int = 5,
              mode: str = "threads", database_url: str | None = None,
              action_policy: str | ActionPolicy | PolicyFunction | None = None, seed: int | None = None, *,
              workflowable_factory: WorkflowableFactory | None = None, workers: int | None = None,
              user: str | None = "load-test", setup: Callable[[Engine], None] | None = None,
              progress: ProgressCallback | None = None) -> LoadTestResult:
    """Run ``concurrent_executions`` executions of ``workflow`` at once and measure them.

    ``workflow`` is a Workflow subclass or its ``module:ClassName`` path. ``setup(engine)``
    runs once before anything else (create the tables your workflowable records need);
    ``workflowable_factory(session, index)`` gives execution ``index`` its record (a workflow
    registered with ``register_workload`` has defaults; the examples are). ``seed=None`` picks a seed and reports it, so a run can be repeated.
    """
    _check_count("concurrent_executions", concurrent_executions)
    _check_count("operations_per_execution", operations_per_execution)
    if mode not in MODES:
        raise InvalidLoadParameterError(f"mode must be 'threads' or 'processes', got {mode!r}")
    cls = workflow_class(workflow)
    if not cls.actions_at(cls.initial_step):
        raise NoInitialActionError(cls.__qualname__, cls.initial_step)
    worker_count = _worker_count(mode, workers, concurrent_executions)
    policy = resolve_policy(action_policy)
    defaults = defaults_for(cls)
    factory = workflowable_factory if workflowable_factory is not None else (defaults.factory if defaults else None)
    if factory is not None and not callable(factory):
        raise InvalidLoadParameterError(f"workflowable_factory must be a callable(session, index), "
                                        f"got {type(factory).__name__}")
    if setup is not None and not callable(setup):
        raise InvalidLoadParameterError(f"setup must be a callable(engine), got {type(setup).__name__}")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    path = cls.import_path()
    if mode == "processes":
        _check_sendable(cls, path, policy, factory)

    telemetry = configure()
    setup_started = time.perf_counter()
    database = open_load_database(database_url)
    engine = None
    try:
        engine = create_load_engine(database.url, pool_size=concurrent_executions + 1)
        create_schema(engine)
        if defaults is not None:
            defaults.create_tables(engine)
        if setup is not None:
            setup(engine)
        if defaults is not None and defaults.prepare is not None:
            with Session(engine) as session:
                defaults.prepare(session)
                session.commit()
        specs = [ShareSpec(worker=w, workflow_path=path, database_url=database.url,
                           indices=tuple(range(w, concurrent_executions, worker_count)),
                           operations=operations_per_execution, policy=policy, factory=factory, user=user, seed=seed)
                 for w in range(worker_count)]
        planned = concurrent_executions * operations_per_execution
        aggregation = ScopedAggregation(telemetry)
        if mode == "threads":
            shares, interrupted, setup_seconds = _run_threads(specs[0], engine, aggregation, planned, progress,
                                                              setup_started)
        else:
            engine.dispose()
            shares, interrupted, setup_seconds = _run_processes(specs, planned, progress, setup_started)
            for share in shares:
                replay(share.span_records, aggregation.processor)
        notes = _notes(database, mode, telemetry_enabled=aggregation.enabled)
        return _result(path, mode, worker_count, concurrent_executions, operations_per_execution, str(policy), seed,
                       database, interrupted, setup_seconds, shares, aggregation, notes)
    finally:
        if engine is not None:
            engine.dispose()
        database.remove()


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLoadParameterError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        what = {"concurrent_executions": "execution", "operations_per_execution": "operation per execution",
                "workers": "worker process"}.get(name, name)
        raise InvalidLoadParameterError(f"{name} must be at least 1, got {value}: a load test needs at least "
                                        f"one {what}")


def _worker_count(mode: str, workers: int | None, executions: int) -> int:
    if mode == "threads":
        if workers not in (None, 1):
            raise InvalidLoadParameterError(f"workers={workers} needs mode='processes' (threads mode runs in this "
                                            "process)")
        return 1
    if workers is None:
        return max(1, min(os.cpu_count() or 1, executions))
    _check_count("workers", workers)
    if workers > executions:
        raise InvalidLoadParameterError(f"workers={workers} is more than concurrent_executions={executions}; "
                                        "a worker without an execution would only cost a process")
    return workers


def _check_sendable(cls: type[Workflow], path: str, policy: ActionPolicy, factory: Any) -> None:
    """Everything a worker process needs must import by name there (spawn pickles by reference)."""
    try:
        same = resolve_import_path(path) is cls
    except Exception:
        same = False
    if not same:
        raise NotPicklableError(
            f"mode='processes' needs the workflow class importable as {path!r} in a new process; "
            f"{cls.__qualname__} is defined inside a function or shadowed: move it to module level")
    for what, value in (("action_policy", policy), ("workflowable_factory", factory)):
        if value is None:
            continue
        try:
            pickle.dumps(value)
        except Exception as err:
            raise NotPicklableError(
                f"mode='processes' sends {what} to the worker processes, and it cannot be pickled "
                f"({type(err).__name__}: {err}); use a module-level function, not a lambda or a "
                "nested function") from None


# -- threads ------------------------------------------------------------------------------------

def _run_threads(spec: ShareSpec, engine: Engine, aggregation: ScopedAggregation, planned: int,
                 progress: ProgressCallback | None, setup_started: float) -> tuple[list[ShareResult], bool, float]:
    counters = LocalProgress()
    stop = threading.Event()
    runner = ShareRunner(spec, engine, aggregation, counters, stop)
    try:
        runner.prepare()
    except Exception as err:
        runner.abandon()
        raise LoadTestSetupError(f"the load test could not get ready: {type(err).__name__}: {err}") from err
    setup_seconds = time.perf_counter() - setup_started
    runner.start()
    started = time.monotonic()
    interrupted = False
    while True:
        try:
            finished = runner.wait(PROGRESS_INTERVAL_SECONDS)
            if progress is not None:
                progress(LoadProgress(counters.done, planned, counters.errors, time.monotonic() - started))
            if finished:
                break
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            stop.set()
    return [runner.result()], interrupted, setup_seconds


# -- processes ----------------------------------------------------------------------------------

def _run_processes(specs: list[ShareSpec], planned: int, progress: ProgressCallback | None,
                   setup_started: float) -> tuple[list[ShareResult], bool, float]:
    ctx = _context()
    workers = len(specs)
    barrier = ctx.Barrier(workers + 1)
    stop = ctx.Event()
    counters = ctx.Array("q", 2 * workers)
    results = ctx.Queue()
    processes = [ctx.Process(target=process_main, args=(spec, barrier, stop, counters, results),
                             name=f"flowscope-load-worker-{spec.worker}", daemon=True) for spec in specs]
    started: list[Any] = []
    try:
        for process in processes:
            process.start()
            started.append(process)
        _wait_until_ready(barrier, processes, results)
        setup_seconds = time.perf_counter() - setup_started
        shares, interrupted = _collect(specs, processes, results, stop, counters, planned, progress)
        return shares, interrupted, setup_seconds
    finally:
        stop.set()          # harmless when every worker is done; stops them on any early exit
        barrier.abort()     # releases workers still waiting to start (they then stop)
        for process in started:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _wait_until_ready(barrier: Any, processes: list[Any], results: Any) -> None:
    passed = threading.Event()

    def watch() -> None:   # a worker that died before the barrier would leave us waiting forever
        while not passed.wait(0.2):
            if any(p.exitcode is not None for p in processes):
                barrier.abort()
                return

    watcher = threading.Thread(target=watch, name="flowscope-load-watch", daemon=True)
    watcher.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        problems: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(problems) < len(processes):
            try:
                kind, worker, detail = results.get(timeout=0.5)
            except queue.Empty:
                if all(p.exitcode is not None for p in processes):
                    break
                continue
            if kind == "setup_error":
                problems.append(f"worker {worker}: {detail}")
        if not problems:
            codes = ", ".join(f"worker {i}: exit code {p.exitcode}" for i, p in enumerate(processes)
                              if p.exitcode not in (None, 0))
            problems.append(f"a worker process died before it was ready ({codes or 'no exit code'}); if the "
                            "script that runs the load test is the main module, start it under "
                            "`if __name__ == '__main__':` (worker processes import the main module)")
        raise LoadTestSetupError("the load test's worker processes could not get ready: "
                                 + "; ".join(problems)) from None
    finally:
        passed.set()
        watcher.join()


def _collect(specs: list[ShareSpec], processes: list[Any], results: Any, stop: Any, counters: Any, planned: int,
             progress: ProgressCallback | None) -> tuple[list[ShareResult], bool]:
    started = time.monotonic()
    collected: dict[int, ShareResult] = {}
    interrupted = False
    while len(collected) < len(specs):
        try:
            try:
                kind, worker, payload = results.get(timeout=PROGRESS_INTERVAL_SECONDS)
                if kind == "result":
                    collected[worker] = payload
            except queue.Empty:
                for spec, process in zip(specs, processes):
                    if spec.worker not in collected and process.exitcode is not None:
                        time.sleep(0.2)      # a result put just before exiting may still be in flight
                        try:
                            while True:
                                kind, worker, payload = results.get_nowait()
                                if kind == "result":
                                    collected[worker] = payload
                        except queue.Empty:
                            pass
                        if spec.worker not in collected:
                            collected[spec.worker] = _crashed(spec, process.exitcode)
            if progress is not None:
                with counters.get_lock():
                    done = sum(counters[2 * w] for w in range(len(specs)))
                    errors = sum(counters[2 * w + 1] for w in range(len(specs)))
                progress(LoadProgress(done, planned, errors, time.monotonic() - started))
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            stop.set()
    return [collected[spec.worker] for spec in specs], interrupted


def _crashed(spec: ShareSpec, exitcode: int | None) -> ShareResult:
    share = ShareResult(worker=spec.worker, pid=0, executions=len(spec.indices))
    share.executions_failed = len(spec.indices)
    share.not_run = len(spec.indices) * spec.operations
    share.errors[("WorkerProcessDied", "worker")] = [1, f"worker {spec.worker} exited with code {exitcode} "
                                                        "before reporting its results"]
    return share


# -- the result ---------------------------------------------------------------------------------

def _result(path: str, mode: str, workers: int, executions: int, operations: int, policy: str, seed: int,
            database: LoadDatabase, interrupted: bool, setup_seconds: float, shares: list[ShareResult],
            aggregation: ScopedAggregation, notes: tuple[str, ...]) -> LoadTestResult:
    total = ShareResult(worker=-1, pid=os.getpid(), executions=executions)
    for share in shares:
        total.merge(share)
    ran = [s for s in shares if s.finished_at > 0]
    seconds = (max(s.finished_at for s in ran) - min(s.started_at for s in ran)) if ran else 0.0
    per_second = (lambda n: n / seconds) if seconds > 0 else (lambda n: 0.0)
    latency = [_latency(action, samples) for action, samples in total.latencies.items()]
    latency.sort(key=lambda s: (s.action != "start", s.action))
    errors: dict[str, dict[str, Any]] = {}
    for (error_type, action), (count, example) in total.errors.items():
        group = errors.setdefault(error_type, {"count": 0, "actions": {}, "example": example})
        group["count"] += count
        group["actions"][action] = group["actions"].get(action, 0) + count
    error_groups = sorted((ErrorGroup(type=t, count=g["count"], actions=dict(g["actions"]), example=g["example"])
                           for t, g in errors.items()), key=lambda g: (-g.count, g.type))
    if mode == "threads":
        peak = max((s.peak_rss_bytes for s in shares), default=rss_bytes())
        at_start = min((s.start_rss_bytes for s in shares if s.start_rss_bytes), default=rss_bytes())
    else:
        peak = sum(s.peak_rss_bytes for s in shares)
        at_start = sum(s.start_rss_bytes for s in shares)
    return LoadTestResult(
        workflow=path, mode=mode, workers=workers, concurrent_executions=executions,
        operations_per_execution=operations, action_policy=policy, seed=seed, database=database.shown,
        temporary_database=database.temporary, interrupted=interrupted, total_seconds=seconds,
        setup_seconds=setup_seconds, throughput=per_second(total.executions_completed),
        operations_per_second=per_second(total.performed), executions_started=total.executions_started,
        executions_completed=total.executions_completed, executions_failed=total.executions_failed,
        operations_planned=executions * operations, operations_performed=total.performed,
        operations_failed=total.failed, operations_skipped_no_action=total.skipped_no_action,
        operations_not_run=total.not_run, latency=tuple(latency), errors=tuple(error_groups),
        memory_at_start_bytes=at_start, peak_memory_bytes=peak,
        operation_stats=tuple(sorted(aggregation.processor.operations(), key=lambda o: o.name)),
        worker_summaries=tuple(WorkerSummary(worker=s.worker, pid=s.pid, executions=s.executions,
                                             operations_performed=s.performed,
                                             seconds=max(0.0, s.finished_at - s.started_at),
                                             peak_rss_bytes=s.peak_rss_bytes) for s in shares),
        notes=notes)


def _latency(action: str, samples: list[float]) -> LatencyStats:
    ms = [s * 1000.0 for s in samples]
    return LatencyStats(action=action, count=len(ms), mean_ms=math.fsum(ms) / len(ms),
                        p50_ms=_statistics.exact_percentile(ms, 50), p95_ms=_statistics.exact_percentile(ms, 95),
                        p99_ms=_statistics.exact_percentile(ms, 99), min_ms=min(ms), max_ms=max(ms))


def _notes(database: LoadDatabase, mode: str, telemetry_enabled: bool) -> tuple[str, ...]:
    notes = []
    if database.temporary:
        notes.append(f"database: a temporary SQLite file, created for this test with flowscope's schema and "
                     f"removed after it ({database.shown})")
    if database.is_sqlite:
        notes.append(SQLITE_NOTE)
    if mode == "processes":
        notes.append("processes: their spans were merged into one set of operation statistics; "
                     "peak memory is the sum of the workers' peaks")
    if not telemetry_enabled:
        notes.append("telemetry is disabled (OTEL_SDK_DISABLED), so there are no per-operation statistics")
    return tuple(notes)


_PRELOAD = ["flowscope.benchmark._load_worker", "flowscope.benchmark._load_database"]


def _context() -> Any:
    """``forkserver`` where the platform has it (else ``spawn``), preloading flowscope's modules.

    The fork server is started once per process from a clean single-threaded interpreter and
    forks every later worker from there: no locks of this process's threads are copied, and a
    worker starts in milliseconds instead of importing flowscope, SQLAlchemy and OpenTelemetry
    again (~0.5 s each with ``spawn``).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")
