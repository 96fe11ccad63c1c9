"""Export faults against a real receiver process: killed and restarted, a closed port, a black hole.

The application is a real process exporting over OTLP/HTTP (``flowscope.configure()`` from the
``OTEL_*`` variables, batch delay 100 ms); the receiver is another real process
(tests/support/otlp_receiver.py run as a program, printing each span name it receives). Each
operation is named after the wall-clock time it ended, so what was lost can be read against the
outage window.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.e2e import clean_env
from support.otlp_receiver import ReceiverProcess

RECEIVER = Path(__file__).parent / "support" / "otlp_receiver.py"

APP = '''
import sys, time
import flowscope
telemetry = flowscope.configure()
end = time.time() + float(sys.argv[1])
while time.time() < end:
    with flowscope.operation("op") as span:
        span.update_name(f"op {time.time():.3f}")  # the span's name: when it ran
    time.sleep(0.02)
print(f"done {time.time():.3f}", flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(port: int, **more: str) -> dict[str, str]:
    return clean_env(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                     OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_BSP_SCHEDULE_DELAY="100",
                     OTEL_METRICS_EXPORTER="none", **more)


def test_export_resumes_within_seconds_of_the_receivers_return_and_logs_the_outage_once(tmp_path: Path) -> None:
    receiver = ReceiverProcess(free_port(), clean_env(PYTHONPATH=str(RECEIVER.parent.parent)))
    receiver.start()
    script = tmp_path / "app.py"
    script.write_text(APP)
    # The exporter's own retries span its timeout (2 s here): the 4 s outage outlasts them.
    app = subprocess.Popen([sys.executable, str(script), "14"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=app_env(receiver.port, OTEL_EXPORTER_OTLP_TIMEOUT="2"))
    try:
        time.sleep(3)
        killed = time.time()
        receiver.kill()
        time.sleep(4)
        restarted = time.time()
        receiver.start()
        _, stderr = app.communicate(timeout=60)
    finally:
        app.kill()
        time.sleep(0.5)
        receiver.kill()
    assert app.returncode == 0, stderr

    ended = sorted(float(name.split()[1]) for name in receiver.names if name.startswith("op "))
    before = [t for t in ended if t < killed - 0.5]
    after = [t for t in ended if t > restarted + 6.5]
    assert before and after
    # Every operation that ran more than 6.5 s after the return was exported: none lost there.
    expected_after = (ended[-1] - (restarted + 6.5)) / 0.02
    assert len(after) >= 0.8 * expected_after, (len(after), expected_after)
    first_back = min(t for t in ended if t > killed)
    print(f"outage {restarted - killed:.1f} s; spans lost from {max(before):.2f} to {first_back:.2f} "
          f"({first_back - max(before):.1f} s, {first_back - restarted:.1f} s after the return)")
    assert first_back - restarted < 6.5, f"export resumed {first_back - restarted:.1f} s after the receiver returned"
    assert stderr.count("cannot export spans") == 1
    assert stderr.count("span export to") == 1 and "is back after" in stderr


@pytest.mark.parametrize("target", ["closed port", "black hole"])
def test_an_unreachable_receiver_delays_exit_by_at_most_3_seconds_and_says_what_was_lost(
        tmp_path: Path, target: str) -> None:
    hole = None
    if target == "closed port":
        port = free_port()
    else:
        hole = socket.socket()                 # accepts connections (the kernel's backlog), never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        port = hole.getsockname()[1]
    script = tmp_path / "app.py"
    script.write_text(APP)
    try:
        started = time.time()
        done = subprocess.run([sys.executable, str(script), "1"], capture_output=True, text=True, timeout=60,
                              env=app_env(port, OTEL_EXPORTER_OTLP_TIMEOUT="60"))
        exited = time.time()
    finally:
        if hole is not None:
            hole.close()
    assert done.returncode == 0, done.stderr
    work_done = float(done.stdout.split()[-1])
    assert exited - work_done < 3.5, f"exit took {exited - work_done:.1f} s after the work ({target})"
    assert exited - started < 10
    assert "spans were not exported at exit" in done.stderr or "cannot export spans" in done.stderr


def test_force_flush_returns_within_its_timeout_from_a_black_hole(tmp_path: Path) -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    script = tmp_path / "flush.py"
    script.write_text(
        "import time, flowscope\n"
        "from flowscope.telemetry import health\n"
        "telemetry = flowscope.configure()\n"
        "with flowscope.operation('op'):\n"
        "    pass\n"
        "start = time.perf_counter()\n"
        "flushed = telemetry.force_flush(timeout_millis=1000)\n"
        "print(flushed, round(time.perf_counter() - start, 2), health.snapshot()['dropped_spans'])\n")
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                              env=app_env(hole.getsockname()[1], OTEL_EXPORTER_OTLP_TIMEOUT="30"))
    finally:
        hole.close()
    assert done.returncode == 0, done.stderr
    flushed, seconds, dropped = done.stdout.split()
    # The export the flush started gave up within the bound (the SDK alone waits out its 30 s
    # timeout): the span is counted as dropped, and the flush itself finished in time.
    assert (flushed, dropped) == ("True", "1") and float(seconds) < 1.3, done.stdout
