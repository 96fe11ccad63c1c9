"""The finding rules and their inputs: observations from spans and statistics, thresholds,
severities, and the :class:`Recommendation` they produce (N+1, repeated and slow queries,
slow operations, memory, missing indexes).

Reads telemetry's data, never writes it; ``flowscope.performance`` re-exports what is public.
"""
