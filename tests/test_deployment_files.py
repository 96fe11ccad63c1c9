"""docker-compose.yml, collector-config/ and deploy/: everything that can be checked without Docker.

No Docker engine runs where the suite runs, so the stack itself is never started here. What is
checked instead: every file parses; every pipeline of the collector uses components that are
defined (and every defined component is used); ports and host names agree between the compose
file, the collector, Prometheus and Grafana; every mounted file exists; images are pinned;
Prometheus' configuration passes ``promtool check config`` (Debian's ``prometheus`` package,
scripts/install-promtool.sh; skipped when promtool is missing, except with
FLOWSCOPE_REQUIRE_PROMTOOL=1 as in CI); and every metric the Grafana dashboard queries is one
the collector produces: flowscope's own metrics (flowscope.telemetry.METRICS) and the
spanmetrics connector's, named the way the collector's Prometheus exporter names them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowscope.telemetry import METRICS

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
COLLECTOR = REPO / "collector-config" / "otel-collector.yaml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "workflow-performance.json"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def collector() -> dict:
    return load(COLLECTOR)


def published(service: dict) -> dict[int, int]:
    """container port -> host port of a compose service's ``ports``."""
    ports = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        ports[int(container.split("/")[0])] = int(host.split(":")[-1])
    return ports


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


def host_of(endpoint: str) -> str:
    return re.sub(r"^\w+://", "", endpoint).rsplit(":", 1)[0]


# --- the files parse ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, COLLECTOR, PROMETHEUS, *sorted((GRAFANA / "provisioning").rglob("*.yaml"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_parses_to_a_mapping(path):
    assert isinstance(load(path), dict)


def test_the_dashboard_is_json_with_panels_and_a_stable_uid():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "Workflow performance"
    assert dashboard["uid"] == "flowscope-workflow-performance"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "queries per operation", "memory", "throughput", "n+1"):
        assert topic in titles


# --- the collector's pipelines ---------------------------------------------------------------------


def test_every_pipeline_uses_defined_components_and_every_component_is_used(collector):
    defined = {kind: set(collector.get(kind) or {}) for kind in ("receivers", "processors", "exporters",
                                                                 "connectors", "extensions")}
    used = {kind: set() for kind in defined}
    pipelines = collector["service"]["pipelines"]
    for name, pipeline in pipelines.items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for component in pipeline["receivers"]:
            assert component in defined["receivers"] | defined["connectors"], (name, component)
            used["receivers" if component in defined["receivers"] else "connectors"].add(component)
        for component in pipeline.get("processors", []):
            assert component in defined["processors"], (name, component)
            used["processors"].add(component)
        for component in pipeline["exporters"]:
            assert component in defined["exporters"] | defined["connectors"], (name, component)
            used["exporters" if component in defined["exporters"] else "connectors"].add(component)
    for extension in collector["service"].get("extensions", []):
        assert extension in defined["extensions"]
        used["extensions"].add(extension)
    assert used == defined


def test_connectors_join_a_traces_pipeline_to_a_metrics_pipeline(collector):
    pipelines = collector["service"]["pipelines"]
    for connector in collector.get("connectors", {}):
        sending = [n for n, p in pipelines.items() if connector in p["exporters"]]
        receiving = [n for n, p in pipelines.items() if connector in p["receivers"]]
        assert sending and all(n.split("/")[0] == "traces" for n in sending), connector
        assert receiving and all(n.split("/")[0] == "metrics" for n in receiving), connector


