"""``Benchmark``: the seed's benchmarking API, one object over the functions that do the work.

    >>> benchmark = Benchmark(iterations=30)
    >>> result = benchmark.compare(["implementation_a", "implementation_b"], lambda impl: run(impl))
    >>> print(result.comparison("implementation_b").verdict)
    >>> benchmark.benchmark_operation("render", render_invoice).median
    >>> load = benchmark.load_test(DocumentApproval, concurrent_executions=10, operations_per_execution=5)
    >>> print(f"Throughput: {load.throughput:.1f} workflows/second")
    >>> benchmark.memory_stress_test(execution, data_size_mb=10).memory_returned

Design decision: the class only carries defaults (iterations, warm-up, clock, seed); the
work is done by the module-level functions :func:`compare`, :func:`benchmark_operation`,
:func:`load_test` and :func:`memory_stress_test`, which are exported too. Keyword arguments
given to a method win over the instance's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..benchmark import _compare, _load_test, _memory_stress
from ..benchmark._compare import ComparisonResult, ResultComparison, SubjectResult
from ..benchmark._load_result import LoadTestResult
from ..benchmark._memory_stress import MemoryStressResult
from ..workflows import Workflow, WorkflowExecution


class Benchmark:
    """Compare implementations, benchmark one operation, load-test and memory-stress workflows."""

    def __init__(self, iterations: int = _compare.DEFAULT_ITERATIONS, warmup: int = _compare.DEFAULT_WARMUP,
                 min_time: float = _compare.DEFAULT_MIN_TIME, clock: str = "wall", seed: int = 0) -> None:
        self.iterations = iterations
        self.warmup = warmup
        self.min_time = min_time
        self.clock = clock
        self.seed = seed

    def compare(self, subjects: Iterable[Any] | Mapping[str, Callable[[], Any]],
                fn: Callable[[Any], Any] | None = None, **options: Any) -> ComparisonResult:
        """See :func:`flowscope.performance.compare`."""
        options.setdefault("iterations", self.iterations)
        options.setdefault("warmup", self.warmup)
        options.setdefault("min_time", self.min_time)
        options.setdefault("clock", self.clock)
        options.setdefault("seed", self.seed)
        return _compare.compare(subjects, fn, **options)

    def benchmark_operation(self, name: str, fn: Callable[[], Any], iterations: int = 10,
                            **options: Any) -> SubjectResult:
        """See :func:`flowscope.performance.benchmark_operation`."""
        options.setdefault("warmup", self.warmup)
        options.setdefault("min_time", self.min_time)
        options.setdefault("clock", self.clock)
        return _compare.benchmark_operation(name, fn, iterations, **options)

    def load_test(self, workflow: type[Workflow] | str, concurrent_executions: int = 10,
                  operations_per_execution: int = 5, **options: Any) -> LoadTestResult:
        """See :func:`flowscope.performance.load_test`."""
        options.setdefault("seed", self.seed)
        return _load_test.load_test(workflow, concurrent_executions, operations_per_execution, **options)

    def memory_stress_test(self, execution: WorkflowExecution, data_size_mb: float = 10,
                           **options: Any) -> MemoryStressResult:
        """See :func:`flowscope.performance.memory_stress_test`."""
        options.setdefault("seed", self.seed)
        return _memory_stress.memory_stress_test(execution, data_size_mb, **options)

    @staticmethod
    def compare_saved(old: ComparisonResult | str | Path | Mapping[str, Any],
                      new: ComparisonResult | str | Path | Mapping[str, Any]) -> ResultComparison:
        """See :func:`flowscope.performance.compare_saved`."""
        return _compare.compare_saved(old, new)
