"""``flowscope.configure()``: OpenTelemetry set-up from the standard OTEL_* variables.

    >>> import flowscope
    >>> telemetry = flowscope.configure()              # idempotent
    >>> telemetry.aggregator.bottlenecks().slowest
    >>> flowscope.configure(exporter="console")         # overrides beat the environment

Honoured: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_EXPORTER
(otlp | console | none), OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / _PROTOCOL (grpc,
http/protobuf) / _HEADERS / _TIMEOUT, OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG;
OTEL_METRICS_EXPORTER (otlp | console | none) with OTEL_EXPORTER_OTLP_[METRICS_]* for the
metrics of :mod:`._metrics`; and flowscope's own FLOWSCOPE_MEMORY_PROFILE (tracemalloc | off),
FLOWSCOPE_SPAN_STORE_SIZE, FLOWSCOPE_SPAN_STORE_BYTES, FLOWSCOPE_OPERATION_SPAN_KINDS (:mod:`._span_operations`),
FLOWSCOPE_AUDIT_EAGER_LOADS (:mod:`.sql._eager_audit`). Layers
above telemetry that must act when it is set up register an :func:`on_configure` hook (the
package registers the report written at exit, :mod:`flowscope.reports._exit_report`, for
FLOWSCOPE_REPORT_HTML / FLOWSCOPE_REPORT_JSON).

Design decisions:
- A TracerProvider someone else installed (opentelemetry-instrument, the application) is kept:
  flowscope adds its processors to it and leaves exporting to its owner.
- Without OTEL_TRACES_EXPORTER, spans are exported over OTLP only when an OTLP endpoint is
  configured: local reports need no backend, and a demo must not retry a collector that is
  not there. The protocol defaults to grpc, as opentelemetry-instrument's does.
- Export runs on the BatchSpanProcessor's thread (never on the application's); spans of failed
  exports and spans the processor's full queue dropped (:mod:`._queue_drops`) are counted as
  dropped spans in :data:`health`.
- An invalid value gives one warning naming the variable and the value, then a safe default.
- Metrics (:mod:`._metrics`) are exported only when OTEL_METRICS_EXPORTER asks for it or a
  MeterProvider is already installed; with them off nothing is added to the span path.
- An OTLP exporter flowscope created that cannot reach its endpoint gives one warning per
  signal (:mod:`._export`) instead of the exporter's own log line per retry and batch.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SpanExporter,
)

from .._version import __version__
from . import _operation
from ._aggregator import BottleneckSpanProcessor
from ._export import ResilientSpanExporter, quiet_exporter_logs
from ._health import health
from ._metrics import MetricsSpanProcessor, setup_metrics
from ._operation import settings
from ._processor_chain import ProcessorChain
from ._queue_drops import counting_batch_processor
from ._span_operations import DEFAULT_KINDS, SpanOperationProcessor, parse_kinds
from ._span_store import DEFAULT_CAPACITY, DEFAULT_MAX_BYTES, SpanStore

_logger = logging.getLogger("flowscope")
_lock = threading.Lock()
_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("grpc", "http/protobuf")
_SAMPLERS = {
    "always_on": lambda arg: sampling.ALWAYS_ON,
    "always_off": lambda arg: sampling.ALWAYS_OFF,
    "traceidratio": lambda arg: sampling.TraceIdRatioBased(arg),
    "parentbased_always_on": lambda arg: sampling.ParentBased(sampling.ALWAYS_ON),
    "parentbased_always_off": lambda arg: sampling.ParentBased(sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda arg: sampling.ParentBased(sampling.TraceIdRatioBased(arg)),
}


@dataclass
class Telemetry:
    """What :func:`configure` set up."""

    aggregator: BottleneckSpanProcessor
    span_store: SpanStore
    tracer_provider: TracerProvider | None
    exporter: str                      # otlp | console | both ("otlp,console") | none | "owner's"
    protocol: str | None = None
    owns_provider: bool = False
    disabled: bool = False
    warnings: list[str] = field(default_factory=list)
    metrics_exporter: str = "none"     # otlp | console | none | "owner's" (MeterProvider not ours)
    meter_provider: Any = None         # the SDK MeterProvider metrics go to, None when metrics are off
    metrics: MetricsSpanProcessor | None = None
    span_operations: SpanOperationProcessor | None = None   # None: no span kind is an operation
    span_exporters: list[ResilientSpanExporter] = field(default_factory=list)   # the ones flowscope created

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export what is queued now (e.g. before a short script exits); returns within
        ``timeout_millis`` whatever the backend does, False when the flush did not finish.

        Design decision: the SDK's batch processor (1.45) waits for its export however long the
        exporter's own retries take, whatever timeout it is given; the flush runs on a daemon
        thread that the caller waits for at most the timeout (an unfinished one goes on there).
        """
        done: list[bool] = []
        budget = max(timeout_millis, 0) / 1000
        for exporter in self.span_exporters:   # an export started by the flush gives up in time
            exporter.bound_flush(time.monotonic() + budget)
        worker = threading.Thread(target=lambda: done.append(self._flush(timeout_millis)),
                                  name="flowscope-flush", daemon=True)
        worker.start()
        worker.join(budget)
        for exporter in self.span_exporters:
            exporter.bound_flush(None)
        return bool(done and done[0])

    def _flush(self, timeout_millis: int) -> bool:
        flushed = True
        try:
            if self.tracer_provider is not None:
                flushed = bool(self.tracer_provider.force_flush(timeout_millis))
            if self.meter_provider is not None:
                flushed = bool(self.meter_provider.force_flush(timeout_millis)) and flushed
        except Exception:
            health.failed("flushing telemetry")
            flushed = False
        return flushed


