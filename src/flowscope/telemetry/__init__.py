"""OpenTelemetry plumbing: configuration, operation spans, probes, aggregation, span store.

    >>> import flowscope
    >>> telemetry = flowscope.configure()
    >>> with flowscope.operation("import_rows", rows=500):
    ...     ...
    >>> telemetry.aggregator.operation("import_rows").duration_ms.p95
"""

from ._aggregator import (
    RELATIVE_ACCURACY,
    Bottlenecks,
    BottleneckSpanProcessor,
    EagerLoadStats,
    FingerprintStats,
    MinMaxMean,
    OperationStats,
    Quantiles,
)
from ._config import Telemetry, configure, current_telemetry, on_configure
from ._health import TelemetryHealth, health
from ._instrumentor import FlowscopeInstrumentor
from ._operation import operation
from ._span_operations import SpanOperationProcessor
from ._span_store import SpanStore, frame_of, operation_spans
from .sql._eager_audit import EagerLoadVerdict, install_eager_load_audit, uninstall_eager_load_audit
from .sql._listeners import install_query_listeners, uninstall_query_listeners
from .sql._text import fingerprint

__all__ = [
    "RELATIVE_ACCURACY", "BottleneckSpanProcessor", "Bottlenecks", "EagerLoadStats", "EagerLoadVerdict",
    "FingerprintStats",
    "FlowscopeInstrumentor", "MinMaxMean", "OperationStats", "Quantiles", "SpanOperationProcessor", "SpanStore",
    "Telemetry",
    "TelemetryHealth", "configure", "current_telemetry", "fingerprint", "frame_of", "health",
    "install_eager_load_audit", "install_query_listeners", "on_configure", "operation", "operation_spans",
    "uninstall_eager_load_audit", "uninstall_query_listeners",
]

# Metrics next to the spans, and instrumentation with no code change (FLOWSCOPE_AUTO_INSTRUMENT).
from ._autoinstrument import install as auto_instrument  # noqa: E402
from ._metrics import METRICS, MetricSpec, MetricsSpanProcessor  # noqa: E402

__all__ += ["METRICS", "MetricSpec", "MetricsSpanProcessor", "auto_instrument"]
