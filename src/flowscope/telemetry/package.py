"""Library versions FlowscopeInstrumentor supports (checked by opentelemetry-instrument)."""

_instruments = ("sqlalchemy >= 2.0, < 2.2",)
