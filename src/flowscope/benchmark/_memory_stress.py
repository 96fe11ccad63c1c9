"""``memory_stress_test()``: drive an execution with large context data; does memory come back?

    >>> result = memory_stress_test(execution, data_size_mb=10)
    >>> result.growth_bytes, result.peak_rss_bytes, result.memory_returned, result.operations_completed

What it does: builds ``data_size_mb`` MiB of JSON-friendly context (1 KiB strings, so the
allocator sees many objects, as with real context data), then performs up to ``operations``
actions on ``execution`` (chosen by the ``action_policy``; default the first available one),
each carrying that data as its ``additional_context``: the engine checks it, stores it in the
transition row and commits. It PERFORMS REAL ACTIONS on the execution (that is what is
measured): use an execution made for the purpose.

Measured:
- RSS before (after a full collection), the peak RSS while the actions run (a sampler
  thread every 5 ms, plus a read after each action), RSS after the data is dropped, the
  session's objects expired and garbage collected.
- With ``trace_python=True`` (the default), the same before/after for memory allocated by
  Python and still live (``tracemalloc``), which is what "did memory come back" really asks:
  RSS often stays up after objects are freed, because the C allocator keeps freed pages for
  reuse instead of returning them to the OS, and that is not a leak. ``tracemalloc`` makes the
  actions several times slower; durations are therefore not reported here.
- ``memory_returned`` is True when what is still allocated afterwards (Python's live memory
  when traced, RSS otherwise) is within ``tolerance`` (default 10%) of the data size.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import object_session

from ..telemetry._probes import rss_bytes
from ..workflows import WorkflowExecution
from ._errors import InvalidBenchmarkError
from ._policies import ActionPolicy, PolicyFunction, execution_rng, resolve_policy

MIB = 1024 * 1024
CHUNK_BYTES = 1024
SAMPLE_INTERVAL_SECONDS = 0.005


@dataclass(frozen=True)
class MemoryStressResult:
    """What one memory stress test measured (bytes)."""

    data_size_mb: float
    operations_requested: int
    operations_completed: int
    actions: tuple[str, ...]
    stopped_because: str                 # "done", "no available action", or "error: ..."
    rss_before_bytes: int
    peak_rss_bytes: int
    rss_after_bytes: int
    growth_bytes: int                    # peak - before
    retained_rss_bytes: int              # after - before
    python_retained_bytes: int | None    # tracemalloc: still-live Python allocations made during the test
    python_peak_bytes: int | None        # tracemalloc: highest Python allocation above the start
    memory_returned: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_stress_test(execution: WorkflowExecution, data_size_mb: float = 10, *, operations: int = 5,
                       action_policy: str | ActionPolicy | PolicyFunction | None = None, user: str | None = "load-test",
                       trace_python: bool = True, tolerance: float = 0.10, seed: int = 0) -> MemoryStressResult:
    """Perform up to ``operations`` actions carrying ``data_size_mb`` MiB each (see the module docstring)."""
    if not isinstance(execution, WorkflowExecution):
        raise InvalidBenchmarkError(f"memory_stress_test needs a WorkflowExecution, got {type(execution).__name__}")
    if isinstance(data_size_mb, bool) or not isinstance(data_size_mb, (int, float)) or not data_size_mb > 0:
        raise InvalidBenchmarkError(f"data_size_mb must be a positive number of MiB, got {data_size_mb!r}")
    if isinstance(operations, bool) or not isinstance(operations, int) or operations < 1:
        raise InvalidBenchmarkError(f"operations must be at least 1, got {operations!r}")
    session = object_session(execution)
    if session is None:
        raise InvalidBenchmarkError("the execution is not attached to a session; load it with "
                                    "session.get(WorkflowExecution, id) first")
    policy = resolve_policy(action_policy)
    rng = execution_rng(seed, 0)
    data_bytes = int(data_size_mb * MIB)

    gc.collect()
    tracing_was_on = tracemalloc.is_tracing()
    if trace_python and not tracing_was_on:
        tracemalloc.start()
    python_before = tracemalloc.get_traced_memory()[0] if trace_python else 0
    if trace_python:
        tracemalloc.reset_peak()
    rss_before = rss_bytes()
    peak = [rss_before]
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(peak, done), name="flowscope-memory-stress", daemon=True)
    started = time.perf_counter()
    sampler.start()
    performed: list[str] = []
    stopped = "done"
    python_peak = None
    try:
        payload = _payload(data_bytes)
        for _ in range(operations):
            available = execution.available_actions(user)
            action = policy.choose(execution, available, rng) if available else None
            if action is None:
                stopped = "no available action"
                break
            try:
                execution.perform_action(action, user=user, additional_context={"stress_payload": payload})
            except Exception as err:
                stopped = f"error: {type(err).__name__}: {err}"
                break
            performed.append(action)
            peak[0] = max(peak[0], rss_bytes())
        del payload
        if trace_python:
            python_peak = max(0, tracemalloc.get_traced_memory()[1] - python_before)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    session.expire_all()      # the committed transitions hold the data too
    gc.collect()
    rss_after = rss_bytes()
    python_retained = None
    if trace_python:
        python_retained = max(0, tracemalloc.get_traced_memory()[0] - python_before)
        if not tracing_was_on:
            tracemalloc.stop()
    retained = python_retained if python_retained is not None else max(0, rss_after - rss_before)
    return MemoryStressResult(
        data_size_mb=float(data_size_mb), operations_requested=operations, operations_completed=len(performed),
        actions=tuple(performed), stopped_because=stopped, rss_before_bytes=rss_before, peak_rss_bytes=peak[0],
        rss_after_bytes=rss_after, growth_bytes=max(0, peak[0] - rss_before),
        retained_rss_bytes=rss_after - rss_before, python_retained_bytes=python_retained,
        python_peak_bytes=python_peak, memory_returned=retained <= tolerance * data_bytes, seconds=seconds)


def _payload(data_bytes: int) -> list[str]:
    chunks = max(1, data_bytes // CHUNK_BYTES)
    filler = "x" * (CHUNK_BYTES - 8)
    return [f"{i:08d}{filler}" for i in range(chunks)]


def _sample(peak: list[int], done: threading.Event) -> None:
    while not done.wait(SAMPLE_INTERVAL_SECONDS):
        value = rss_bytes()
        if value > peak[0]:
            peak[0] = value
