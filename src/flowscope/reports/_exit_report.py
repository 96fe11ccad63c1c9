"""The process report written when the process exits: ``FLOWSCOPE_REPORT_HTML`` / ``_JSON``.

    $ FLOWSCOPE_AUTO_INSTRUMENT=true FLOWSCOPE_REPORT_HTML=flowscope-report.html pytest
    $ FLOWSCOPE_REPORT_JSON=report.json opentelemetry-instrument python app.py

With no code change, a whole run (a test suite, a batch job) leaves the report every other
command prints: operations, N+1 patterns with their relationship and line, recommendations,
the slowest traces. The package registers :func:`register` as a configure hook
(``telemetry.on_configure``), so :func:`flowscope.configure` adds the ``atexit`` hook when either
variable is set (telemetry enabled), without the telemetry layer importing this one. Writing never raises at exit: a path that cannot be written
is one warning on the ``flowscope`` logger (stderr when logging is not set up).
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..telemetry import Telemetry

VARIABLES = {"html": "FLOWSCOPE_REPORT_HTML", "json": "FLOWSCOPE_REPORT_JSON"}
_logger = logging.getLogger("flowscope")


def requested() -> dict[str, str]:
    """``{format: path}`` for each report variable that is set."""
    return {fmt: os.environ[var].strip() for fmt, var in VARIABLES.items() if os.environ.get(var, "").strip()}


def register(telemetry: Telemetry) -> None:
    """Write the requested reports at exit (see the module docstring)."""
    targets = requested()
    if targets:
        atexit.register(write_reports, telemetry, targets)


def write_reports(telemetry: Telemetry, targets: dict[str, str]) -> None:
    """Build the process report once and write it in each requested format; never raise."""
    try:
        from ._process_report import process_report

        report = process_report(telemetry.aggregator, span_store=telemetry.span_store)
    except Exception as err:
        _say(f"cannot build the exit report ({type(err).__name__}: {err})")
        return
    for fmt, path in targets.items():
        try:
            text = report.to_html() if fmt == "html" else report.to_json()
            with open(path, "w", encoding="utf-8") as out:
                out.write(text + "\n")
        except Exception as err:
            _say(f"{VARIABLES[fmt]}={path!r}: cannot write the report ({type(err).__name__}: {err})")
        else:
            _logger.info("flowscope: wrote %s", path)


def _say(message: str) -> None:
    _logger.warning("flowscope: %s", message)   # on stderr also without logging set up (lastResort)
