"""A real OTLP receiver for the test suite: Arize Phoenix, run as a subprocess.

Usage::

    from support.phoenix import PhoenixServer   # tests/ is on sys.path under pytest

    with PhoenixServer() as phoenix:             # ~11 s to start on a 2-core machine
        exporter = OTLPSpanExporter(endpoint=phoenix.grpc_endpoint, insecure=True)   # gRPC
        exporter = OTLPSpanExporter(endpoint=phoenix.traces_endpoint)                # HTTP
        ...  # export, then provider.force_flush()
        spans = phoenix.wait_for_spans(min_count=2)    # polls: ingestion is asynchronous
        assert spans[0]["attributes"]["workflow.db.query_count"] == 7

Phoenix lives in its own virtual environment, made by ``scripts/install-phoenix.sh`` (default
``.venv-phoenix`` in the repo root, or ``$FLOWSCOPE_PHOENIX_VENV``): it brings ~150 packages
that must not pin flowscope's own. This module therefore uses the standard library only, and
talks to Phoenix over HTTP like any client would. ``tests/support/check_phoenix.py`` exercises
all of it end to end (gRPC and HTTP) and prints what Phoenix returns.

How Phoenix is started (what was found out, for arize-phoenix 20.26.1)
---------------------------------------------------------------------
- ``python -I -c <launcher>`` from the Phoenix venv, i.e. ``phoenix serve``, in a fresh temp
  directory, in its own session (process group), with an environment stripped of every
  ``OTEL_*``/``PHOENIX_*`` variable of the caller (Phoenix reads OTEL_EXPORTER_OTLP_ENDPOINT)
  and then given:

  =================================== =================================================
  PHOENIX_HOST=127.0.0.1              HTTP (UI, REST, OTLP/HTTP) bound to loopback only
  PHOENIX_PORT=<free port>            HTTP port
  PHOENIX_GRPC_PORT=<free port>       OTLP/gRPC port
  PHOENIX_WORKING_DIR=<tmp>           else Phoenix writes ~/.phoenix (even on import)
  PHOENIX_SQL_DATABASE_URL=sqlite:///<tmp>/phoenix.db
  TMPDIR=<tmp>/tmp                    Phoenix leaves pid files in $TMPDIR/.arize-phoenix
  PHOENIX_TELEMETRY_ENABLED=false     FullStory / Scarf.sh pixels off
  PHOENIX_ALLOW_EXTERNAL_RESOURCES=false  master switch: no internet requests of its own
                                      (telemetry, web fonts, WASM sandbox download)
  PHOENIX_DISABLE_AGENT_ASSISTANT=true    no LLM assistant / docs MCP
  PHOENIX_LOG_MIGRATIONS=false        else ~4,000 lines of SQL on every start
  =================================== =================================================

- Phoenix binds gRPC to ``[::]`` (all interfaces) whatever PHOENIX_HOST says; the launcher
  patches grpc's ``add_insecure_port`` so it binds ``127.0.0.1`` instead.
- Ready = ``GET /healthz`` answers 200 and the gRPC port accepts a connection. Start-up takes
  ~11 s here (import ~6 s, SQLite migrations ~1.5 s, app start); it stops in ~2 s on SIGTERM.

Projects
--------
A span goes to the project named by the resource attribute ``openinference.project.name``
(or, over OTLP/HTTP only, the ``x-project-name`` request header), else to ``"default"``.
``service.name`` does NOT choose the project, nor does PHOENIX_PROJECT_NAME on the server (that
variable is for Phoenix's client libraries). A project other than "default" exists only once a
span has arrived for it; until then its REST endpoint answers 404, which ``spans()`` returns as
``[]``.

The REST payload the tests assert on: ``GET /v1/projects/{project}/spans``
--------------------------------------------------------------------------
``{"data": [span, ...], "next_cursor": str | null}``; pages of at most ``limit`` (default 100,
max 1000) spans; pass ``cursor=<next_cursor>`` for the next page (``spans()`` does). Default
order is newest first; ``spans()`` asks for ``order=asc``, i.e. in the order Phoenix stored them
(ingestion order, which within one export batch is the exporter's order: children usually end,
and so are exported, before their parents). One span, exactly as returned::

    {
      "id": "U3Bhbjoy",                      # Phoenix's own GlobalID, not the OTel id
      "name": "parent-grpc",
      "context": {"trace_id": "e5e546083f5de1a1f5e4e278fc86663b",   # 32 lower-case hex
                  "span_id": "3516b4465f6d6c62"},                    # 16 lower-case hex
      "parent_id": null,                     # parent's span_id (16 hex), null for a root
      "span_kind": "UNKNOWN",                # OpenInference kind, NOT the OTel SpanKind
      "start_time": "2026-11-27T03:03:59.332219+00:00",   # ISO 8601, UTC, microseconds
      "end_time": "2026-11-27T03:03:59.357960+00:00",
      "status_code": "UNSET",                # "UNSET" | "OK" | "ERROR"
      "status_message": "",                  # e.g. "ValueError: bad" after record_exception
      "attributes": {                        # FLAT dict, dotted keys as set in OTel
        "workflow.operation": "x",           # str  -> JSON string
        "workflow.db.query_count": 7,        # int  -> JSON int (int64 round-trips exactly)
        "workflow.db": "also fine",          # a key that is a prefix of another survives
        "f": 1.5, "flag": true,              # float -> number, bool -> true/false
        "tags": ["a", "b"], "nums": [1, 2]   # sequences -> JSON arrays
      },
      "events": [{"name": "exception", "timestamp": "...+00:00",
                  "attributes": {"exception.type": "ValueError", "exception.message": "bad",
                                 "exception.escaped": "False", "exception.stacktrace": "..."}}]
    }

What is NOT in the payload: resource attributes (``service.name`` etc.), the OTel SpanKind
(``/spans/otlpv1`` exists but reports every span as SPAN_KIND_INTERNAL), instrumentation scope,
links. ``openinference.span.kind`` is popped from the attributes into ``span_kind``. Query
filters the endpoint accepts (``spans(**filters)`` passes them through): ``trace_id``,
``span_id``, ``name`` (each may repeat: pass a list), ``parent_id`` (``"null"`` for roots),
``status_code``, ``start_time``/``end_time`` (ISO 8601).

Ingestion delay and throughput
------------------------------
Both receivers answer the export before the span is stored: spans go into a queue that a bulk
inserter drains every ~0.1 s, 100 spans per SQLite transaction. Measured here: a handful of
spans is visible 0.1-0.2 s after ``force_flush()`` returns, over gRPC and HTTP alike; but
ingestion runs at only ~100 spans/s on this 2-core machine (100 spans: 0.9 s, 500: 4-6 s,
2,100: ~30 s, none lost). So never read once right after exporting (``wait_for_spans()``
polls), keep span counts in receiver tests small (tens), and give bigger exports a timeout to
match. ``spans()`` itself is cheap (~70 ms for 500 spans).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PhoenixError",
    "PhoenixNotInstalled",
    "PhoenixServer",
    "default_venv",
    "phoenix_python",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-phoenix.sh"
VENV_ENV_VAR = "FLOWSCOPE_PHOENIX_VENV"
_MARKER = ".phoenix-installed"  # written by scripts/install-phoenix.sh: "arize-phoenix==X.Y.Z"

SpanDict = dict[str, Any]


class PhoenixError(RuntimeError):
    """Phoenix could not be started or answered unexpectedly."""


class PhoenixNotInstalled(PhoenixError):
    """The Phoenix venv is missing or holds another version than the install script pins."""


def default_venv() -> Path:
    """``$FLOWSCOPE_PHOENIX_VENV``, else ``.venv-phoenix`` in the repo root."""
    return Path(os.environ.get(VENV_ENV_VAR) or REPO_ROOT / ".venv-phoenix")


def _pinned_requirement() -> str | None:
    """``arize-phoenix==X`` as pinned in scripts/install-phoenix.sh (None if it can't be read)."""
    try:
        match = re.search(r'^PHOENIX_VERSION="([^"]+)"', INSTALL_SCRIPT.read_text(), re.M)
    except OSError:
        return None
    return f"arize-phoenix=={match.group(1)}" if match else None


def phoenix_python(venv_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Python interpreter of the Phoenix venv; raises PhoenixNotInstalled with the fix."""
    venv = Path(venv_dir) if venv_dir is not None else default_venv()
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    hint = f"run scripts/install-phoenix.sh {venv}"
    marker = venv / _MARKER
    if not python.exists() or not marker.exists():
        raise PhoenixNotInstalled(f"no Phoenix installed in {venv}: {hint}")
    installed, pinned = marker.read_text().strip(), _pinned_requirement()
    if pinned is not None and installed != pinned:
        raise PhoenixNotInstalled(f"{venv} has {installed}, the tests pin {pinned}: {hint}")
    return python


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held together while choosing, then released)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


# Runs inside the Phoenix venv's interpreter. (1) Dies with the process that started it
# (Linux PR_SET_PDEATHSIG), so a killed test run leaves no server behind. (2) Binds OTLP/gRPC to
# 127.0.0.1: Phoenix itself always binds "[::]:PORT". Neither may stop Phoenix from starting.
_LAUNCHER = r"""
import os, signal, sys
if sys.platform.startswith("linux") and os.environ.get("FLOWSCOPE_PHOENIX_PARENT_PID"):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != int(os.environ["FLOWSCOPE_PHOENIX_PARENT_PID"]):
            sys.exit("flowscope: parent of Phoenix is gone before it started")
    except Exception as err:
        print(f"flowscope: could not tie Phoenix to its parent: {err!r}", file=sys.stderr)
try:
    from grpc.aio import _server as _grpc_aio_server
    _add_insecure_port = _grpc_aio_server.Server.add_insecure_port
    def _loopback_only(self, address):
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address[len("[::]:"):]
        return _add_insecure_port(self, address)
    _grpc_aio_server.Server.add_insecure_port = _loopback_only
except Exception as err:
    print(f"flowscope: Phoenix gRPC stays on all interfaces: {err!r}", file=sys.stderr)
from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
main()
"""

_BIND_FAILURE = re.compile(r"address already in use|failed to bind|errno 98", re.I)


class PhoenixServer:
    """Phoenix on 127.0.0.1 with free ports and a throw-away SQLite store; a context manager.

    ``startup_timeout`` bounds the wait for readiness (start-up takes ~11 s here). ``env`` adds
    or overrides variables of the Phoenix process. ``die_with_parent`` (Linux) stops Phoenix when
    the thread that started it exits: start it from the main thread, or pass False.
    """

    def __init__(
        self,
        venv_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.python = phoenix_python(venv_dir)
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.die_with_parent = die_with_parent
        self.http_port = 0
        self.grpc_port = 0
        self.workdir: Path | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # -- endpoints ------------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """Base URL of the HTTP server (REST API, UI, OTLP/HTTP), e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def traces_endpoint(self) -> str:
        """OTLP/HTTP traces URL: what ``OTLPSpanExporter(endpoint=...)`` (HTTP) wants."""
        return f"{self.http_endpoint}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC endpoint, e.g. http://127.0.0.1:PORT (plain text: insecure=True)."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def otlp_env(self, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_* variables that point a standard OTel SDK setup here (``grpc``/``http/protobuf``).

        The SDK appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT for HTTP itself.
        """
        if protocol == "grpc":
            endpoint = self.grpc_endpoint
        elif protocol in ("http/protobuf", "http"):
            protocol, endpoint = "http/protobuf", self.http_endpoint
        else:
            raise ValueError(f"unsupported OTLP protocol {protocol!r} (grpc or http/protobuf)")
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> PhoenixServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start Phoenix and wait until both receivers and the REST API answer."""
        if self._process is not None:
            raise PhoenixError("Phoenix is already running")
        for attempt in range(3):  # another process may grab a port we picked; then pick again
            try:
                self._start_once()
                return
            except PhoenixError as err:
                log = self.log_tail()
                self.stop()
                if attempt == 2 or not _BIND_FAILURE.search(log):
                    message = f"{err}\n--- last lines of Phoenix's log ---\n{log}"
                    raise PhoenixError(message) from None

    def _start_once(self) -> None:
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="flowscope-phoenix-"))
        (self.workdir / "tmp").mkdir()
        self.http_port, self.grpc_port = _free_ports(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
        env.update(
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.http_port),
            PHOENIX_GRPC_PORT=str(self.grpc_port),
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_SQL_DATABASE_URL=f"sqlite:///{self.workdir / 'phoenix.db'}",
            TMPDIR=str(self.workdir / "tmp"),
            PHOENIX_TELEMETRY_ENABLED="false",
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
            PHOENIX_DISABLE_AGENT_ASSISTANT="true",
            PHOENIX_LOG_MIGRATIONS="false",
            PYTHONUNBUFFERED="1",
        )
        if self.die_with_parent:
            env["FLOWSCOPE_PHOENIX_PARENT_PID"] = str(os.getpid())
        env.update(self.extra_env)
        self._log_file = open(self.workdir / "phoenix.log", "wb")  # noqa: SIM115 (closed in stop)
        self._process = subprocess.Popen(
            [str(self.python), "-I", "-c", _LAUNCHER],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the whole group
        )
        deadline = began + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise PhoenixError(f"Phoenix exited with code {code} while starting")
            if self._http_ready() and self._grpc_ready():
                self.startup_seconds = time.monotonic() - began
                return
            if time.monotonic() > deadline:
                raise PhoenixError(f"Phoenix was not ready within {self.startup_timeout:.0f} s")
            time.sleep(0.2)

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_endpoint}/healthz", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _grpc_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; remove the temp directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(5)
        if process is not None:
            self._signal_group(process, signal.SIGKILL)  # any child left in the group
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)  # pgid == pid: started with start_new_session=True
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Phoenix's own output (for failure messages)."""
        if self.workdir is None:
            return ""
        try:
            text = (self.workdir / "phoenix.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- reading spans back -----------------------------------------------------------------

    def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        query = urllib.parse.urlencode(params or {}, doseq=True)
        url = f"{self.http_endpoint}{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def projects(self) -> list[str]:
        """Names of the projects Phoenix knows ("default" always exists)."""
        names: list[str] = []
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self._get_json("/v1/projects", params)
            names += [project["name"] for project in page["data"]]
            if not (cursor := page.get("next_cursor")):
                return names

    def spans(self, project: str = "default", **filters: str | Sequence[str]) -> list[SpanDict]:
        """All spans of ``project`` stored so far, in storage order (all pages).

        ``filters`` are passed to the REST endpoint: trace_id, span_id, name, parent_id,
        status_code, start_time, end_time. An unknown project (no span yet) gives ``[]``.
        """
        path = f"/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
        spans: list[SpanDict] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000, "order": "asc", **filters}
            if cursor:
                params["cursor"] = cursor
            try:
                page = self._get_json(path, params)
            except urllib.error.HTTPError as err:
                if err.code == 404 and not spans:
                    return []
                body = err.read().decode(errors="replace")
                raise PhoenixError(f"GET {path} answered {err.code}: {body}") from None
            spans += page["data"]
            if not (cursor := page.get("next_cursor")):
                return spans

    def wait_for_spans(
        self,
        project: str = "default",
        *,
        min_count: int = 1,
        predicate: Callable[[SpanDict], bool] | None = None,
        timeout: float = 15.0,
        interval: float = 0.1,
        **filters: str | Sequence[str],
    ) -> list[SpanDict]:
        """Poll until at least ``min_count`` spans (matching ``predicate``) are stored.

        Returns the matching spans (all of them, maybe more than ``min_count``); raises
        TimeoutError naming what was there instead.
        """
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project, **filters)
            matching = [s for s in spans if predicate is None or predicate(s)]
            if len(matching) >= min_count:
                return matching
            if time.monotonic() > deadline:
                names = sorted({s["name"] for s in spans})
                seen = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") or "none"
                raise TimeoutError(
                    f"{len(matching)} of {min_count} wanted spans in project {project!r} after "
                    f"{timeout:.1f} s; {len(spans)} spans there ({seen})"
                )
            time.sleep(interval)