_telemetry: Telemetry | None = None
_configure_hooks: list[Callable[[Telemetry], None]] = []


def on_configure(hook: Callable[[Telemetry], None]) -> None:
    """Call ``hook(telemetry)`` once telemetry is set up (enabled), now if it already is.

    How a higher layer acts on configuration without telemetry importing it: ``flowscope``
    registers the exit report this way. A hook that raises is counted in :data:`health`,
    never raised into the application.
    """
    with _lock:
        _configure_hooks.append(hook)
        telemetry = _telemetry
    if telemetry is not None and not telemetry.disabled:
        _run_hook(hook, telemetry)


def _run_hook(hook: Callable[[Telemetry], None], telemetry: Telemetry) -> None:
    try:
        hook(telemetry)
    except Exception:
        health.failed("running a configure hook")


def current_telemetry() -> Telemetry | None:
    """The :class:`Telemetry` set up by :func:`configure`, or ``None`` before it is called."""
    return _telemetry


def configure(*, service_name: str | None = None, exporter: str | None = None,
              endpoint: str | None = None, protocol: str | None = None,
              headers: dict[str, str] | None = None, sampler: str | None = None,
              sampler_arg: float | None = None, span_store_capacity: int | None = None,
              memory_profile: str | None = None, instrument: bool = True,
              tracer_provider: TracerProvider | None = None,
              operation_span_kinds: str | None = None) -> Telemetry:
    """Set up flowscope's telemetry once; later calls return the same :class:`Telemetry`.

    Keyword arguments override the corresponding environment variables. ``instrument``
    also instruments the workflow engine and query counting (:class:`FlowscopeInstrumentor`).
    ``tracer_provider`` adds flowscope's processors to that provider instead of the global one.
    ``operation_span_kinds`` (``FLOWSCOPE_OPERATION_SPAN_KINDS``, default ``server,consumer``;
    ``none`` switches it off): spans of these kinds, whoever starts them, are operations.
    """
    global _telemetry
    with _lock:
        if _telemetry is not None:
            return _telemetry
        warnings: list[str] = []
        _configure_memory_profile(memory_profile, warnings)
        capacity = _int_setting("FLOWSCOPE_SPAN_STORE_SIZE", span_store_capacity, DEFAULT_CAPACITY, warnings)
        max_bytes = _int_setting("FLOWSCOPE_SPAN_STORE_BYTES", None, DEFAULT_MAX_BYTES, warnings)
        telemetry = Telemetry(BottleneckSpanProcessor(), SpanStore(capacity, max_bytes), None, "none",
                              warnings=warnings)
        if _flag("OTEL_SDK_DISABLED"):
            telemetry.disabled = True
        else:
            kinds = _span_kinds(operation_span_kinds, warnings)
            telemetry.span_operations = SpanOperationProcessor(kinds) if kinds else None
            _attach(telemetry, tracer_provider, service_name, exporter, endpoint, protocol, headers,
                    sampler, sampler_arg, warnings)
        _telemetry = telemetry
        hooks = list(_configure_hooks) if not telemetry.disabled else []
    for hook in hooks:           # outside the lock: a hook may call configure() itself
        _run_hook(hook, telemetry)
    if instrument:
        from ._instrumentor import FlowscopeInstrumentor

        instrumentor = FlowscopeInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        if _flag("FLOWSCOPE_AUDIT_EAGER_LOADS") and not telemetry.disabled:
            from .sql._eager_audit import install_eager_load_audit

            install_eager_load_audit()
    return telemetry


