"""A minimal real OTLP receiver for metrics and traces, gRPC and HTTP/protobuf, on 127.0.0.1.

    with OtlpReceiver() as receiver:
        env = receiver.env("grpc")          # OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL
        ...                                 # a subprocess exports
        receiver.metric_points("workflow.db.queries")

Phoenix (tests/support/phoenix.py) receives traces only; metrics need another receiver, and no
OpenTelemetry Collector runs on this machine (no Docker engine, no package ships the binary).
This one speaks the official protocol with the official message definitions
(opentelemetry-proto's generated gRPC services; for HTTP, POST /v1/metrics and /v1/traces with
an ``application/x-protobuf`` body, as the OTLP specification says) and keeps what it was sent,
decoded, for the tests to read.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class OtlpReceiver:
    """gRPC and HTTP OTLP endpoints; ``metrics`` and ``spans`` hold what arrived."""

    def __init__(self, http_port: int = 0) -> None:
        self._requested_http_port = http_port
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self.grpc_port = self.http_port = 0

    # -- life cycle ----------------------------------------------------------------------------
    def __enter__(self) -> OtlpReceiver:
        receiver = self

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC method name
                receiver._add(receiver.metric_requests, request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver._add(receiver.trace_requests, request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._grpc)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/metrics":
                    message = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    receiver._add(receiver.metric_requests, message)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                elif self.path == "/v1/traces":
                    message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver._add(receiver.trace_requests, message)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                else:
                    self.send_error(404)
                    return
                payload = reply.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self._requested_http_port), Handler)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._grpc is not None:
            self._grpc.stop(0)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def _add(self, box: list, message: Any) -> None:
        with self._lock:
            box.append(message)

    def clear(self) -> None:
        with self._lock:
            self.metric_requests.clear()
            self.trace_requests.clear()

    def env(self, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_EXPORTER_OTLP_ENDPOINT and _PROTOCOL for this receiver (``grpc`` or ``http/protobuf``)."""
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    # -- reading -------------------------------------------------------------------------------
    def metrics(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """(resource attributes, Metric message) of every metric received, in arrival order."""
        with self._lock:
            requests = list(self.metric_requests)
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        yield resource, metric

    def metric_names(self) -> set[str]:
        return {metric.name for _, metric in self.metrics()}

    def last_points(self, name: str) -> dict[tuple, Any]:
        """The last data point of metric ``name`` per attribute set (cumulative: the totals)."""
        points: dict[tuple, Any] = {}
        for _, metric in self.metrics():
            if metric.name != name:
                continue
            kind = metric.WhichOneof("data")
            for point in getattr(metric, kind).data_points:
                points[tuple(sorted(_attributes(point.attributes).items()))] = point
        return points

    def spans(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, attributes) of every span received."""
        with self._lock:
            requests = list(self.trace_requests)
        return [(span.name, _attributes(span.attributes)) for request in requests
                for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


class ReceiverProcess:
    """This module run as its own process on ``port``: ``received`` holds (arrival time, span name)
    of what it printed, across restarts (the fault-injection tests and benchmarks kill it)."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port, self.env = port, env
        self.received: list[tuple[float, str]] = []
        self.process: Any = None

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.received]

    def start(self) -> None:
        import subprocess
        import sys

        self.process = subprocess.Popen([sys.executable, __file__, str(self.port)], stdout=subprocess.PIPE,
                                        text=True, env=self.env)
        assert self.process.stdout.readline().strip() == "ready"
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: Any) -> None:
        import time

        for line in process.stdout:
            self.received.append((time.time(), line.strip()))

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def main() -> None:
    """Run as a process: ``python otlp_receiver.py HTTP_PORT`` prints ``ready`` and then the name
    of every span received over HTTP, one per line, until killed (the fault-injection tests)."""
    import sys

    class Printing(OtlpReceiver):
        def _add(self, box: list, message: Any) -> None:
            super()._add(box, message)
            if box is self.trace_requests:
                for resource_spans in message.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            print(span.name, flush=True)

    with Printing(http_port=int(sys.argv[1])):
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
