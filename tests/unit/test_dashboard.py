"""The Grafana dashboard and the compose `monitoring` profile, checked against the metrics the API really exports
(an exposition of every family, each with a sample) and the files the profile mounts."""

from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.cluster import ClusterSnapshot
from api.gateway import Outcome
from api.metrics import ApiMetrics
from harness.dashboard import DASHBOARD_PATH, dashboard, panel_queries
from tests.dashboard import exported, problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def exposition_names() -> dict[str, set[str]]:
    """Every metric the API exports, each observed once so that labelled families have a sample."""
    metrics = ApiMetrics()
    metrics.requests.labels("/predict", "200").inc()
    metrics.latency.labels("/predict").observe(0.1)
    metrics.observe(Outcome("r", [], queue_ms=5, inference_ms=7), 1, cache_on=True)
    metrics.cluster.snapshot = ClusterSnapshot(queue_depth=3, live_workers=1, backends={"torch": 1})
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
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


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
