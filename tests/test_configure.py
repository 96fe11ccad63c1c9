"""Specification of ``flowscope.configure()``: OpenTelemetry set up from the OTEL_* variables.

``configure`` runs once per process, so every test here runs a fresh interpreter
(``sys.executable``) with an environment stripped of the caller's OTEL_* and FLOWSCOPE_*
variables and given exactly the ones under test. Each script prints one JSON line (its last
line of stdout); stderr is checked too, because that is where a warning goes.

The OTLP exporter is exercised against a real gRPC receiver (grpcio with the official OTLP
service definition, inside the script) and against a closed port (a free port taken and closed
again), over gRPC and over HTTP/protobuf.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"

PROLOGUE = textwrap.dedent("""
    import json, sys
    from sqlalchemy import create_engine, text
    import flowscope
    from flowscope.telemetry import _attributes as attr

    def run_app(telemetry):
        '''The application: an operation running 3 queries; what the span store saw of it.'''
        engine = create_engine("sqlite://")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).all()
            with flowscope.operation("checkout", cart=3) as span:
                for i in range(3):
                    conn.execute(text("SELECT :i"), {"i": i}).all()
        stored = telemetry.span_store.by_operation("checkout")
        return {"recording": span.is_recording(),
                "stored": [dict(s.attributes) for s in stored]}
""")


def clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWSCOPE_"))}
    # The in-process test receiver and the exporter's channel share gRPC's C core, which may log
    # a GOAWAY line when the receiver stops first; that is the test harness, not flowscope
    # (whose warnings go through Python logging and are what these tests count).
    env["GRPC_VERBOSITY"] = "ERROR"
    env.update(variables)
    return env


def run_script(body: str, timeout: float = 60, **variables: str) -> tuple[dict, subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", PROLOGUE + textwrap.dedent(body)],
                          env=clean_env(**variables), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return last_json_line(done.stdout), done


def last_json_line(stdout: str) -> dict:
    """The script's report: its last one-line JSON object (exporters may print after it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"'):
            return json.loads(line)
    raise AssertionError(f"no JSON report in stdout:\n{stdout}")


# --- set-up -------------------------------------------------------------------------------------


def test_configure_is_idempotent():
    result, done = run_script("""
        first = flowscope.configure()
        second = flowscope.configure(exporter="console", service_name="ignored")
        print(json.dumps({"same": first is second,
                          "current": flowscope.telemetry.current_telemetry() is first,
                          "app": run_app(first),
                          "aggregated": first.aggregator.operation("checkout").count}))
    """)

    assert result["same"] and result["current"]
    assert len(result["app"]["stored"]) == 1     # processors added once: one span stored,
    assert result["aggregated"] == 1             # and counted once
    assert done.stderr == ""


def test_configure_without_any_variable_records_locally_and_exports_nothing():
    result, done = run_script("""
        telemetry = flowscope.configure()
        print(json.dumps({"exporter": telemetry.exporter, "owns": telemetry.owns_provider,
                          "app": run_app(telemetry)}))
    """)

    assert result["exporter"] == "none"
    assert result["owns"] is True
    assert result["app"]["stored"][0][attr_query_count()] == 3
    assert done.stderr == ""


def attr_query_count() -> str:
    from flowscope.telemetry import _attributes as attr

    return attr.QUERY_COUNT


def test_sdk_disabled_records_nothing_and_the_application_still_runs():
    result, done = run_script("""
        telemetry = flowscope.configure()
        app = run_app(telemetry)
        try:
            with flowscope.operation("fails"):
                raise KeyError("still raised")
        except KeyError as err:
            raised = str(err)
        print(json.dumps({"disabled": telemetry.disabled, "provider": repr(telemetry.tracer_provider),
                          "app": app, "raised": raised}))
    """, OTEL_SDK_DISABLED="true")

    assert result["disabled"] is True
    assert result["provider"] == "None"
    assert result["app"] == {"recording": False, "stored": []}
    assert result["raised"] == "'still raised'"
    assert done.stderr == ""


