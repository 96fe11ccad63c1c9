"""Turn on the OpenTelemetry instrumentations installed beside flowscope, as ``opentelemetry-instrument`` does.

    >>> instrument_installed()           # FLOWSCOPE_AUTO_INSTRUMENT and ``flowscope check`` call it
    ['flask', 'sqlalchemy']

With opentelemetry-instrumentation-flask (or -fastapi, -django, -celery, ...) installed, a
``FLOWSCOPE_AUTO_INSTRUMENT=true`` app needs nothing else: its requests and tasks become spans,
and so span-based operations (:mod:`._span_operations`).

Design decisions:
- The same discovery as ``opentelemetry-instrument``: every ``opentelemetry_instrumentor`` entry
  point, minus ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (names, or ``*`` for all), skipping one
  whose library is missing or of a version it does not support (the contrib package's own
  ``get_dist_dependency_conflicts``). Its loader (``auto_instrumentation._load_instrumentors``) is
  private and would instrument flowscope a second time (one warning line each run), so this
  is the loop written with the public pieces.
- Nothing is instrumented twice: an instrumentor already on (``opentelemetry-instrument``
  ran first, or the application did it) is left alone, and flowscope's own entry point is
  skipped (``configure`` instruments it).
- A failing instrumentation is one warning naming it; the others and the application go on.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points

from ._health import health

GROUP = "opentelemetry_instrumentor"
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
_OWN = "flowscope"
_logger = logging.getLogger("flowscope")


def disabled_instrumentations() -> set[str]:
    """The names in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (``*``: every one)."""
    return {name.strip() for name in os.environ.get(DISABLED_VARIABLE, "").split(",") if name.strip()}


def instrument_installed() -> list[str]:
    """Instrument every installed, enabled, supported instrumentation not yet on; their names."""
    disabled = disabled_instrumentations()
    if "*" in disabled:
        return []
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    done = []
    for entry_point in entry_points(group=GROUP):
        name = entry_point.name
        if name == _OWN or name in disabled:
            continue
        try:
            dist = entry_point.dist
            if dist is not None and get_dist_dependency_conflicts(dist) is not None:
                continue   # its library is not installed, or not a version it supports
            instrumentor = entry_point.load()()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue
            instrumentor.instrument()
            done.append(name)
        except ModuleNotFoundError:
            continue
        except Exception as err:
            health.failed(f"instrumenting {name}")
            _logger.warning("flowscope: the OpenTelemetry instrumentation %r failed to instrument (%s: %s); "
                            "the application runs without it", name, type(err).__name__, err)
    return done
