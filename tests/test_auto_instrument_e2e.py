"""No code change, end to end: FLOWSCOPE_AUTO_INSTRUMENT and opentelemetry-instrument, spans read back.

The application (tests/scripts/example_app.py in ``plain`` mode) has no telemetry set-up at all;
it runs one execution of each example workflow on a SQLite file inside one
``flowscope.operation("nightly_batch")``. It is started in a fresh interpreter

- with FLOWSCOPE_AUTO_INSTRUMENT=true (the start-up hook installed with the package), over
  OTLP/gRPC and over OTLP/HTTP;
- under ``opentelemetry-instrument`` from the dev venv, where opentelemetry-distro's configurator
  installs the TracerProvider before the instrumentors run and opentelemetry-instrumentation-
  sqlalchemy adds query spans; and once more with no configurator (flowscope's instrumentor then
  runs before any provider exists and flowscope configures itself at its first span).

Spans go to Arize Phoenix on 127.0.0.1 (started once for this module), each run to its own
project, and are read back through its REST API.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import pytest

from support.e2e import BIN, by_name, check_action_spans, run_example_app, shared_phoenix, wait_for_app_spans

OTEL_INSTRUMENT = str(BIN / "opentelemetry-instrument")
# The distro defaults every signal to OTLP; Phoenix receives traces only.
TRACES_ONLY = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


# Each run: (launcher, protocol, extra variables). All run side by side once, in `runs`.
# The hook also turns on the installed OpenTelemetry instrumentations; opentelemetry-
# instrumentation-sqlalchemy is installed here, so the first two switch it off by its name
# (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, honoured as opentelemetry-instrument does) to see
# flowscope's own spans alone, and the third keeps it on.
ONLY_FLOWSCOPE = {"FLOWSCOPE_AUTO_INSTRUMENT": "true", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy"}
RUNS = {
    "auto grpc": ((), "grpc", ONLY_FLOWSCOPE),
    "auto http": ((), "http/protobuf", ONLY_FLOWSCOPE),
    "auto with sqlalchemy": ((), "grpc", {"FLOWSCOPE_AUTO_INSTRUMENT": "true"}),
    # the distro's configurator installs the provider before flowscope's instrumentor runs
    "otel-instrument": ((OTEL_INSTRUMENT,), "grpc", TRACES_ONLY),
    # no configurator loaded: no provider exists when flowscope's instrumentor runs; flowscope
    # configures itself from OTEL_* at its first operation span
    "no configurator": ((OTEL_INSTRUMENT,), "http/protobuf", {**TRACES_ONLY, "OTEL_PYTHON_CONFIGURATOR": "none-installed"}),
    # both ways at once: the start-up hook steps aside for opentelemetry-instrument
    "otel-instrument and hook": ((OTEL_INSTRUMENT,), "grpc", {**TRACES_ONLY, "FLOWSCOPE_AUTO_INSTRUMENT": "true"}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, list[dict], str]]:
    """name -> (the app's JSON line, the spans of its trace as Phoenix stored them, its stderr)."""
    phoenix = shared_phoenix()

    def run(name: str) -> tuple[dict, list[dict], str]:
        launcher, protocol, variables = RUNS[name]
        project = name.replace(" ", "-")
        result, done = run_example_app(tmp_path_factory.mktemp(project), "plain", project=project,
                                       launcher=launcher, **variables, **phoenix.otlp_env(protocol))
        return result, wait_for_app_spans(phoenix, project, result), done.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(RUNS, pool.map(run, RUNS)))


def query_spans_under(spans: list[dict], parent: dict) -> list[dict]:
    """opentelemetry-instrumentation-sqlalchemy's statement spans directly below ``parent``."""
    return [s for s in spans if s["parent_id"] == parent["context"]["span_id"]
            and ("db.statement" in s["attributes"] or "db.query.text" in s["attributes"])]


# --- FLOWSCOPE_AUTO_INSTRUMENT=true ----------------------------------------------------------------