def test_service_name_and_resource_attributes_land_in_the_resource():
    result, _ = run_script("""
        telemetry = flowscope.configure()
        run_app(telemetry)
        span, = telemetry.span_store.by_operation("checkout")
        print(json.dumps(dict(span.resource.attributes)))
    """, OTEL_SERVICE_NAME="billing", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging,team=payments")

    assert result["service.name"] == "billing"
    assert result["deployment.environment"] == "staging"
    assert result["team"] == "payments"


def test_the_console_exporter_prints_the_spans():
    _, done = run_script("""
        telemetry = flowscope.configure()
        run_app(telemetry)
        print(json.dumps({"exporter": telemetry.exporter}))
    """, OTEL_TRACES_EXPORTER="console")

    printed = done.stdout
    assert '"name": "checkout"' in printed
    assert '"workflow.db.query_count": 3' in printed
    assert last_json_line(printed) == {"exporter": "console"}


def test_a_list_of_exporters_sends_the_spans_to_each():
    from support.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        result, done = run_script("""
            telemetry = flowscope.configure()
            run_app(telemetry)
            telemetry.tracer_provider.force_flush()
            print(json.dumps({"exporter": telemetry.exporter}))
        """, OTEL_TRACES_EXPORTER="otlp, console", **receiver.env("grpc"))
        received = [name for name, _ in receiver.spans()]

    assert result["exporter"] == "otlp,console"
    assert received == ["checkout"]                    # over OTLP
    assert '"name": "checkout"' in done.stdout        # and on the console


def test_an_installed_sdk_tracer_provider_is_kept_and_given_flowscopes_processors():
    result, done = run_script("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        telemetry = flowscope.configure()
        app = run_app(telemetry)
        print(json.dumps({
            "kept": trace.get_tracer_provider() is provider and telemetry.tracer_provider is provider,
            "owns": telemetry.owns_provider, "exporter": telemetry.exporter,
            "owners_exporter": [s.name for s in exporter.get_finished_spans()],
            "owners_query_count": [s.attributes.get(attr.QUERY_COUNT) for s in exporter.get_finished_spans()],
            "app": app}))
    """, OTEL_TRACES_EXPORTER="console")   # the owner exports, flowscope adds no exporter

    assert result["kept"] is True
    assert result["owns"] is False
    assert result["exporter"] == "owner's"
    assert result["owners_exporter"] == ["checkout"]
    assert result["owners_query_count"] == [3]
    assert len(result["app"]["stored"]) == 1
    assert '"name": "checkout"' not in done.stdout         # no console exporter of flowscope's


def test_a_provider_given_to_configure_receives_the_operation_spans_even_when_not_global():
    result, _ = run_script("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        mine = TracerProvider()
        mine.add_span_processor(SimpleSpanProcessor(exporter))

        telemetry = flowscope.configure(tracer_provider=mine)
        app = run_app(telemetry)
        print(json.dumps({
            "global_is_mine": trace.get_tracer_provider() is mine,
            "mine": [(s.name, s.attributes.get(attr.QUERY_COUNT)) for s in exporter.get_finished_spans()],
            "aggregated": telemetry.aggregator.operation("checkout").count,
            "app": app}))
    """)

    assert result["global_is_mine"] is False
    assert result["mine"] == [["checkout", 3]]
    assert result["aggregated"] == 1
    assert len(result["app"]["stored"]) == 1


# --- invalid settings: one clear warning, safe default, the application unaffected ---------------


INVALID_SETTINGS = {
    "unknown exporter": ({"OTEL_TRACES_EXPORTER": "zipkin_thrift"}, ["OTEL_TRACES_EXPORTER", "'zipkin_thrift'"]),
    "unknown exporter in a list": ({"OTEL_TRACES_EXPORTER": "console,jaeger"}, ["OTEL_TRACES_EXPORTER", "'jaeger'"]),
    "unknown sampler": ({"OTEL_TRACES_SAMPLER": "sometimes"}, ["OTEL_TRACES_SAMPLER", "'sometimes'"]),
    "sampler arg not a number": ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"},
                                 ["OTEL_TRACES_SAMPLER_ARG", "'abc'"]),
    "sampler arg out of range": ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                  "OTEL_TRACES_SAMPLER_ARG": "1.5"}, ["OTEL_TRACES_SAMPLER_ARG", "'1.5'"]),
    "span store size not a number": ({"FLOWSCOPE_SPAN_STORE_SIZE": "abc"}, ["FLOWSCOPE_SPAN_STORE_SIZE", "'abc'"]),
    "span store size zero": ({"FLOWSCOPE_SPAN_STORE_SIZE": "0"}, ["FLOWSCOPE_SPAN_STORE_SIZE", "'0'"]),
    "unknown memory profile": ({"FLOWSCOPE_MEMORY_PROFILE": "bogus"}, ["FLOWSCOPE_MEMORY_PROFILE", "'bogus'"]),
}


@pytest.mark.parametrize("variables, named", INVALID_SETTINGS.values(), ids=INVALID_SETTINGS.keys())
def test_an_invalid_setting_gives_one_warning_naming_it_and_the_application_runs(variables, named):
    result, done = run_script("""
        telemetry = flowscope.configure()
        print(json.dumps({"warnings": telemetry.warnings, "capacity": telemetry.span_store.capacity,
                          "app": run_app(telemetry)}))
    """, **variables)

    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert all(word in lines[0] for word in named), lines[0]
    assert result["warnings"] and all(word in result["warnings"][0] for word in named)
    stored, = result["app"]["stored"]
    assert stored[attr_query_count()] == 3                 # recorded normally, safe default used
    assert "workflow.memory.tracemalloc_peak_bytes" not in stored
    assert result["capacity"] == 10_000


