"""The Grafana dashboard in the repo (deploy/monitoring): its panels and their queries, for the test that checks
them against the exported metrics and for rendering it from Prometheus (benchmarks/dashboard.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.processes import ROOT

DASHBOARD_PATH = ROOT / "deploy" / "monitoring" / "grafana" / "dashboards" / "sentimentalyzer.json"
# Grafana's rate window in the panels' PromQL; outside Grafana a concrete window takes its place.
RATE_INTERVAL = "$__rate_interval"


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    expr: str


def dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


def panel_queries(board: dict | None = None) -> list[PanelQuery]:
    board = board or dashboard()
    return [PanelQuery(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]
