"""Spans a full batch queue drops are counted in ``health.dropped_spans``, exactly.

A real ``BatchSpanProcessor`` with a small queue and an exporter that holds its first batch
until the test lets it go: while it holds, the queue fills and every further span is dropped.
"""

from __future__ import annotations

import os
import threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from flowscope.telemetry import health
from flowscope.telemetry._queue_drops import counting_batch_processor


class HoldingExporter(SpanExporter):
    """Blocks in its first export until ``release`` is set."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.holding.set()
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_every_span_a_full_queue_drops_is_counted(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "5")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    exporter = HoldingExporter()
    processor = counting_batch_processor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("queue-drops")
    health.reset()
    try:
        for _ in range(5):                      # one full batch wakes the export thread
            tracer.start_span("first").end()
        assert exporter.holding.wait(10)        # which now holds those 5
        for _ in range(30):                     # 10 fit in the queue, 20 are dropped
            tracer.start_span("more").end()

        assert health.dropped_spans == 20
    finally:
        exporter.release.set()
        provider.shutdown()
    assert exporter.exported == 15
    health.reset()


def test_building_the_processor_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", raising=False)
    counting_batch_processor(HoldingExporter()).shutdown()
    assert "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED" not in os.environ

    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "false")
    counting_batch_processor(HoldingExporter()).shutdown()
    assert os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] == "false"