def test_memory_limiter_comes_first_and_batch_last_in_every_pipeline(collector):
    for name, pipeline in collector["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name


def test_spans_go_to_jaeger_and_metrics_to_prometheus(collector):
    pipelines = collector["service"]["pipelines"]
    assert "otlp/jaeger" in pipelines["traces"]["exporters"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert {"grpc", "http"} <= set(collector["receivers"]["otlp"]["protocols"])


# --- ports, hosts and mounts agree -----------------------------------------------------------------


def test_the_otlp_ports_the_collector_listens_on_are_published(compose, collector):
    ports = published(compose["services"]["otel-collector"])
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert port_of(protocols["grpc"]["endpoint"]) == 4317 and ports[4317] == 4317   # the README's endpoint
    assert port_of(protocols["http"]["endpoint"]) == 4318 and ports[4318] == 4318
    for protocol in protocols.values():
        assert host_of(protocol["endpoint"]) == "0.0.0.0", "reachable from outside the container"


def test_the_collector_exports_to_jaegers_otlp_port(compose, collector):
    endpoint = collector["exporters"]["otlp/jaeger"]["endpoint"]
    assert host_of(endpoint) in compose["services"]
    jaeger = compose["services"][host_of(endpoint)]
    assert port_of(endpoint) == 4317
    assert "4317" in {str(p) for p in jaeger.get("expose", [])} | {str(p) for p in published(jaeger)}


def test_prometheus_scrapes_the_port_of_the_collectors_prometheus_exporter(compose, collector):
    exporter_port = port_of(collector["exporters"]["prometheus"]["endpoint"])
    targets = [target for job in load(PROMETHEUS)["scrape_configs"] for sc in job.get("static_configs", [])
               for target in sc["targets"]]
    assert f"otel-collector:{exporter_port}" in targets
    assert "otel-collector" in compose["services"]


def test_grafana_data_sources_point_at_compose_services(compose):
    sources = load(GRAFANA / "provisioning" / "datasources" / "datasources.yaml")["datasources"]
    expected = {"prometheus": ("prometheus", 9090), "jaeger": ("jaeger", 16686)}
    assert {s["type"] for s in sources} == set(expected)
    for source in sources:
        service, port = expected[source["type"]]
        assert host_of(source["url"]) == service and port_of(source["url"]) == port
        assert published(compose["services"][service])[port] == port      # the README's URLs


def test_every_mounted_file_exists_and_the_containers_read_it_where_it_is_mounted(compose):
    services = compose["services"]
    mounts: dict[str, dict[str, str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert (REPO / source).exists(), (name, source)
            mounts.setdefault(name, {})[target] = source
    config_flag = next(a for a in services["otel-collector"]["command"] if a.startswith("--config="))
    assert config_flag.split("=", 1)[1] in mounts["otel-collector"]
    assert mounts["otel-collector"][config_flag.split("=", 1)[1]] == "./collector-config/otel-collector.yaml"
    prometheus_flag = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    assert mounts["prometheus"][prometheus_flag.split("=", 1)[1]] == "./deploy/prometheus/prometheus.yml"
    provider = load(GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml")["providers"][0]
    assert provider["options"]["path"] in mounts["grafana"]
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def test_every_image_is_pinned_to_a_version(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (name, image)


# --- promtool ---------------------------------------------------------------------------------------


def test_prometheus_configuration_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool not installed: run scripts/install-promtool.sh (apt-get install prometheus)"
        if os.environ.get("FLOWSCOPE_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"FLOWSCOPE_REQUIRE_PROMTOOL=1 but {reason}")
        pytest.skip(reason)
    done = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


# --- the dashboard queries metrics that exist ----------------------------------------------------

# The collector's Prometheus exporter (add_metric_suffixes: true): OTel unit -> name suffix.
UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
                 "min": "minutes", "h": "hours", "d": "days", "By": "bytes", "KiBy": "kibibytes",
                 "MiBy": "mebibytes", "%": "percent"}


def prometheus_names(name: str, kind: str, unit: str) -> set[str]:
    """The series names the Prometheus exporter makes of one OTel metric.

    Characters other than [a-zA-Z0-9_:] become "_"; a unit in braces ({query}) is an annotation
    and dropped; other units become a suffix unless already there; "1" on a gauge is "ratio";
    monotonic sums (counters) end in "_total"; histograms become _bucket, _sum and _count.
    """
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    unit = re.sub(r"\{[^}]*\}", "", unit)
    if unit == "1":
        suffix = "ratio" if kind == "gauge" else ""
    else:
        suffix = UNIT_SUFFIXES.get(unit, unit)
    if suffix and not base.endswith("_" + suffix):
        base += "_" + suffix
    if kind == "counter":
        return {base + "_total"}
    if kind == "histogram":
        return {base + "_bucket", base + "_sum", base + "_count"}
    return {base}


def produced_metrics(collector: dict) -> set[str]:
    """Everything the collector exposes to Prometheus: flowscope's metrics, spanmetrics' metrics."""
    names: set[str] = set()
    for metric in METRICS:
        names |= prometheus_names(metric.name, metric.kind, metric.unit)
    for connector, config in collector.get("connectors", {}).items():
        if connector.split("/")[0] != "spanmetrics":
            continue
        config = config or {}
        namespace = config.get("namespace", "traces.span.metrics")
        prefix = f"{namespace}." if namespace else ""
        names |= prometheus_names(prefix + "calls", "counter", "{call}")
        histogram = config.get("histogram", {})
        if not histogram.get("disable", False):
            names |= prometheus_names(prefix + "duration", "histogram", histogram.get("unit", "ms"))
    return names


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "inf", "nan",
}


def queried_metrics(expression: str) -> set[str]:
    """Metric names in a PromQL expression or a Grafana label_values(...) query."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)            # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                             # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                            # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)                                 # Grafana variables
    label_values = re.match(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)", text)
    if label_values:
        return {label_values.group(1)}
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][\w:]*", text):
        word, rest = match.group(0), text[match.end():]
        if rest.lstrip().startswith("("):                           # a function
            continue
        if word.lower() in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_the_query_parser_finds_metric_names_and_nothing_else():
    assert queried_metrics('histogram_quantile(0.95, sum by (le, x) (rate(a_b_bucket{x=~"$v"}[5m])))') == {"a_b_bucket"}
    assert queried_metrics("sum(rate(a_total[1m])) / sum(rate(b_count[1m]))") == {"a_total", "b_count"}
    assert queried_metrics('label_values(c_count{job=~"$service"}, workflow_operation)') == {"c_count"}


def test_every_metric_the_dashboard_queries_is_produced_by_the_collector(collector):
    produced = produced_metrics(collector)
    queried = set().union(*(queried_metrics(q) for q in dashboard_queries()))
    assert queried, "no metric found in the dashboard"
    assert queried <= produced, f"not produced: {sorted(queried - produced)}; produced: {sorted(produced)}"


def test_the_dashboard_uses_flowscopes_metrics_and_the_span_metrics(collector):
    queried = set().union(*(queried_metrics(q) for q in dashboard_queries()))
    assert {"workflow_operation_duration_seconds_bucket", "workflow_db_queries_total", "workflow_memory_rss_bytes",
            "workflow_db_n_plus_one_total", "traces_span_metrics_calls_total",
            "traces_span_metrics_duration_milliseconds_bucket"} <= queried


def test_the_name_translation_follows_the_prometheus_exporter():
    assert prometheus_names("a.b", "counter", "1") == {"a_b_total"}
    assert prometheus_names("a.b", "gauge", "1") == {"a_b_ratio"}
    assert prometheus_names("a.duration", "histogram", "ms") == {
        "a_duration_milliseconds_bucket", "a_duration_milliseconds_sum", "a_duration_milliseconds_count"}
    assert prometheus_names("a.size_bytes", "gauge", "By") == {"a_size_bytes"}


def test_the_prometheus_names_of_flowscopes_metrics():
    names = {m.name: prometheus_names(m.name, m.kind, m.unit) for m in METRICS}
    assert names == {
        "workflow.operation.duration": {"workflow_operation_duration_seconds_bucket",
                                        "workflow_operation_duration_seconds_sum",
                                        "workflow_operation_duration_seconds_count"},
        "workflow.db.queries": {"workflow_db_queries_total"},
        "workflow.db.n_plus_one": {"workflow_db_n_plus_one_total"},
        "workflow.memory.rss": {"workflow_memory_rss_bytes"},
        "flowscope.spans.dropped": {"flowscope_spans_dropped_total"},
    }
