"""Export faults, measured: what a sick OTLP backend costs the application, and what it loses.

    .venv/bin/python benchmarks/bench_export_faults.py      # ~1 minute

An application process (``flowscope.configure()`` from the OTEL_* variables, OTLP/HTTP, batch
delay 100 ms) runs one operation every 5 ms for ``BENCH_SECONDS`` (default 8) and records the
latency of each on its own thread. It runs against:
- ``none``: no exporter (the baseline);
- ``healthy``: a real receiver process (tests/support/otlp_receiver.py);
- ``killed``: that receiver, killed after 2 s and restarted 4 s later (spans lost vs the window);
- ``black hole``: a port that accepts connections and never answers;
- ``slow``: a receiver that answers every export after 0.5 s.
For each: latency p50 and p99 per operation, spans received, and the exit delay (from the app's
last operation to its process ending). Targets: p99 under any fault within 1.5x the healthy p99
(the export runs on the batch processor's thread, never the application's); exit delay within
3 s (``FLOWSCOPE_EXPORT_EXIT_TIMEOUT`` is 2.5 s); after the restart, export resumes within 5 s.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _harness import Check, Report, env_int

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.otlp_receiver import ReceiverProcess  # noqa: E402  (the tests' receiver, run as a process)

ROOT = Path(__file__).resolve().parent.parent
SECONDS = env_int("BENCH_SECONDS", 8)

APP = r'''
import json, sys, time
import flowscope
flowscope.configure()
latencies, end = [], time.time() + float(sys.argv[1])
while time.time() < end:
    start = time.perf_counter()
    with flowscope.operation("op") as span:
        span.update_name(f"op {time.time():.3f}")
        sum(range(200))
    latencies.append(time.perf_counter() - start)
    time.sleep(0.005)
print(json.dumps({"latencies": latencies, "done": time.time()}), flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.5)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def receiver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWSCOPE_"))}
    return {**env, "PYTHONPATH": str(ROOT / "tests")}


def run_app(port: int | None, during=None) -> dict:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWSCOPE_"))}
    env.update(OTEL_METRICS_EXPORTER="none", OTEL_BSP_SCHEDULE_DELAY="100", PYTHONPATH=str(ROOT / "src"))
    if port is None:
        env["OTEL_TRACES_EXPORTER"] = "none"
    else:
        env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "app.py"
        script.write_text(APP)
        started = time.time()
        app = subprocess.Popen([sys.executable, str(script), str(SECONDS)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        if during is not None:
            during(started)
        out, err = app.communicate(timeout=SECONDS + 60)
        ended = time.time()
    result = json.loads(out.strip().splitlines()[-1])
    latencies = sorted(result["latencies"])
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "operations": len(latencies), "exit_delay": ended - result["done"], "stderr": err}


def main() -> None:
    report = Report("export_faults")
    rows = {}
    rows["none"] = run_app(None)

    receiver = ReceiverProcess(free_port(), receiver_env())
    receiver.start()
    rows["healthy"] = run_app(receiver.port)
    rows["healthy"]["received"] = len(receiver.received)
    receiver.kill()

    receiver = ReceiverProcess(free_port(), receiver_env())
    receiver.start()
    window: dict[str, float] = {}

    def outage(started: float) -> None:
        time.sleep(2)
        window["down"] = time.time()
        receiver.kill()
        time.sleep(4)
        receiver.start()
        window["up"] = time.time()
    rows["killed"] = run_app(receiver.port, outage)
    times = sorted(float(name.split()[1]) for _, name in receiver.received if name.startswith("op "))
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:])]
    lost_seconds, gap_start, gap_end = max(gaps)
    resumed = min((t for t, name in receiver.received if t > window["up"]), default=float("inf")) - window["up"]
    rows["killed"].update(received=len(times), lost_seconds=lost_seconds, resumed_after=resumed)
    receiver.kill()

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)   # never accepted: connections hang until the exporter's timeout
    rows["black hole"] = run_app(hole.getsockname()[1])
    hole.close()

    slow = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    rows["slow"] = run_app(slow.server_address[1])
    slow.shutdown()

    print(f"{'backend':<12} {'p50 (us)':>10} {'p99 (us)':>10} {'operations':>11} {'received':>9} "
          f"{'exit delay (s)':>15}")
    for name, row in rows.items():
        print(f"{name:<12} {row['p50'] * 1e6:10.1f} {row['p99'] * 1e6:10.1f} {row['operations']:11d} "
              f"{row.get('received', '-')!s:>9} {row['exit_delay']:15.2f}")
    killed = rows["killed"]
    print(f"\nkilled for {window['up'] - window['down']:.1f} s: the longest run of lost operations spans "
          f"{killed['lost_seconds']:.1f} s; spans arrived again {killed['resumed_after']:.1f} s after the restart")
    healthy_p99 = rows["healthy"]["p99"]
    for name in ("killed", "black hole", "slow"):
        report.checks.append(Check(f"p99 latency, {name} / healthy", rows[name]["p99"] / healthy_p99, 1.5, "x"))
        report.checks.append(Check(f"exit delay, {name}", rows[name]["exit_delay"], 3.0, "s"))
    report.checks.append(Check("export resumed after the restart", killed["resumed_after"], 5.0, "s"))
    report.checks.append(Check("operations lost beyond the outage window", killed["lost_seconds"]
                               - (window["up"] - window["down"]), 5.0, "s"))
    report.info = {name: {k: v for k, v in row.items() if k != "stderr"} for name, row in rows.items()}
    report.print_and_exit()


if __name__ == "__main__":
    main()
