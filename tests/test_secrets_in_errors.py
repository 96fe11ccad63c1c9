"""No SQL parameter value leaves the process through an error: chained exceptions, unique and check violations.

A real process (a script run as users run their apps) signs users up against SQLite and
PostgreSQL: a duplicate e-mail (unique violation) and a too-long password (check violation),
each caught and re-raised as the application's own error (``raise SignupFailed(...) from
err``), once inside ``flowscope.operation`` and once inside a Flask request traced by
opentelemetry-instrumentation-flask. Its spans go over OTLP/gRPC to a real receiver on
127.0.0.1; it writes the JSON and HTML reports at exit and logs to stderr. The values bound
to the failing statements appear in none of it, while the errors themselves are there (type,
message, constraint, traceback lines).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowscope.telemetry._scrub import scrub_text
from support.e2e import clean_env
from support.otlp_receiver import OtlpReceiver

EMAIL, PASSWORD, CHECKED_EMAIL = "dup@x.io", "the-password", "chk@x.io"
SECRETS = (EMAIL, PASSWORD, CHECKED_EMAIL)

APP = '''
import json, logging, sys
from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from sqlalchemy import create_engine, text
import flowscope

logging.basicConfig(level=logging.INFO)
telemetry = flowscope.configure()
engine = create_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("DROP TABLE IF EXISTS signup_users"))
    conn.execute(text("CREATE TABLE signup_users (email VARCHAR(100) UNIQUE, pw VARCHAR(100) CHECK (length(pw) < 8))"))
    conn.execute(text("INSERT INTO signup_users VALUES ('dup@x.io', 'short')"))

class SignupFailed(RuntimeError):
    pass

def signup(email, password):
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO signup_users VALUES (:email, :pw)"), {"email": email, "pw": password})
    except Exception as err:
        raise SignupFailed("signup failed") from err

forms = json.loads(sys.argv[2])          # what users typed: never in the source
for email, password in forms:
    try:
        with flowscope.operation("signup"):
            signup(email, password)
    except SignupFailed:
        logging.getLogger("app").exception("signup failed")

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app)

@app.post("/signup")
def signup_view():
    email, password = forms[0]
    signup(email, password)
    return "ok"

assert app.test_client().post("/signup").status_code == 500
telemetry.tracer_provider.force_flush()
'''


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signup.db'}"
    return request.getfixturevalue("_postgres_schema_url")


def test_no_bound_value_reaches_exported_spans_reports_or_logs(database: str, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    forms = json.dumps([[EMAIL, PASSWORD], [CHECKED_EMAIL, PASSWORD]])
    json_report, html_report = tmp_path / "report.json", tmp_path / "report.html"
    with OtlpReceiver() as receiver:
        done = subprocess.run([sys.executable, str(script), database, forms], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120,
                              env=clean_env(FLOWSCOPE_REPORT_JSON=str(json_report), FLOWSCOPE_REPORT_HTML=str(html_report),
                                            OTEL_TRACES_EXPORTER="otlp", **receiver.env("grpc")))
        exported = b"".join(request.SerializeToString() for request in receiver.trace_requests)
        events = [event for request in receiver.trace_requests for resource in request.resource_spans
                  for scope in resource.scope_spans for span in scope.spans for event in span.events]
    assert done.returncode == 0, done.stderr

    # The errors are all there: two operations and one request, each with its exception event.
    exceptions = [{a.key: a.value.string_value for a in event.attributes} for event in events
                  if event.name == "exception"]
    assert len(exceptions) >= 3
    assert all("SignupFailed" in e["exception.type"] for e in exceptions)
    assert all("IntegrityError" in e["exception.stacktrace"] for e in exceptions)      # the chained cause
    assert all("[parameters: redacted]" in e["exception.stacktrace"] for e in exceptions)
    assert "Traceback" in done.stderr                                                   # the app's own log
    # ... and no value bound to the failing statements is anywhere.
    outputs = {"exported spans": exported.decode("utf-8", "replace"), "JSON report": json_report.read_text(),
               "HTML report": html_report.read_text()}
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in the {where}"
    assert json.loads(json_report.read_text())["operations"]


def test_scrubbing_keeps_what_finds_the_bug_and_drops_the_values() -> None:
    postgres = ('(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "u_email_key"\n'
                "DETAIL:  Key (email)=(dup@x.io) already exists.\n"
                "[SQL: INSERT INTO u (email, pw) VALUES (%(email)s, %(pw)s)]\n"
                "[parameters: {'email': 'dup@x.io', 'pw': 'the-password'}]\n"
                "(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    inlined = "[SQL: SELECT * FROM u WHERE email = 'dup@x.io'\n  AND pw = 'the-password']\n(Background on this)"

    scrubbed = scrub_text(postgres)

    assert 'violates unique constraint "u_email_key"' in scrubbed and "DETAIL: redacted" in scrubbed
    assert "[SQL: INSERT INTO u (email, pw) VALUES (?)]" in scrubbed
    assert "dup@x.io" not in scrubbed and "the-password" not in scrubbed
    assert scrub_text(inlined) == "[SQL: SELECT * FROM u WHERE email = ? AND pw = ?]\n(Background on this)"
    assert scrub_text("no marker here") == "no marker here"
