"""The seed's performance API on top of flowscope's telemetry.

    >>> from flowscope.performance import Monitor
    >>> monitor = Monitor(execution)
    >>> with monitor.monitor_operation("approve"):
    ...     execution.perform_action("approve", user="alice")
    >>> print(monitor.performance_report().to_json())
"""

from ..analysis._findings import Thresholds
from ..ci._check import CheckError, CheckResult, run_check
from ..reports._performance_report import PerformanceReport
from ..reports._process_report import ProcessReport, process_report
from ..reports._terminal import print_process_report
from ..reports._traces import TraceSpan, TraceView, slowest_traces
from ._monitor import Monitor, OperationMetrics, UnknownOperationError

__all__ = ["CheckError", "CheckResult", "Monitor", "OperationMetrics", "PerformanceReport", "ProcessReport",
           "Thresholds", "TraceSpan", "TraceView", "UnknownOperationError", "print_process_report", "process_report",
           "run_check", "slowest_traces"]

# Benchmarking and load testing (issue 4): Benchmark, compare(), load_test(), memory_stress_test().
from ..benchmark._compare import (
           ComparisonResult,
           ResultComparison,
           Sample,
           SubjectResult,
           benchmark_operation,
           compare,
           compare_saved,
)
from ..benchmark._errors import (
           BenchmarkError,
           ImportTargetError,
           InvalidBenchmarkError,
           InvalidLoadParameterError,
           InvalidPolicyError,
           LoadTestDatabaseError,
           LoadTestSetupError,
           NoInitialActionError,
           NotAWorkflowClassError,
           NotPicklableError,
)
from ..benchmark._load_result import ErrorGroup, LatencyStats, LoadProgress, LoadTestResult, WorkerSummary
from ..benchmark._load_test import load_test
from ..benchmark._memory_stress import MemoryStressResult, memory_stress_test
from ..benchmark._policies import ActionPolicy, CallablePolicy, FirstAvailable, RandomAvailable
from ..benchmark._statistics import Significance
from ._benchmark import Benchmark

__all__ += [
    "ActionPolicy", "Benchmark", "BenchmarkError", "CallablePolicy", "ComparisonResult", "ErrorGroup",
    "FirstAvailable", "ImportTargetError", "InvalidBenchmarkError", "InvalidLoadParameterError",
    "InvalidPolicyError", "LatencyStats", "LoadProgress", "LoadTestDatabaseError", "LoadTestResult",
    "LoadTestSetupError", "MemoryStressResult", "NoInitialActionError", "NotAWorkflowClassError",
    "NotPicklableError", "RandomAvailable", "ResultComparison", "Sample", "Significance", "SubjectResult",
    "WorkerSummary", "benchmark_operation", "compare", "compare_saved", "load_test", "memory_stress_test",
]

# Optimizers (issue 5): findings from measured data, and fixes measured again.
from .optimizations import MemoryOptimizer, PerformanceOptimizer, QueryOptimizer, Recommendation

__all__ += ["MemoryOptimizer", "PerformanceOptimizer", "QueryOptimizer", "Recommendation"]
