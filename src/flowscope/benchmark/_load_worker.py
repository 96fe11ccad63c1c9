"""Run one worker's share of a load test: one thread per execution, all released at once.

    >>> runner = ShareRunner(spec, engine, aggregation, progress, stop)
    >>> runner.prepare()          # records created, threads started and waiting
    >>> runner.start()            # the clock starts: every execution goes at once
    >>> runner.wait(); runner.result()

``mode="threads"`` runs one share in the calling process; ``mode="processes"`` runs one share
per worker process (:func:`process_main`), each returning its :class:`ShareResult` to the parent.

Design decisions:
- One thread and one ``Session`` per execution, as a web server would give each request: the
  executions really are concurrent, on separate connections.
- Everything that is not the workflow (creating the workflowable records, loading them,
  spawning threads and processes, importing modules) happens before the start signal; the
  clock covers ``start_workflow`` and the actions only.
- Latency is ``time.perf_counter`` around ``start_workflow`` and ``perform_action`` (handlers,
  flush and commit included). Choosing the action (``available_actions`` and the policy) is
  part of the throughput, not of an action's latency.
- A failure is caught per execution (``Exception``, never ``BaseException``), grouped by type
  and action, and stops that execution only.
- Peak memory: a sampler thread reads RSS (``/proc/self/statm``, ~1 us) every 20 ms while the
  executions run; the kernel's high-water mark cannot be reset between tests.
- Worker processes ignore SIGINT: Ctrl-C reaches the whole process group, and the parent
  stops them cleanly (a shared event: each execution finishes its current action and stops),
  so their results are still collected and printed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..telemetry._probes import rss_bytes
from ..workflows import Workflow, start_workflow
from ..workflows._runtime import resolve_workflow_class
from ._load_spans import ScopedAggregation, SpanRecord
from ._policies import ActionPolicy, execution_rng

SAMPLE_INTERVAL_SECONDS = 0.02
SETUP_TIMEOUT_SECONDS = 600.0
_EXAMPLE_LENGTH = 300


class Progress(Protocol):
    def add(self, done: int, errors: int) -> None: ...


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class ShareSpec:
    """One worker's share of a load test (picklable: sent to worker processes)."""

    worker: int
    workflow_path: str
    database_url: str
    indices: tuple[int, ...]
    operations: int
    policy: ActionPolicy
    factory: Callable[[Session, int], Any] | None
    user: str | None
    seed: int


