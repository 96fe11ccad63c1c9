"""Span attribute names: the ``workflow.*`` namespace (OpenTelemetry semantic conventions
have no names for these)."""

OPERATION = "workflow.operation"
WORKFLOW_CLASS = "workflow.class"
EXECUTION_ID = "workflow.execution.id"
STEP = "workflow.step"
ACTION = "workflow.action"
STEP_TO = "workflow.step.to"

RSS_BYTES = "workflow.memory.rss_bytes"
RSS_DELTA_BYTES = "workflow.memory.rss_delta_bytes"
PEAK_INCREASE_BYTES = "workflow.memory.peak_increase_bytes"
TRACEMALLOC_PEAK_BYTES = "workflow.memory.tracemalloc_peak_bytes"
GC_COLLECTIONS = "workflow.gc.collections"

QUERY_COUNT = "workflow.db.query_count"
QUERY_DURATION_MS = "workflow.db.query_duration_ms"
