"""FLOWSCOPE_AUTO_INSTRUMENT: the start-up hook installed with the package.

Every test runs a fresh interpreter of the dev venv (where the Makefile's ``pip install -e .``
installed flowscope), with the caller's OTEL_*/FLOWSCOPE_* variables removed and exactly the
ones under test given. Exports go to a real OTLP receiver in this process
(tests/support/otlp_receiver.py) or to a closed port. The packaging tests check that the
``.pth`` file really is at the root of site-packages, for the editable install and for a wheel.
"""

from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.e2e import clean_env
from support.otlp_receiver import OtlpReceiver

REPO = Path(__file__).resolve().parents[1]
PTH = "flowscope_autoinstrument.pth"

# The application: three queries inside one operation, plus one outside; it knows nothing of
# telemetry set-up and reports what it sees of flowscope (without configuring it).
APP = textwrap.dedent("""
    import json, sys
    from sqlalchemy import create_engine, text
    import flowscope
    from flowscope.telemetry import current_telemetry
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).all()
        with flowscope.operation("checkout") as span:
            for i in range(3):
                conn.execute(text("SELECT :i"), {"i": i}).all()
            recording = span.is_recording()
    telemetry = current_telemetry()
    stored = telemetry.span_store.by_operation("checkout") if telemetry else []
    print(json.dumps({"configured": telemetry is not None, "recording": recording,
                      "query_counts": [s.attributes["workflow.db.query_count"] for s in stored],
                      "exporter": telemetry and telemetry.exporter,
                      "metrics_exporter": telemetry and telemetry.metrics_exporter}))
""")


def run_python(code: str, timeout: float = 60, python: str = sys.executable,
               **variables: str) -> tuple[dict | None, subprocess.CompletedProcess]:
    began = time.monotonic()
    done = subprocess.run([python, "-c", code], env=clean_env(**variables), capture_output=True, text=True,
                          timeout=timeout)
    done.wall_seconds = time.monotonic() - began  # type: ignore[attr-defined]
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None), done


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


# --- packaging ------------------------------------------------------------------------------------


def test_the_editable_install_put_the_hook_at_the_root_of_site_packages():
    hook = Path(sysconfig.get_paths()["purelib"]) / PTH
    assert hook.is_file(), f"{hook} missing: reinstall with pip install -e . (setup.py writes it)"
    lines = hook.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("import os;") and "FLOWSCOPE_AUTO_INSTRUMENT" in lines[0]
    recorded = {str(f) for f in importlib.metadata.files("flowscope") or []}
    assert PTH in recorded, "listed in RECORD, so pip uninstall removes it"


def test_a_wheel_carries_the_hook_at_its_root_and_an_install_from_it_never_breaks_start(tmp_path):
    # A regular (non-editable) install: build the wheel, install it alone into a fresh venv. The
    # venv lacks flowscope's dependencies, so switching the hook on fails, in one line.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
                            str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel, = tmp_path.glob("flowscope-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {PTH, "flowscope_autoinstrument.py"} <= names
        assert archive.read(PTH).decode().startswith("import os;")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", str(wheel)],
                   check=True, capture_output=True)
    _, off = run_python("print('app ran')", python=python)
    _, on = run_python("print('app ran')", python=python, FLOWSCOPE_AUTO_INSTRUMENT="true")
    assert off.stdout == on.stdout == "app ran\n"
    assert off.stderr == ""
    lines = on.stderr.strip().splitlines()
    assert len(lines) == 1, on.stderr
    assert "auto-instrumentation failed at start-up (ModuleNotFoundError" in lines[0]
    assert "the application runs without it" in lines[0]


# --- off: free ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "0", "false", "OFF"])
def test_when_off_the_hook_imports_nothing(value):
    variables = {} if value is None else {"FLOWSCOPE_AUTO_INSTRUMENT": value}
    result, done = run_python(
        "import json, sys; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('flowscope', 'flowscope_autoinstrument', 'opentelemetry', 'sqlalchemy'))))",
        **variables)
    assert done.stdout.strip() == "[]" and done.stderr == ""


# --- on -------------------------------------------------------------------------------------------


def test_when_on_the_interpreter_starts_configured_with_the_engine_and_queries_instrumented():
    result, done = run_python(APP, FLOWSCOPE_AUTO_INSTRUMENT="true")
    assert result == {"configured": True, "recording": True, "query_counts": [3], "exporter": "none",
                      "metrics_exporter": "none"}
    assert done.stderr == ""


