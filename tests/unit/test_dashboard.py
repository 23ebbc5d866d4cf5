"""The Grafana dashboard and the compose `monitoring` profile, checked against the metrics the API really exports
(an exposition of every family, each with a sample) and the files the profile mounts."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.cluster import ClusterSnapshot
from api.gateway import Outcome
from api.metrics import ApiMetrics
from harness.dashboard import ALL_MODELS, DASHBOARD_PATH, MODEL_VARIABLE, concrete, dashboard, panel_queries
from tests.dashboard import GROUPING, SELECTOR, exported, problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def exposition_names() -> dict[str, set[str]]:
    """Every metric the API exports, each observed once so that labelled families have a sample."""
    metrics = ApiMetrics()
    metrics.requests.labels("/predict", "200", "sst2").inc()
    metrics.latency.labels("/predict", "sst2").observe(0.1)
    metrics.observe(Outcome("r", [], queue_ms=5, inference_ms=7), 1, "sst2", cache_on=True)
    metrics.texts.labels("sst2").inc()
    metrics.in_flight.labels("sst2", "1").set(1)
    metrics.cache_errors.labels("sst2").inc()
    metrics.cluster.snapshots = {("sst2", 1): ClusterSnapshot(queue_depth=3, live_workers=1, backends={"torch": 1})}
    families = text_string_to_metric_families(metrics.exposition().decode())
    return exported((sample.name, sample.labels) for family in families for sample in family.samples)


NAMES = exposition_names()


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.panel)
def test_every_panel_names_metrics_and_labels_the_api_exports(query):
    assert not list(problems(query.expr, NAMES)), query


@pytest.mark.parametrize("expr, problem", [
    ("rate(sentimentalyzer_no_such_total[1m])", "sentimentalyzer_no_such_total is not exported"),
    ('sum(rate(sentimentalyzer_requests_total{path="/predict"}[1m]))', "has no label 'path'"),
    ("sum by (le) (rate(sentimentalyzer_queue_depth[1m]))", "grouping by 'le'"),
    ("sentimentalyzer_requests", "sentimentalyzer_requests is not exported"),  # a counter's samples end in _total
])
def test_the_check_catches_a_wrong_name_or_label(expr, problem):
    assert any(problem in found for found in problems(expr, NAMES))


def test_the_dashboard_shows_what_an_operator_needs():
    titles = " / ".join(panel["title"] for panel in dashboard()["panels"]).lower()
    for needed in ("throughput by status", "p50 / p99", "queue depth", "queue wait vs inference", "texts per forward",
                   "padded tokens", "padding ratio", "live workers", "429 / 503 / 504"):
        assert needed in titles, needed
    exprs = " ".join(q.expr for q in panel_queries())
    for metric in ("sentimentalyzer_requests_total", "sentimentalyzer_request_latency_seconds_bucket",
                   "sentimentalyzer_queue_depth", "sentimentalyzer_queue_wait_seconds_bucket",
                   "sentimentalyzer_inference_seconds_bucket", "sentimentalyzer_batch_texts_bucket",
                   "sentimentalyzer_batch_padded_tokens_bucket", "sentimentalyzer_live_workers"):
        assert metric in exprs, metric


def test_panels_use_the_provisioned_datasource():
    datasource = yaml.safe_load((ROOT / "deploy/monitoring/grafana/provisioning/datasources/prometheus.yml")
                                .read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    for panel in [*dashboard()["panels"], *dashboard()["templating"]["list"]]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel.get("title", panel.get("name"))


def test_a_model_variable_lists_the_served_models_from_an_exported_label():
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "model"]
    assert f"${variable['name']}" == MODEL_VARIABLE and variable["type"] == "query"
    query = "label_values(sentimentalyzer_live_workers, model)"
    assert variable["definition"] == variable["query"]["query"] == query
    assert "model" in NAMES["sentimentalyzer_live_workers"]  # the label exists on the metric it reads
    # Several models at once, or All: every model, those that appear later included.
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ALL_MODELS
    assert variable["refresh"] == 2  # on time range change: a new model shows up without reloading


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.panel)
def test_every_panel_is_filtered_by_the_model_variable_and_broken_down_by_model(query):
    selectors = SELECTOR.findall(query.expr)
    assert selectors
    for metric, selector in selectors:  # every metric of the query, not just one of them
        assert f'model=~"{MODEL_VARIABLE}"' in selector, f"{metric} is not filtered by the model variable"
    # Per model: each series is one model's (a sum over models would hide one model's trouble behind another's).
    groups = [{label.strip() for label in group.split(",")} for group in GROUPING.findall(query.expr)]
    assert groups and all("model" in group for group in groups), query.expr


def test_the_panels_show_each_model_version_where_a_rollout_needs_it():
    live = next(p for p in dashboard()["panels"] if p["title"].lower().startswith("live workers"))
    assert "by (model, version)" in live["targets"][0]["expr"] and "{{version}}" in live["targets"][0]["legendFormat"]
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            assert "{{model}}" in target["legendFormat"], (panel["title"], target["refId"])


@pytest.mark.parametrize("models", [None, ["sentimentalyzer"], ["sentimentalyzer", "sst2-minilm"]])
def test_concrete_queries_are_what_grafana_sends_and_valid_promql(models, tmp_path):
    exprs = [concrete(query.expr, "5s", models) for query in panel_queries()]
    for expr in exprs:
        assert "$" not in expr, expr
    if models:
        assert 'model=~"(sentimentalyzer|sst2-minilm)"' in exprs[0] or 'model=~"(sentimentalyzer)"' in exprs[0]
    promtool = shutil.which("promtool")  # Debian's prometheus package (.ci/run installs it)
    if promtool is None:
        pytest.skip("promtool not installed: the PromQL syntax is checked by tests/e2e/test_prometheus.py")
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"panel_query_{i}", "expr": expr}
                                                         for i, expr in enumerate(exprs)]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_monitoring_profile_mounts_real_files_and_scrapes_the_api():
    for name in ("prometheus", "grafana"):
        assert COMPOSE[name]["profiles"] == ["monitoring"]  # not started by a plain `docker compose up`
        for volume in COMPOSE[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
    dashboards = yaml.safe_load((ROOT / "deploy/monitoring/grafana/provisioning/dashboards/sentimentalyzer.yml")
                                .read_text())["providers"][0]["options"]["path"]
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in COMPOSE["grafana"]["volumes"]}
    assert (mounted[dashboards] / DASHBOARD_PATH.name).samefile(DASHBOARD_PATH)
    scrape = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["static_configs"][0]["targets"] == [f"api:{COMPOSE['api']['environment']['PORT']}"]
