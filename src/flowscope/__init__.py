"""flowscope: monitor, benchmark and optimize workflow executions, built on OpenTelemetry.

    >>> import flowscope
    >>> flowscope.configure()                         # OTEL_* variables; idempotent
    >>> with flowscope.operation("import_rows", rows=500):
    ...     ...
"""

__version__ = "0.1.0"

from .telemetry import configure, operation  # noqa: E402  (after __version__, which they use)

__all__ = ["__version__", "configure", "operation"]
