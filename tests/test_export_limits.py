"""Hostile sizes and text: what one bad span or value must not do to the others, or to a report.

The application is a real process exporting over OTLP (gRPC and HTTP) to a real receiver on
loopback (tests/support/otlp_receiver.py); a span whose name UTF-8 cannot encode (an
instrumentation's, say) is dropped alone, its batch exported without it, with one warning and no
raw SDK traceback; values and names are bounded; reports stay small whatever the input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import flowscope
from flowscope.performance import process_report
from flowscope.telemetry import Telemetry
from flowscope.telemetry._operation import DEFAULT_MAX_ATTRIBUTE_LENGTH, DEFAULT_MAX_NAME_LENGTH
from support.e2e import clean_env
from support.otlp_receiver import OtlpReceiver

APP = r'''
import json
import flowscope
from opentelemetry import trace
from flowscope.telemetry import health

telemetry = flowscope.configure()
other = trace.get_tracer("another.instrumentation")
with flowscope.operation("good 1", payload="x" * 100_000):
    pass
with other.start_as_current_span("bad \ud800 span"):          # the encoder cannot encode its name
    pass
with flowscope.operation("surrogate \ud800 name"):            # flowscope escapes its own names
    pass
with other.start_as_current_span("attribute") as span:
    span.set_attribute("note", "a\ud800b")                      # the encoder leaves this one value out
    span.set_attribute("kept", "yes")
with flowscope.operation("good 2"):
    pass
telemetry.tracer_provider.force_flush()
print(json.dumps(health.snapshot()["dropped_spans"]))
'''


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_span_the_encoder_cannot_encode_is_dropped_alone_and_said_once(tmp_path: Path, protocol: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    with OtlpReceiver() as receiver:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env=clean_env(OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none",
                                            **receiver.env(protocol)))
        spans = dict(receiver.spans())

    assert done.returncode == 0, done.stderr
    assert set(spans) == {"good 1", "surrogate \\ud800 name", "attribute", "good 2"}   # one batch, less one span
    assert done.stdout.strip() == "1"                                                 # counted
    assert len(spans["good 1"]["payload"]) == DEFAULT_MAX_ATTRIBUTE_LENGTH
    assert spans["attribute"] == {"kept": "yes"}
    assert done.stderr.count("dropped a span the OTLP encoder cannot encode") == 1, done.stderr
    assert done.stderr.count("an attribute value the OTLP encoder cannot encode") == 1, done.stderr
    assert "Traceback" not in done.stderr and "Failed to encode" not in done.stderr, done.stderr


def test_a_full_export_queue_is_one_warning_and_a_count_not_a_line_per_span(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import json, flowscope\n"
        "from flowscope.telemetry import health\n"
        "flowscope.configure()\n"
        "for i in range(50):\n"
        "    with flowscope.operation('op'):\n"
        "        pass\n"
        "print(json.dumps(health.snapshot()))\n")
    with OtlpReceiver() as receiver:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env=clean_env(OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none",
                                            OTEL_BSP_MAX_QUEUE_SIZE="4", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2",
                                            OTEL_BSP_SCHEDULE_DELAY="60000", **receiver.env("http/protobuf")))

    assert done.returncode == 0, done.stderr
    health = json.loads(done.stdout.strip().splitlines()[-1])
    # every drop counted (the SDK's own metric); its log lines (which it de-duplicates) folded
    assert health["dropped_spans"] >= 40 and health["sdk_messages"]["span queue full"] >= 1
    assert done.stderr.count("the span export queue is full") == 1, done.stderr
    assert "Queue full" not in done.stderr


def test_reports_stay_small_whatever_the_names_and_statements(tmp_path: Path, telemetry: Telemetry) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'big.db'}")
    huge_sql = "SELECT '" + "s" * 10_000_000 + "' AS payload"              # 10 MB of SQL
    with engine.connect() as connection:
        for i in range(20):
            with flowscope.operation(f"{i:02d} " + "n" * 10_000_000, note="v" * 10_000_000):
                for _ in range(3):
                    connection.execute(text(huge_sql))

    report = process_report()
    page, data = report.to_html(), json.dumps(report.to_dict())
    assert len(report.operations) == 20
    assert {len(op.name) for op in report.operations} == {DEFAULT_MAX_NAME_LENGTH}
    assert any(r.kind == "repeated_query" for r in report.recommendations)            # still judged
    assert len(data) < 2_000_000 and len(page) < 2_000_000, (len(data), len(page))   # 20 x 10 MB in