def test_a_short_script_loses_no_span_the_hook_flushes_at_exit(receiver):
    receiver.clear()
    # flowscope's span alone: the installed SQLAlchemy instrumentation, which the hook also turns on, off by name
    result, done = run_python(APP, FLOWSCOPE_AUTO_INSTRUMENT="TRUE", OTEL_METRICS_EXPORTER="otlp",
                              OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="sqlalchemy", **receiver.env("grpc"))
    assert result["exporter"] == "otlp" and done.stderr == ""
    assert [name for name, _ in receiver.spans()] == ["checkout"]      # the app never flushed
    assert "workflow.db.queries" in receiver.metric_names()


# --- bad input: one clear warning, the application runs -------------------------------------------

BAD_INPUT = {
    "hook value": ({"FLOWSCOPE_AUTO_INSTRUMENT": "maybe"}, ["FLOWSCOPE_AUTO_INSTRUMENT", "'maybe'"]),
    "unknown span exporter": ({"OTEL_TRACES_EXPORTER": "zipkin"}, ["OTEL_TRACES_EXPORTER", "'zipkin'"]),
    "unknown metric exporter": ({"OTEL_METRICS_EXPORTER": "prometheus"}, ["OTEL_METRICS_EXPORTER", "'prometheus'"]),
    "sampler arg": ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "most"},
                    ["OTEL_TRACES_SAMPLER_ARG", "'most'"]),
    "timeout": ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon", "OTEL_METRICS_EXPORTER": "otlp", "RECEIVER": "grpc"},
                ["OTEL_EXPORTER_OTLP_TIMEOUT", "'soon'"]),
    "protocol": ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon", "OTEL_METRICS_EXPORTER": "otlp",
                  "RECEIVER": "grpc"}, ["OTEL_EXPORTER_OTLP_PROTOCOL", "'carrier-pigeon'"]),
}


@pytest.mark.parametrize("variables, named", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_a_malformed_setting_gives_one_warning_and_the_application_runs(receiver, variables, named):
    variables = dict(variables)
    if variables.pop("RECEIVER", None):
        variables["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.env("grpc")["OTEL_EXPORTER_OTLP_ENDPOINT"]
    hook = variables.setdefault("FLOWSCOPE_AUTO_INSTRUMENT", "true")
    result, done = run_python(APP, **variables)

    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("flowscope: ") and all(word in lines[0] for word in named), lines[0]
    if hook == "true":
        assert result["recording"] and result["query_counts"] == [3]
    else:
        assert result == {"configured": False, "recording": False, "query_counts": [], "exporter": None,
                          "metrics_exporter": None}


UNREACHABLE = {
    "grpc spans": ("grpc", {}),
    "http spans": ("http/protobuf", {}),
    "grpc spans and metrics": ("grpc", {"OTEL_METRICS_EXPORTER": "otlp"}),
}


@pytest.fixture(scope="module")
def unreachable() -> dict[str, tuple]:
    """The app with the hook on and every exporter pointed at a closed port, the runs in parallel."""
    def one(protocol: str, extra: dict[str, str]) -> tuple:
        return run_python(APP, FLOWSCOPE_AUTO_INSTRUMENT="true", OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                          OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
                          OTEL_EXPORTER_OTLP_TIMEOUT="1", **extra)

    with ThreadPoolExecutor(max_workers=len(UNREACHABLE)) as pool:
        futures = {name: pool.submit(one, *args) for name, args in UNREACHABLE.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("run", UNREACHABLE)
def test_an_unreachable_endpoint_gives_one_warning_per_signal_and_the_application_runs(unreachable, run):
    result, done = unreachable[run]
    assert result["recording"] and result["query_counts"] == [3]
    lines = done.stderr.strip().splitlines()
    signals = ["spans", "metrics"] if "metrics" in run else ["spans"]
    assert len(lines) == len(signals), done.stderr
    for line, signal in zip(sorted(lines, key=lambda text: "metrics" in text), signals):
        assert line.startswith(f"flowscope: cannot export {signal} over OTLP to "), line
        assert "127.0.0.1:" in line and "the application is not affected" in line
    assert done.wall_seconds < 20       # bounded by OTEL_EXPORTER_OTLP_TIMEOUT, retries included
