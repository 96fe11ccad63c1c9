"""flowscope: monitor, benchmark and optimize workflow executions, built on OpenTelemetry.

    >>> import flowscope
    >>> flowscope.configure()                         # OTEL_* variables; idempotent
    >>> with flowscope.operation("import_rows", rows=500):
    ...     ...

The package's face. The layers below it (see docs/architecture.md) import only downwards; this
module wires the one hook that runs upwards: the report written at exit
(FLOWSCOPE_REPORT_HTML / FLOWSCOPE_REPORT_JSON) registers with telemetry's configuration here,
so telemetry never imports the report layer.
"""

from ._version import __version__
from .reports._exit_report import register as _register_exit_report
from .telemetry import configure, on_configure, operation

on_configure(_register_exit_report)

__all__ = ["__version__", "configure", "operation"]
