"""Run an application file as its own server process, as a user would, for the span-based operation tests.

    with served_app(tmp_path, APP_SOURCE, SERVE_SCRIPT, FLOWSCOPE_AUTO_INSTRUMENT="true") as port:
        httpx.get(f"http://127.0.0.1:{port}/api/posts")
    # the server has exited 0 here (its exit report written)

The application file is copied into ``tmp_path`` (the process's working directory, so call sites
are shown relative to it); ``serve_script`` is formatted with ``app_dir`` and must print its port,
then stop when a line arrives on its stdin.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.e2e import clean_env


@contextmanager
def served_app(tmp_path: Path, app_source: Path, serve_script: str, *args: str,
               **environment: str) -> Iterator[int]:
    (tmp_path / app_source.name).write_text(app_source.read_text())
    script = tmp_path / "serve.py"
    script.write_text(serve_script.format(app_dir=str(tmp_path)))
    server = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_env(**environment))
    try:
        line = server.stdout.readline() if server.stdout is not None else ""
        if not line.strip().isdigit():
            server.kill()
            _, stderr = server.communicate(timeout=30)
            raise AssertionError(f"the server printed no port ({line!r}): {stderr}")
        yield int(line)
        _, stderr = server.communicate("stop\n", timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0, stderr
