"""Spans the batch span processor drops because its queue is full, counted in ``health``.

    >>> provider.add_span_processor(counting_batch_processor(exporter))
    >>> health.dropped_spans        # failed exports (_CountingExporter) + queue-full drops

Design decision: opentelemetry-sdk counts those drops itself, as its own metric
``otel.sdk.processor.span.processed`` with ``error.type=queue_full``, on the MeterProvider
given to ``BatchSpanProcessor(meter_provider=...)``, when the variable
``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` is true while the processor is built. flowscope's
processor gets a MeterProvider of its own (API no-op classes with one counter overridden)
whose counter adds queue-full drops to ``health.dropped_spans`` and ignores everything else:
one no-op call per exported batch, nothing per span, and nothing reaches the application's
own metrics. The variable is set only while flowscope's processor is built, under a lock,
and restored. Refused: a BatchSpanProcessor subclass comparing the queue's length before and
after each ``on_end`` (the export thread pops concurrently, so counts would be guesses).
An SDK without the parameter gets a plain BatchSpanProcessor; its queue drops are then not
counted (the SDK still logs "Queue full").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Counter, Meter, NoOpCounter, NoOpMeter, NoOpMeterProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ._health import health

_INTERNAL_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
_PROCESSED = "otel.sdk.processor.span.processed"   # semantic conventions, otel.sdk.* metrics
_ERROR_TYPE = "error.type"
_QUEUE_FULL = "queue_full"
_environment_lock = threading.Lock()


class _DropCounter(NoOpCounter):
    def add(self, amount: float, attributes: Mapping[str, Any] | None = None, context: Any = None) -> None:
        if attributes and attributes.get(_ERROR_TYPE) == _QUEUE_FULL:
            health.dropped(int(amount))


class _DropMeter(NoOpMeter):
    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        if name == _PROCESSED:
            return _DropCounter(name, unit=unit, description=description)
        return super().create_counter(name, unit, description)


class _DropMeterProvider(NoOpMeterProvider):
    def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None,
                  attributes: Any = None) -> Meter:
        return _DropMeter(name, version=version, schema_url=schema_url)


def counting_batch_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """A ``BatchSpanProcessor(exporter)`` whose queue-full drops count in ``health``."""
    with _environment_lock:
        previous = os.environ.get(_INTERNAL_METRICS)
        os.environ[_INTERNAL_METRICS] = "true"
        try:
            return BatchSpanProcessor(exporter, meter_provider=_DropMeterProvider())
        except TypeError:   # an SDK before the meter_provider parameter
            return BatchSpanProcessor(exporter)
        finally:
            if previous is None:
                del os.environ[_INTERNAL_METRICS]
            else:
                os.environ[_INTERNAL_METRICS] = previous