def _attach(telemetry: Telemetry, provider: TracerProvider | None, service_name: str | None,
            exporter: str | None, endpoint: str | None, protocol: str | None,
            headers: dict[str, str] | None, sampler: str | None, sampler_arg: float | None,
            warnings: list[str]) -> None:
    if provider is None:
        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            provider = existing
            telemetry.exporter = "owner's"
    if provider is None:
        resource = Resource.create({"service.name": service_name} if service_name else {})
        resilient: list[tuple[ResilientSpanExporter, Any]] = []   # (exporter, its batch processor)
        # atexit runs hooks last-registered first: this one after the provider's own shutdown
        atexit.register(lambda: [e.report_exit() for e, _ in resilient])
        # SpanLimits reads OTEL_(SPAN_)ATTRIBUTE_VALUE_LENGTH_LIMIT itself; without one, string
        # values are cut at flowscope's default (the OTel default is no limit: one 10 MB value
        # then fails a whole gRPC batch and stays in the span store).
        limits = SpanLimits(max_attribute_length=None if _operation.attribute_length_limit()
                            else _operation.DEFAULT_MAX_ATTRIBUTE_LENGTH)
        provider = TracerProvider(resource=resource, sampler=_sampler(sampler, sampler_arg, warnings),
                                  span_limits=limits)
        telemetry.owns_provider = True
        telemetry.exporter, span_exporters, telemetry.protocol = _exporters(exporter, endpoint, protocol,
                                                                            headers, warnings)
        _add_processors(telemetry, provider)
        for span_exporter in span_exporters:   # one batch processor each, as the SDK's own set-up
            wrapped = ResilientSpanExporter(span_exporter)
            resilient.append((wrapped, counting_batch_processor(wrapped)))
            telemetry.span_exporters.append(wrapped)
            provider.add_span_processor(resilient[-1][1])
        # ... and this one before it: the exports left at exit get a bounded time
        atexit.register(lambda: [e.begin_exit(processor) for e, processor in resilient])
        trace.set_tracer_provider(provider)
    else:
        _add_processors(telemetry, provider)
    telemetry.tracer_provider = provider
    # Operation spans start on this provider's own tracer: the one flowscope's processors are
    # on (also when it is not the global provider), and no ProxyTracer hop per span.
    _operation.use_tracer(provider.get_tracer("flowscope", __version__))
    _attach_metrics(telemetry, provider, endpoint, protocol, headers, warnings)


def _add_processors(telemetry: Telemetry, provider: TracerProvider) -> None:
    """Span-based operations first (they finish before the aggregator reads a frame), then
    the aggregator and the span store: one registration (see :mod:`._processor_chain`)."""
    provider.add_span_processor(ProcessorChain(telemetry.span_operations, telemetry.aggregator,
                                               telemetry.span_store))


def _span_kinds(override: str | None, warnings: list[str]) -> frozenset:
    raw = override if override is not None else os.environ.get("FLOWSCOPE_OPERATION_SPAN_KINDS")
    if raw is None or not raw.strip():
        return DEFAULT_KINDS
    try:
        return parse_kinds(raw)
    except ValueError as err:
        _warn(warnings, f"FLOWSCOPE_OPERATION_SPAN_KINDS={raw!r}: {err}; using server,consumer")
        return DEFAULT_KINDS


def _attach_metrics(telemetry: Telemetry, provider: TracerProvider, endpoint: str | None,
                    protocol: str | None, headers: dict[str, str] | None, warnings: list[str]) -> None:
    """Metrics of :mod:`._metrics`, fed by a processor after the aggregator (it reads the frames)."""
    try:
        resource = getattr(provider, "resource", None) or Resource.create({})
        setup = setup_metrics(resource, endpoint, protocol, headers,
                              _otlp_timeout("METRICS", warnings), lambda message: _warn(warnings, message))
        if setup.processor is not None:
            provider.add_span_processor(setup.processor)
        telemetry.metrics_exporter = setup.exporter
        telemetry.meter_provider = setup.meter_provider
        telemetry.metrics = setup.processor
    except Exception as err:
        _warn(warnings, f"cannot set up metrics ({type(err).__name__}: {err}); spans are not affected")


