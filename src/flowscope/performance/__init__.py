"""The seed's performance API on top of flowscope's telemetry.

    >>> from flowscope.performance import Monitor
    >>> monitor = Monitor(execution)
    >>> with monitor.monitor_operation("approve"):
    ...     execution.perform_action("approve", user="alice")
    >>> print(monitor.performance_report().to_json())
"""

from ._findings import Thresholds
from ._monitor import Monitor, OperationMetrics, UnknownOperationError
from ._process_report import ProcessReport, process_report
from ._report import PerformanceReport
from ._terminal import print_process_report

__all__ = ["Monitor", "OperationMetrics", "PerformanceReport", "ProcessReport", "Thresholds",
           "UnknownOperationError", "print_process_report", "process_report"]
