"""Instrumentation with no code change: ``FLOWSCOPE_AUTO_INSTRUMENT`` and ``opentelemetry-instrument``.

    $ FLOWSCOPE_AUTO_INSTRUMENT=true python app.py          # flowscope configures from OTEL_*
    $ opentelemetry-instrument python app.py               # flowscope joins the distro's set-up

FLOWSCOPE_AUTO_INSTRUMENT
    The package installs ``flowscope_autoinstrument.pth`` into site-packages (setup.py says how,
    for regular and editable installs). Its one line reads the variable and, only when it is
    set to something else than an "off" value, imports the tiny top-level module
    ``flowscope_autoinstrument``, which calls :func:`install` here: ``configure()`` from the
    OTEL_* variables (instrumenting the workflow engine and query counting for every SQLAlchemy
    engine), the OpenTelemetry instrumentations installed in the environment (:mod:`._contrib`,
    so a Flask or FastAPI app's requests become operations) and an ``atexit`` flush, so a short
    script loses no spans. With the variable unset
    the cost is one ``os.environ.get`` at interpreter start (benchmarks/bench_startup_hook.py).
    Nothing here may break interpreter start: any failure is one line on stderr.

opentelemetry-instrument
    flowscope's ``opentelemetry_instrumentor`` entry point makes it call
    ``FlowscopeInstrumentor().instrument()``, whose ``_instrument`` calls :func:`join_provider`.
    The order of events decides what that does:

    - a TracerProvider is already installed (opentelemetry-distro's configurator runs before
      the instrumentors; an application that set its own and then instruments): flowscope's
      processors are added to it now (``configure()`` keeps a provider it finds);
    - none yet (no distro, or ``instrument()`` called before the application sets one): the
      decision waits for flowscope's first operation span. Until then flowscope's tracer is a
      stand-in that, on its first use, runs ``configure()`` (which then adds to the provider
      the application installed in between, or creates one from OTEL_*), puts the real tracer
      back and starts the span with it. After that first span the stand-in is gone: no cost
      on the hot path at all.

    With both (``FLOWSCOPE_AUTO_INSTRUMENT=true opentelemetry-instrument python app.py``) the
    start-up hook steps aside, so the distro, not flowscope, owns the provider.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from opentelemetry import trace

from . import _operation

VARIABLE = "FLOWSCOPE_AUTO_INSTRUMENT"
ON = ("1", "true", "yes", "on")
OFF = ("", "0", "false", "no", "off")
EXIT_FLUSH_TIMEOUT_MILLIS = 10_000

_logger = logging.getLogger("flowscope")
_lock = threading.Lock()
_installed: bool | None = None   # None: install() not run yet


def install() -> bool:
    """Run by the start-up hook when FLOWSCOPE_AUTO_INSTRUMENT is set; True if it instrumented.

    Idempotent: some interpreters (a venv on pyenv's CPython 3.11, for one) process the
    site-packages ``.pth`` files twice at start-up.
    """
    global _installed
    with _lock:
        if _installed is not None:
            return _installed
        _installed = False
    raw = os.environ.get(VARIABLE, "")
    value = raw.strip().lower()
    if value in OFF:
        return False
    if value not in ON:
        _logger.warning("flowscope: %s=%r is not one of %s (or %s); not instrumenting", VARIABLE, raw,
                        ", ".join(ON), ", ".join(v for v in OFF if v))
        return False
    if opentelemetry_instrument_is_starting():
        return False   # its sitecustomize runs next and calls FlowscopeInstrumentor through the entry point
    _installed = True
    from ._config import configure

    telemetry = configure()
    if not telemetry.disabled:
        from ._contrib import instrument_installed

        instrument_installed()   # Flask, FastAPI, Celery, ...: their requests and tasks become operations
    atexit.register(_flush_at_exit)
    return not telemetry.disabled


def opentelemetry_instrument_is_starting() -> bool:
    """True when opentelemetry-instrument launched this interpreter (its sitecustomize is on PYTHONPATH)."""
    marker = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")
    return any(entry.rstrip(os.sep).endswith(marker)
               for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry)


def _flush_at_exit() -> None:
    from ._config import current_telemetry

    telemetry = current_telemetry()
    if telemetry is None:
        return
    try:
        telemetry.force_flush(EXIT_FLUSH_TIMEOUT_MILLIS)
    except Exception as err:   # at exit: one line, never a traceback
        _logger.warning("flowscope: flushing telemetry at exit failed (%s: %s)", type(err).__name__, err)


# -- opentelemetry-instrument / FlowscopeInstrumentor ------------------------------------------


def join_provider(tracer_provider: Any = None) -> None:
    """Called by ``FlowscopeInstrumentor._instrument``: join the provider now or at first use."""
    from opentelemetry.sdk.trace import TracerProvider

    from ._config import configure, current_telemetry

    if current_telemetry() is not None:          # configure() ran (and is what instrumented us)
        return
    if tracer_provider is not None:
        configure(tracer_provider=tracer_provider, instrument=False)
        _operation.use_tracer(tracer_provider.get_tracer("flowscope", _version()))
    elif isinstance(trace.get_tracer_provider(), TracerProvider):
        configure(instrument=False)              # adds flowscope's processors to that provider
    else:
        _operation.use_tracer(_ConfiguringTracer(_operation.current_tracer()))


def undo_join() -> None:
    """Called by ``FlowscopeInstrumentor._uninstrument``: drop a stand-in tracer not yet used."""
    tracer = _operation.current_tracer()
    if isinstance(tracer, _ConfiguringTracer):
        _operation.use_tracer(tracer.real)


def _version() -> str:
    from .._version import __version__

    return __version__


class _ConfiguringTracer(trace.Tracer):
    """flowscope's tracer until its first span: configures, then hands over to the real tracer."""

    def __init__(self, real: trace.Tracer) -> None:
        self.real = real

    def _resolve(self) -> trace.Tracer:
        with _lock:
            if _operation.current_tracer() is self:
                _operation.use_tracer(self.real)
        from ._config import configure

        configure(instrument=False)   # idempotent; adds to the provider installed meanwhile, if any
        return self.real

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._resolve().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve().start_as_current_span(*args, **kwargs)