RECEIVER = """
    import concurrent.futures, os
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    received.extend(span.name for span in scope_spans.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
"""


def test_an_invalid_otlp_protocol_gives_one_warning_and_spans_go_over_grpc():
    result, done = run_script(textwrap.dedent(RECEIVER) + textwrap.dedent("""
        telemetry = flowscope.configure()
        app = run_app(telemetry)
        flushed = telemetry.force_flush()
        print(json.dumps({"protocol": telemetry.protocol, "received": received, "flushed": flushed,
                          "app": app}))
        telemetry.tracer_provider.shutdown()   # the client's channel closes first, then the server
        server.stop(None)
    """), OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon")

    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in lines[0] and "'carrier-pigeon'" in lines[0]
    assert result["protocol"] == "grpc"
    assert result["flushed"] is True
    assert result["received"] == ["checkout"]
    assert len(result["app"]["stored"]) == 1


# --- a collector that is not there ----------------------------------------------------------------


def run_dead_collector(protocol: str, ending: str, **variables: str) -> dict:
    """Run the script; time its whole life and, apart, from its report (work done) to its exit."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, str(SCRIPTS / "otlp_dead_collector.py"), protocol, ending],
                               env=clean_env(**variables), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        report = process.stdout.readline()          # printed (and flushed) when the work is done
        reported = time.monotonic()
        rest, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    exited = time.monotonic()
    assert process.returncode == 0, stderr
    return dict(json.loads(report), wall_seconds=exited - start, exit_seconds=exited - reported,
                stderr=stderr)


DEAD_COLLECTOR_RUNS = {
    "baseline": ("none", "flush", {}),
    "grpc flush": ("grpc", "flush", {}),
    "http flush": ("http/protobuf", "flush", {}),
    "grpc exit": ("grpc", "exit", {}),
    "http exit": ("http/protobuf", "exit", {}),
    # a queue that overflows while the first batch is failing (each export gives up after 1 s)
    "grpc small queue": ("grpc", "flush", {"OTEL_BSP_MAX_QUEUE_SIZE": "50", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50",
                                           "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}),
}


@pytest.fixture(scope="module", autouse=True)
def dead_collector_runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Future]]:
    """Every run above, started in parallel as soon as this module's tests begin.

    Each run spends several seconds waiting on export retries; the module's other tests run
    meanwhile. Nothing is started when no selected test uses the results.
    """
    if not any("dead_collector" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield {}
        return
    with ThreadPoolExecutor(max_workers=len(DEAD_COLLECTOR_RUNS)) as pool:
        yield {name: pool.submit(run_dead_collector, protocol, ending, **variables)
               for name, (protocol, ending, variables) in DEAD_COLLECTOR_RUNS.items()}


@pytest.fixture(scope="module")
def dead_collector(dead_collector_runs: dict[str, Future]) -> dict[str, dict]:
    return {name: future.result() for name, future in dead_collector_runs.items()}


@pytest.mark.parametrize("run", ["grpc flush", "http flush", "grpc exit", "http exit"])
def test_operations_succeed_as_fast_as_without_an_exporter_when_the_collector_is_down(dead_collector, run):
    baseline, result = dead_collector["baseline"], dead_collector[run]
    assert result["exporter"] == "otlp"
    assert result["succeeded"] == result["stored"] == 200
    assert result["operations_seconds"] < 3 * baseline["operations_seconds"] + 0.5, (result, baseline)


@pytest.mark.parametrize("run", ["grpc exit", "http exit"])
def test_the_process_exits_within_20_seconds_when_the_collector_is_down(dead_collector, run):
    # Interpreter exit flushes the queue: one batch, retried until the OTLP timeout (10 s).
    result = dead_collector[run]
    assert result["exit_seconds"] < 20, result


@pytest.mark.parametrize("run", ["grpc flush", "http flush"])
def test_spans_that_could_not_be_exported_are_counted_as_dropped(dead_collector, run):
    result = dead_collector[run]
    assert result["health"]["dropped_spans"] == 200
    assert result["health"]["failures"] == {}
    assert result["flushed"] is True          # the SDK's "flushed", not "delivered"


def test_without_an_exporter_nothing_is_dropped(dead_collector):
    assert dead_collector["baseline"]["health"] == {"failures": {}, "dropped_spans": 0, "sdk_messages": {}}


def test_spans_dropped_by_a_full_export_queue_are_counted_too(dead_collector):
    # Each span either fails to export or is dropped by the full queue: both are counted. The
    # SDK counts a queue drop when it sees the queue full just before appending, so a batch
    # the export thread takes in between can make one span count twice (tests/test_queue_drops.py
    # checks the exact count with the export thread held).
    result = dead_collector["grpc small queue"]
    assert result["succeeded"] == 200
    assert 200 <= result["health"]["dropped_spans"] <= 202