@dataclass
class ShareResult:
    """What one worker measured (picklable: returned by worker processes)."""

    worker: int
    pid: int
    executions: int
    started_at: float = 0.0           # time.monotonic(): comparable across processes on one machine
    finished_at: float = 0.0
    executions_started: int = 0
    executions_completed: int = 0
    executions_failed: int = 0
    performed: int = 0
    failed: int = 0
    skipped_no_action: int = 0
    not_run: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)       # seconds
    errors: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # (type, action) -> [count, example]
    start_rss_bytes: int = 0
    peak_rss_bytes: int = 0
    span_records: list[SpanRecord] = field(default_factory=list)

    def record_error(self, err: BaseException, action: str) -> None:
        key = (_error_type(err), action)
        entry = self.errors.get(key)
        if entry is None:
            self.errors[key] = [1, _describe(err)]
        else:
            entry[0] += 1

    def merge(self, other: ShareResult) -> None:
        """Add an execution's (or another share's) tallies into this one."""
        for name in ("executions_started", "executions_completed", "executions_failed", "performed", "failed",
                     "skipped_no_action", "not_run"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for action, samples in other.latencies.items():
            self.latencies.setdefault(action, []).extend(samples)
        for key, (count, example) in other.errors.items():
            entry = self.errors.get(key)
            if entry is None:
                self.errors[key] = [count, example]
            else:
                entry[0] += count


def _error_type(err: BaseException) -> str:
    cls = type(err)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
    return text if len(text) <= _EXAMPLE_LENGTH else text[: _EXAMPLE_LENGTH - 3] + "..."


class ShareRunner:
    """Runs the executions of one :class:`ShareSpec` (see the module docstring)."""

    def __init__(self, spec: ShareSpec, engine: Engine, aggregation: ScopedAggregation, progress: Progress,
                 stop: StopSignal) -> None:
        self.spec = spec
        self.engine = engine
        self.aggregation = aggregation
        self.progress = progress
        self.stop = stop
        self._go = threading.Event()
        self._abandon = threading.Event()
        self._done = threading.Event()
        self._all_finished = threading.Event()
        self._unfinished = 0          # threads started and not finished
        self._unfinished_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._outcomes: list[ShareResult] = []
        self._sampler: threading.Thread | None = None
        self._peak_rss = 0
        self._start_rss = 0
        self._started_at = 0.0
        self._finished_at = 0.0

    # -- before the clock ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Resolve the workflow, create the records, start the threads (they wait for start())."""
        workflow = resolve_workflow_class(self.spec.workflow_path)
        records = self._create_workflowables()
        self._open_connections()
        for index, record in zip(self.spec.indices, records):
            outcome = ShareResult(worker=self.spec.worker, pid=os.getpid(), executions=1)
            self._outcomes.append(outcome)
            thread = threading.Thread(target=self._run_and_finish, args=(workflow, index, record, outcome),
                                      name=f"flowscope-load-{self.spec.worker}-{index}", daemon=True)
            self._threads.append(thread)
            with self._unfinished_lock:     # the threads wait for start(): none can finish yet
                self._unfinished += 1
            thread.start()

    def _create_workflowables(self) -> list[Any]:
        """The records, committed and detached with their state loaded (no query needed to use them).

        Nothing touches the database between here and the start signal: on SQLite a session
        that read a row would hold the write lock (BEGIN IMMEDIATE) while it waited.
        """
        factory = self.spec.factory
        if factory is None:
            return [None] * len(self.spec.indices)
        with Session(self.engine, expire_on_commit=False) as session:
            records = [factory(session, index) for index in self.spec.indices]
            for index, record in zip(self.spec.indices, records):
                if record is None:
                    continue
                try:
                    mapper = sa_inspect(type(record))
                except Exception:
                    raise TypeError(f"workflowable_factory(session, {index}) returned {type(record).__name__}, "
                                    "not a mapped SQLAlchemy instance (or None)") from None
                if len(mapper.primary_key) != 1:
                    raise TypeError(f"workflowable {type(record).__name__} must have a single-column primary key")
                session.add(record)
            session.commit()
            session.expunge_all()
        return records

    def _open_connections(self) -> None:
        """Fill the pool with one connection per execution now, not on the clock.

        Connecting (and SQLite's PRAGMAs) took ~5-80 ms on this machine and would otherwise
        land in each execution's first ``start`` latency. No transaction is begun.
        """
        connections = [self.engine.connect() for _ in self.spec.indices]
        for connection in connections:
            connection.close()

    # -- the clock ----------------------------------------------------------------------------
    def start(self) -> None:
        self._start_rss = self._peak_rss = rss_bytes()
        self._sampler = threading.Thread(target=self._sample_memory, name="flowscope-load-memory", daemon=True)
        self._sampler.start()
        self._started_at = time.monotonic()
        self._release()

    def abandon(self) -> None:
        """Release the waiting threads without running anything (setup failed, here or elsewhere)."""
        self._abandon.set()
        self._release()
        self.wait()

    def _release(self) -> None:
        with self._unfinished_lock:
            if self._unfinished == 0:       # no thread was started
                self._finished_at = time.monotonic()
                self._all_finished.set()
        self._go.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every execution to finish; ``False`` if ``timeout`` passed first.

        Completion is counted by the executions themselves (an event set by the last one), not
        read from ``Thread.join``/``is_alive``: a KeyboardInterrupt landing inside ``join``
        can leave ``is_alive()`` False for a thread that is still running (CPython's thread
        state lock), and a result merged then would miss that execution's last operations.
        """
        if not self._all_finished.wait(timeout):
            return False
        self._done.set()        # stops the memory sampler
        return True

    def result(self) -> ShareResult:
        self.wait()
        for thread in self._threads:
            thread.join()
        if self._sampler is not None:
            self._sampler.join()
        total = ShareResult(worker=self.spec.worker, pid=os.getpid(), executions=len(self.spec.indices),
                            started_at=self._started_at, finished_at=self._finished_at,
                            start_rss_bytes=self._start_rss, peak_rss_bytes=max(self._peak_rss, rss_bytes()))
        for outcome in self._outcomes:
            total.merge(outcome)
        recorder = self.aggregation.recorder
        if recorder is not None:
            total.span_records = list(recorder.records)
        return total

    def _sample_memory(self) -> None:
        while not self._done.wait(SAMPLE_INTERVAL_SECONDS):
            value = rss_bytes()
            if value > self._peak_rss:
                self._peak_rss = value

    # -- one execution --------------------------------------------------------------------------
    def _run_and_finish(self, workflow: type[Workflow], index: int, workflowable: Any,
                        outcome: ShareResult) -> None:
        try:
            self._run_execution(workflow, index, workflowable, outcome)
        finally:
            with self._unfinished_lock:
                self._unfinished -= 1
                if self._unfinished == 0:
                    self._finished_at = time.monotonic()
                    self._all_finished.set()

    def _run_execution(self, workflow: type[Workflow], index: int, workflowable: Any,
                       outcome: ShareResult) -> None:
        spec = self.spec
        planned = spec.operations
        with self.aggregation.bound(), Session(self.engine) as session:
            self._go.wait()
            if self._abandon.is_set():
                return
            if self.stop.is_set():
                outcome.not_run += planned
                self.progress.add(planned, 0)
                return
            started = time.perf_counter()
            try:
                execution = start_workflow(session, workflow, workflowable=workflowable)
            except Exception as err:
                self._give_up(outcome, err, "start", planned)
                return
            outcome.latencies.setdefault("start", []).append(time.perf_counter() - started)
            outcome.executions_started += 1
            rng = execution_rng(spec.seed, index)
            for done in range(planned):
                left = planned - done
                if self.stop.is_set():
                    outcome.not_run += left
                    self.progress.add(left, 0)
                    return
                try:
                    available = execution.available_actions(spec.user)
                    action = spec.policy.choose(execution, available, rng) if available else None
                except Exception as err:
                    outcome.failed += 1
                    outcome.not_run += left - 1
                    outcome.executions_failed += 1
                    outcome.record_error(err, "choose action")
                    self.progress.add(left, 1)
                    return
                if action is None:
                    outcome.skipped_no_action += left
                    self.progress.add(left, 0)
                    break
                started = time.perf_counter()
                try:
                    execution.perform_action(action, user=spec.user)
                except Exception as err:
                    outcome.failed += 1
                    outcome.not_run += left - 1
                    outcome.executions_failed += 1
                    outcome.record_error(err, str(action))
                    self.progress.add(left, 1)
                    return
                outcome.latencies.setdefault(str(action), []).append(time.perf_counter() - started)
                outcome.performed += 1
                self.progress.add(1, 0)
            outcome.executions_completed += 1

    def _give_up(self, outcome: ShareResult, err: Exception, action: str, planned: int) -> None:
        outcome.executions_failed += 1
        outcome.not_run += planned
        outcome.record_error(err, action)
        self.progress.add(planned, 1)


class LocalProgress:
    """Operation and error counters shared by the threads of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self.errors = 0

    def add(self, done: int, errors: int) -> None:
        with self._lock:
            self.done += done
            self.errors += errors


class SharedProgress:
    """This worker's slots in an array shared with the parent: [done, errors] per worker."""

    def __init__(self, array: Any, worker: int) -> None:
        self.array = array
        self.slot = 2 * worker

    def add(self, done: int, errors: int) -> None:
        with self.array.get_lock():
            self.array[self.slot] += done
            self.array[self.slot + 1] += errors


def process_main(spec: ShareSpec, barrier: Any, stop: Any, counters: Any, results: Any) -> None:
    """Entry point of a worker process (``mode="processes"``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runner: ShareRunner | None = None
    try:
        from ..telemetry import configure
        from ._load_database import create_load_engine

        telemetry = configure()
        engine = create_load_engine(spec.database_url, pool_size=len(spec.indices) + 1)
        aggregation = ScopedAggregation(telemetry, record=True)
        runner = ShareRunner(spec, engine, aggregation, SharedProgress(counters, spec.worker), stop)
        runner.prepare()
    except BaseException as err:
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        results.put(("setup_error", spec.worker, detail))
        barrier.abort()
        if runner is not None:
            runner.abandon()
        return
    try:
        barrier.wait(SETUP_TIMEOUT_SECONDS)
    except threading.BrokenBarrierError:
        runner.abandon()
        results.put(("abandoned", spec.worker, None))
        return
    runner.start()
    result = runner.result()
    telemetry.force_flush()
    engine.dispose()
    results.put(("result", spec.worker, result))