def _exporters(name: str | None, endpoint: str | None, protocol: str | None,
               headers: dict[str, str] | None,
               warnings: list[str]) -> tuple[str, list[SpanExporter], str | None]:
    """The span exporters asked for, by ``exporter=`` or ``OTEL_TRACES_EXPORTER`` (a
    comma-separated list, as in the SDK's own configuration): their names joined, the
    exporters, and the OTLP protocol if OTLP is among them. Unknown names are warned about
    and skipped."""
    if name is None:
        source, value = "OTEL_TRACES_EXPORTER", os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    else:
        source, value = "exporter", name.strip().lower()
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        _warn(warnings, f"{source}={value!r} names {', '.join(map(repr, unknown))}, not one of "
                        f"{', '.join(_EXPORTERS)}; "
                        + ("spans will not be exported (local reports still work)"
                           if len(unknown) == len(names) else "exporting to the others only"))
        names = [n for n in names if n in _EXPORTERS]
    elif not names:   # unset: OTLP only when an endpoint is configured (see the module docstring)
        has_endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT")
        names = ["otlp"] if has_endpoint else []
    exporters: list[SpanExporter] = []
    chosen: list[str] = []
    proto = None
    for exporter_name in dict.fromkeys(names):   # once each, in the order given
        if exporter_name == "console":
            exporters.append(ConsoleSpanExporter())
            chosen.append("console")
        elif exporter_name == "otlp":
            otlp, proto = _otlp_exporter(endpoint, protocol, headers, warnings)
            if otlp is not None:
                exporters.append(otlp)
                chosen.append("otlp")
    return ",".join(chosen) or "none", exporters, proto


def _otlp_exporter(endpoint: str | None, protocol: str | None, headers: dict[str, str] | None,
                   warnings: list[str]) -> tuple[SpanExporter | None, str | None]:
    source, proto = "protocol", protocol
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if not proto:
            source, proto = variable, os.environ.get(variable)
    proto = proto or "grpc"
    if proto not in _PROTOCOLS:   # name the variable that was actually read
        _warn(warnings, f"{source}={proto!r} is not an OTLP protocol ({', '.join(_PROTOCOLS)}); using grpc")
        proto = "grpc"
    try:
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["endpoint"] = endpoint if proto == "grpc" else _http_traces_url(endpoint)
        if headers:
            kwargs["headers"] = headers
        timeout = _otlp_timeout("TRACES", warnings)
        if timeout is not None:
            kwargs["timeout"] = timeout
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
        span_exporter = OTLPSpanExporter(**kwargs)
        quiet_exporter_logs()
        return span_exporter, proto
    except Exception as err:
        _warn(warnings, f"cannot create the OTLP {proto} exporter ({type(err).__name__}: {err}); "
                        "spans will not be exported over OTLP (check OTEL_EXPORTER_OTLP_ENDPOINT)")
        return None, None


def _otlp_timeout(signal: str, warnings: list[str]) -> float | None:
    """A valid OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT is left to the exporter (None); an invalid
    one, which would make the exporter's constructor raise, gives a warning and its default."""
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = os.environ.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            if float(raw) > 0:
                return None
        except ValueError:
            pass
        _warn(warnings, f"{variable}={raw!r} is not a positive number of seconds; using 10")
        return 10.0
    return None


def _http_traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _sampler(name: str | None, arg: float | None, warnings: list[str]) -> sampling.Sampler:
    variable = "sampler" if name is not None else "OTEL_TRACES_SAMPLER"
    name = (name or os.environ.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        _warn(warnings, f"{variable}={name!r} is not a known sampler ({', '.join(_SAMPLERS)}); "
                        "using parentbased_always_on")
        name = "parentbased_always_on"
    rate = 1.0
    if name.endswith("traceidratio"):
        raw = arg if arg is not None else os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            rate = float(raw)
            if not 0.0 <= rate <= 1.0:
                raise ValueError
        except (TypeError, ValueError):
            _warn(warnings, f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio between 0 and 1; using 1.0")
            rate = 1.0
    return _SAMPLERS[name](rate)


def _configure_memory_profile(value: str | None, warnings: list[str]) -> None:
    raw = value if value is not None else os.environ.get("FLOWSCOPE_MEMORY_PROFILE", "off")
    mode = raw.strip().lower()
    if mode in ("", "off", "none", "false", "0"):
        settings.tracemalloc = False
    elif mode == "tracemalloc":
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        settings.tracemalloc = True
    else:
        _warn(warnings, f"FLOWSCOPE_MEMORY_PROFILE={raw!r} is not 'tracemalloc' or 'off'; using off")


def _int_setting(variable: str, override: int | None, default: int, warnings: list[str]) -> int:
    raw: Any = override if override is not None else os.environ.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
        if value < 1:
            raise ValueError
        return value
    except (TypeError, ValueError):
        _warn(warnings, f"{variable}={raw!r} is not a positive integer; using {default}")
        return default


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("true", "1", "yes")


def _warn(warnings: list[str], message: str) -> None:
    if message in warnings:            # one variable read for spans and for metrics: one warning
        return
    warnings.append(message)
    _logger.warning("flowscope: %s", message)


