"""Self-check of the Phoenix test receiver: export over OTLP gRPC and HTTP, read back, print.

Run with a Python that has opentelemetry-sdk and opentelemetry-exporter-otlp (flowscope's dev
venv), after ``scripts/install-phoenix.sh``::

    .venv/bin/python tests/support/check_phoenix.py [--venv .venv-phoenix]

For each protocol it exports a parent span with a child span through a BatchSpanProcessor,
force-flushes, measures how long until Phoenix shows them, prints them as Phoenix returns them,
and checks names, ids, parent ids and attribute types. Then it checks that the resource
attribute ``openinference.project.name`` routes spans to another project. Exit status 0 means
everything held.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, as under pytest

from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter  # noqa: E402

from support.phoenix import PhoenixServer  # noqa: E402


def exporter_for(protocol: str, phoenix: PhoenixServer) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=phoenix.grpc_endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=phoenix.traces_endpoint)


def export_pair(
    protocol: str, phoenix: PhoenixServer, resource: dict[str, str]
) -> tuple[str, str, float]:
    """Export parent + child; return (parent span id, child span id, flush end time)."""
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(BatchSpanProcessor(exporter_for(protocol, phoenix)))
    tracer = provider.get_tracer("flowscope.check_phoenix")
    parent_attributes = {
        "workflow.operation": "x",
        "workflow.db.query_count": 7,
        "workflow.memory.delta_bytes": 2**40,
    }
    child_attributes = {"workflow.operation": "x.child", "workflow.db.query_count": 0}
    with tracer.start_as_current_span(f"parent-{protocol}", attributes=parent_attributes) as parent:
        with tracer.start_as_current_span(f"child-{protocol}", attributes=child_attributes) as kid:
            pass
    if not provider.force_flush(10_000):
        raise SystemExit(f"{protocol}: force_flush timed out")
    flushed = time.monotonic()
    provider.shutdown()
    return (
        format(parent.get_span_context().span_id, "016x"),
        format(kid.get_span_context().span_id, "016x"),
        flushed,
    )


def check(condition: bool, what: str) -> None:
    print(f"  [{'ok' if condition else 'FAIL'}] {what}")
    if not condition:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--venv", help="Phoenix venv (default: $FLOWSCOPE_PHOENIX_VENV or .venv-phoenix)"
    )
    args = parser.parse_args()

    with PhoenixServer(args.venv) as phoenix:
        print(f"Phoenix ready in {phoenix.startup_seconds:.1f} s")
        print(f"  http_endpoint={phoenix.http_endpoint}  grpc_endpoint={phoenix.grpc_endpoint}")

        for protocol in ("grpc", "http"):
            print(f"\n== OTLP {protocol} ==")
            resource = {"service.name": f"check-{protocol}"}
            parent_id, child_id, flushed = export_pair(protocol, phoenix, resource)
            suffix = f"-{protocol}"
            spans = phoenix.wait_for_spans(
                min_count=2, predicate=lambda s: s["name"].endswith(suffix)
            )
            print(f"  visible {time.monotonic() - flushed:.2f} s after force_flush returned")
            for span in spans:
                print(
                    f"  name={span['name']!r} span_id={span['context']['span_id']} "
                    f"trace_id={span['context']['trace_id']} parent_id={span['parent_id']}"
                )
                print(f"    attributes={json.dumps(span['attributes'])}")
            by_name = {s["name"]: s for s in spans}
            parent, child = by_name[f"parent-{protocol}"], by_name[f"child-{protocol}"]
            check(parent["context"]["span_id"] == parent_id, "parent span_id: the OTel id, 16 hex")
            check(child["context"]["span_id"] == child_id, "child span_id is the OTel id")
            check(parent["parent_id"] is None, "root's parent_id is null")
            check(child["parent_id"] == parent_id, "child's parent_id is the parent's span_id")
            same_trace = child["context"]["trace_id"] == parent["context"]["trace_id"]
            check(same_trace, "one trace_id")
            check(parent["attributes"]["workflow.operation"] == "x", "string attribute, flat key")
            count = parent["attributes"]["workflow.db.query_count"]
            check(count == 7 and type(count) is int, "int attribute comes back as a JSON int")
            big = parent["attributes"]["workflow.memory.delta_bytes"]
            check(big == 2**40, "large int exact")
            check("service.name" not in parent["attributes"], "resource attributes not returned")

        print("\n== project routing ==")
        resource = {"service.name": "svc", "openinference.project.name": "flowscope-check"}
        export_pair("http", phoenix, resource)
        routed = phoenix.wait_for_spans("flowscope-check", min_count=2)
        check(sorted(s["name"] for s in routed) == ["child-http", "parent-http"],
              "openinference.project.name routes to its own project")
        check(len(phoenix.spans()) == 4, "...and not to 'default'")
        check(phoenix.spans("svc") == [], "service.name does not name a project (unknown -> [])")
        print(f"  projects: {phoenix.projects()}")
    print("\nall checks passed")


if __name__ == "__main__":
    main()
