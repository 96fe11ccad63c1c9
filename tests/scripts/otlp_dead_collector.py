"""Subprocess target: flowscope configured to export to an OTLP endpoint where nothing listens.

    python tests/scripts/otlp_dead_collector.py PROTOCOL ENDING [OPERATIONS]

PROTOCOL is ``grpc``, ``http/protobuf`` or ``none`` (no exporter: the baseline). The endpoint is
a free local port that nobody listens on (taken, then closed). ENDING is ``flush`` (call
``telemetry.force_flush()`` after the operations, then report) or ``exit`` (report and exit,
leaving the queued spans to the SDK's shutdown at interpreter exit). Prints one JSON line:
the seconds the operations took, how many succeeded, the flush result and time, and
``health.snapshot()``. The OTEL_BSP_* and OTEL_EXPORTER_OTLP_TIMEOUT variables of the caller
are honoured (the SDK reads them).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    protocol, ending = sys.argv[1], sys.argv[2]
    operations = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    if protocol != "none":
        os.environ["OTEL_TRACES_EXPORTER"] = "otlp"
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"

    import flowscope
    from flowscope.telemetry import health

    telemetry = flowscope.configure()
    succeeded = 0
    start = time.perf_counter()
    for i in range(operations):
        with flowscope.operation("tick", i=i):
            sum(range(200))
        succeeded += 1
    elapsed = time.perf_counter() - start

    flushed, flush_seconds = None, 0.0
    if ending == "flush":
        start = time.perf_counter()
        flushed = telemetry.force_flush()
        flush_seconds = time.perf_counter() - start
    print(json.dumps({
        "exporter": telemetry.exporter, "protocol": telemetry.protocol,
        "operations_seconds": elapsed, "succeeded": succeeded,
        "flushed": flushed, "flush_seconds": flush_seconds, "health": health.snapshot(),
        "stored": len(telemetry.span_store.by_operation("tick")),
    }), flush=True)


if __name__ == "__main__":
    main()