@pytest.mark.parametrize("run", ["auto grpc", "auto http"])
def test_the_environment_variable_alone_instruments_and_exports_every_action(runs, run):
    result, spans, stderr = runs[run]
    assert (result["exporter"], result["owns_provider"], result["warnings"]) == ("otlp", True, [])
    assert stderr == ""
    check_action_spans(spans, result)
    # flushed by the hook's atexit handler: the app never called force_flush
    assert sorted(s["name"] for s in spans) == sorted([*result["spans"], "nightly_batch"])


# --- opentelemetry-instrument -------------------------------------------------------------------------


@pytest.mark.otel_sqlalchemy
def test_opentelemetry_instrument_picks_flowscope_up_and_keeps_the_distros_provider(runs):
    result, spans, stderr = runs["otel-instrument"]
    assert result["exporter"] == "owner's"        # the distro's provider, flowscope's processors added
    assert result["owns_provider"] is False
    assert stderr == ""
    check_action_spans(spans, result)


@pytest.mark.otel_sqlalchemy
@pytest.mark.parametrize("run", ["otel-instrument", "auto with sqlalchemy"])
def test_sqlalchemy_query_spans_nest_under_the_action_spans_and_match_the_query_count(runs, run):
    result, spans, stderr = runs[run]
    assert "already instrumented" not in stderr
    named = by_name(spans)
    for name in result["spans"]:
        action = named[name]
        queries = query_spans_under(spans, action)
        assert len(queries) == action["attributes"]["workflow.db.query_count"], name
    orientation = named["EmployeeOnboarding.complete_orientation"]
    selects = [q for q in query_spans_under(spans, orientation)
               if "example_staff" in q["attributes"].get("db.statement", q["attributes"].get("db.query.text", ""))]
    assert len(selects) >= 10, "the planted N+1 shows as one query span per onboarding task"


@pytest.mark.otel_sqlalchemy
def test_query_spans_are_not_flowscope_operations_so_nothing_is_counted_twice(runs):
    result, spans, _ = runs["otel-instrument"]
    queries = [s for s in spans if "db.statement" in s["attributes"] or "db.query.text" in s["attributes"]]
    assert queries and not any("workflow.operation" in q["attributes"] for q in queries)
    operations = [s for s in spans if "workflow.operation" in s["attributes"]]
    assert len(operations) == len(result["spans"]) + 1
    below_batch = len([q for q in queries if q["parent_id"] == result["batch_span_id"]])
    total = sum(len(query_spans_under(spans, s)) for s in operations)
    batch = by_name(spans)["nightly_batch"]
    assert batch["attributes"]["workflow.db.query_count"] == total == below_batch + sum(
        s["attributes"]["workflow.db.query_count"] for s in operations if s is not batch)


@pytest.mark.otel_sqlalchemy   # opentelemetry-instrument loads it; on 2.1 it warns on stderr
def test_without_a_configurator_flowscope_configures_itself_at_its_first_span(runs):
    result, spans, stderr = runs["no configurator"]
    assert (result["exporter"], result["owns_provider"]) == ("otlp", True)
    named = check_action_spans(spans, result)
    pay = named["OrderFulfillment.pay"]
    assert len(query_spans_under(spans, pay)) == pay["attributes"]["workflow.db.query_count"]
    assert "none-installed" in stderr             # opentelemetry-instrument's own note, not ours
    assert "flowscope" not in stderr


@pytest.mark.otel_sqlalchemy   # opentelemetry-instrument loads it; on 2.1 it warns on stderr
def test_with_both_the_hook_steps_aside_for_opentelemetry_instrument(runs):
    result, spans, stderr = runs["otel-instrument and hook"]
    assert result["exporter"] == "owner's"        # the distro owns the provider, as without the hook
    assert stderr == ""                           # no "Overriding of current TracerProvider" warning
    check_action_spans(spans, result)
